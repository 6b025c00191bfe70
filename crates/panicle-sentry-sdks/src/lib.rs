//! Tests only: official Sentry SDKs report to a real Panicle server over
//! loopback (`tests/`). sentry-python and @sentry/node are installed by
//! `.ci/run` into `python/.venv` and `node/node_modules`.
