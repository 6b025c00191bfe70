"""sentry-python reporting a real KeyError, raised three frames deep inside a
transaction, to the DSN given as argv[1]. Prints {"event_id", "trace_id"}."""

import json
import sys

import sentry_sdk


def customer_of(order):
    return order["customer_id"]  # the raise site: frames[0]


def load_order(order_id):
    return customer_of({"id": order_id})


def handle(order_id):
    return load_order(order_id)


def main():
    sentry_sdk.init(
        dsn=sys.argv[1],
        release="shop@1.4.2",
        environment="ci",
        traces_sample_rate=1.0,
        server_name="py-test",
    )
    sentry_sdk.set_tag("tenant", "acme")
    sentry_sdk.add_breadcrumb(category="checkout", message="loading order 17", level="info")
    with sentry_sdk.start_transaction(op="task", name="/orders/{order_id}") as transaction:
        try:
            handle(17)
        except KeyError as error:
            event_id = sentry_sdk.capture_exception(error)
        trace_id = transaction.trace_id
    sentry_sdk.flush(timeout=10)
    print(json.dumps({"event_id": event_id, "trace_id": trace_id}))


if __name__ == "__main__":
    main()
