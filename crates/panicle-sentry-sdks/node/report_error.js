// @sentry/node reporting a real TypeError, raised three frames deep inside a
// transaction, to the DSN given as argv[2]. Prints {"event_id", "trace_id"}.
'use strict';

const Sentry = require('@sentry/node');

function lineTotal(line) {
  return line.item.price * line.qty; // the raise site: frames[0]
}

function cartTotal(cart) {
  let total = 0;
  for (const line of cart.lines) {
    total += lineTotal(line);
  }
  return total;
}

function handle(cart) {
  return cartTotal(cart);
}

async function main() {
  Sentry.init({
    dsn: process.argv[2],
    release: 'web@2.0.1',
    environment: 'ci',
    serverName: 'node-test',
    tracesSampleRate: 1.0,
  });
  Sentry.setTag('feature', 'checkout');
  Sentry.addBreadcrumb({ category: 'cart', message: 'fetching cart 9', level: 'info' });
  let eventId;
  let traceId;
  Sentry.startSpan({ name: 'GET /carts/:id', op: 'http.server' }, (span) => {
    traceId = span.spanContext().traceId;
    try {
      handle({ lines: [{ qty: 2 }] });
    } catch (error) {
      eventId = Sentry.captureException(error);
    }
  });
  await Sentry.flush(10000);
  console.log(JSON.stringify({ event_id: eventId, trace_id: traceId }));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
