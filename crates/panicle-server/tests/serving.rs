//! The serving layer over real TCP on loopback: slow clients (unfinished
//! headers, stalled bodies) cannot hold the server, timeouts answer or close,
//! the connection limit makes the surplus wait, shutdown stays graceful, and
//! /metrics shows the SQLite write-ahead log.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use panicle_server::{AppState, ServerConfig};
use panicle_store::testing::TestDb;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Running {
    addr: SocketAddr,
    key: String,
    token: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(db: &TestDb, config: ServerConfig) -> Running {
    let store = db.store().await;
    let project = store.create_project("shop").await.unwrap();
    let token = store.create_token("test").await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let state = AppState::new(store, config).unwrap();
    let served = tokio::spawn(panicle_server::serve(listener, state, async move {
        let _ = rx.await;
    }));
    Running {
        addr,
        key: project.ingest_key,
        token,
        shutdown: Some(tx),
        served,
    }
}

fn event(message: &str) -> Value {
    json!({
        "event_id": uuid::Uuid::new_v4().to_string(),
        "timestamp": "2026-11-26T10:00:00Z",
        "message": message,
        "frames": [{"function": "shop::orders::reserve", "file": "src/orders.rs", "line": 42, "in_app": true}],
    })
}

/// One request on a fresh connection, off the async runtime: (status, body).
async fn call(
    method: &'static str,
    url: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build(),
        );
        let mut resp = if method == "POST" {
            let mut req = agent.post(&url);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            req.send(&body[..]).unwrap()
        } else {
            let mut req = agent.get(&url);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            req.call().unwrap()
        };
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap_or_default())
    })
    .await
    .unwrap()
}

async fn metrics(addr: SocketAddr) -> String {
    call("GET", format!("http://{addr}/metrics"), vec![], vec![])
        .await
        .1
}

/// The value of a metric line `name value` (0 when absent).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Headers that never end (no blank line).
fn partial_head(addr: SocketAddr) -> String {
    format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nX-Slow: "
    )
}

/// Complete headers of a 1,000-byte body, then 10 bytes of it.
fn stalled_body(addr: SocketAddr, key: &str) -> String {
    format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: {addr}\r\nX-Panicle-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{{\"event_"
    )
}

/// Reads until the server closes the connection (or `limit` passes): what it sent.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&out).into_owned())
}

/// 1,000 slow connections and the server's side of them need about 2,100
/// descriptors: raise the soft limit to the hard one if it is lower.
/// A 1 KiB receive buffer: the server's writes stall as soon as a client
/// stops reading.
fn shrink_receive_buffer(stream: &std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 1024;
    // SAFETY: setsockopt reads `size` for the given length on a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt SO_RCVBUF");
}

fn raise_fd_limit(needed: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < needed as libc::rlim_t {
            lim.rlim_cur = lim.rlim_max.min((needed * 2) as libc::rlim_t);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    assert!(
        lim.rlim_cur >= needed as libc::rlim_t,
        "this test needs {needed} file descriptors; the hard limit allows {} (raise `ulimit -Hn`)",
        lim.rlim_max
    );
}

panicle_store::backend_tests! {
    async fn a_normal_client_is_served_while_1000_slow_ones_hang_on(db: &TestDb) {
        // Both backends run at once: 2 × (1,000 client + 1,000 server) sockets and the pools.
        raise_fd_limit(5_000);
        // Timeouts far beyond the test, so all 1,000 surely hang on while the
        // normal client is timed (the default limit of 1,024 connections holds).
        let config = ServerConfig {
            header_timeout: Duration::from_secs(120),
            body_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(240),
            ..ServerConfig::default()
        };
        let s = start(db, config).await;
        let mut slow = Vec::new();
        // 500 connections whose headers never end, 500 with a valid key whose body stalls.
        for i in 0..1000 {
            let mut stream = TcpStream::connect(s.addr).await.unwrap();
            let head = if i % 2 == 0 { stalled_body(s.addr, &s.key) } else { partial_head(s.addr) };
            stream.write_all(head.as_bytes()).await.unwrap();
            slow.push(stream);
        }
        // Wait until the server holds all of them open (a /metrics read is a
        // normal request too; it is not what is timed).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let open = metric(&metrics(s.addr).await, "panicle_http_connections");
            if open >= 1001.0 {
                break;
            }
            assert!(Instant::now() < deadline, "only {open} connections open");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // The bound the issue sets: served within 1 s (it takes milliseconds;
        // the second is headroom for a loaded machine).
        let started = Instant::now();
        let body = serde_json::to_vec(&event("served despite slowloris")).unwrap();
        let (status, answer) = call("POST", format!("http://{}/api/v1/events", s.addr), vec![("X-Panicle-Key", s.key.clone())], body).await;
        let ingest = started.elapsed();
        assert_eq!(status, 202, "{answer}");
        let started = Instant::now();
        let (status, list) = call("GET", format!("http://{}/api/v1/events", s.addr), vec![("Authorization", format!("Bearer {}", s.token))], vec![]).await;
        let read = started.elapsed();
        assert_eq!(status, 200, "{list}");
        assert!(list.contains("served despite slowloris"), "{list}");
        eprintln!("{:?} with 1,000 slow connections open: ingest {ingest:?}, read {read:?}", db.backend);
        assert!(ingest < Duration::from_secs(1), "ingest took {ingest:?}");
        assert!(read < Duration::from_secs(1), "read took {read:?}");

        // The slow ones were still hanging on meanwhile.
        let open = metric(&metrics(s.addr).await, "panicle_http_connections");
        assert!(open >= 1000.0, "{open} connections open");
        drop(slow);
    }

    async fn unfinished_headers_are_closed_after_the_header_timeout(db: &TestDb) {
        let config = ServerConfig { header_timeout: Duration::from_secs(1), ..ServerConfig::default() };
        let s = start(db, config).await;
        let started = Instant::now();
        // One trickles a byte every 200 ms (that does not extend its time), one sends nothing.
        let mut trickle = TcpStream::connect(s.addr).await.unwrap();
        trickle.write_all(partial_head(s.addr).as_bytes()).await.unwrap();
        let mut silent = TcpStream::connect(s.addr).await.unwrap();
        let trickling = tokio::spawn(async move {
            for _ in 0..40 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if trickle.write_all(b"x").await.is_err() {
                    break;
                }
            }
            trickle
        });
        let answer = read_until_closed(&mut silent, Duration::from_secs(8)).await;
        let silent_closed = started.elapsed();
        assert_eq!(answer.as_deref(), Some(""), "closed without an answer");
        let mut trickle = trickling.await.unwrap();
        let answer = read_until_closed(&mut trickle, Duration::from_secs(8)).await;
        assert!(answer.is_some(), "the trickling connection was closed");
        let trickle_closed = started.elapsed();
        // Not before the timeout; the upper bound only guards against "never".
        assert!(silent_closed >= Duration::from_millis(900), "{silent_closed:?}");
        assert!(silent_closed < Duration::from_secs(8), "{silent_closed:?}");
        assert!(trickle_closed < Duration::from_secs(8), "{trickle_closed:?}");
        let text = metrics(s.addr).await;
        assert!(metric(&text, "panicle_http_timeouts_total{stage=\"header\"}") >= 1.0, "{text}");
    }

    async fn past_the_byte_bound_ingest_is_refused_before_its_body_is_read(db: &TestDb) {
        let config = ServerConfig {
            max_ingest_bytes: 1_500,
            body_timeout: Duration::from_secs(20),
            ..ServerConfig::default()
        };
        let s = start(db, config).await;
        // In: 1,000 declared bytes, 10 sent.
        let mut held = TcpStream::connect(s.addr).await.unwrap();
        held.write_all(stalled_body(s.addr, &s.key).as_bytes()).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while metric(&metrics(s.addr).await, "panicle_ingest_in_flight") < 1.0 {
            assert!(Instant::now() < deadline, "the first request never got in");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Another 1,000 would pass the bound: answered at once, though not
        // one byte of its body was sent.
        let started = Instant::now();
        let mut refused = TcpStream::connect(s.addr).await.unwrap();
        let head = format!(
            "POST /api/v1/events HTTP/1.1\r\nHost: {}\r\nX-Panicle-Key: {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
            s.addr, s.key
        );
        refused.write_all(head.as_bytes()).await.unwrap();
        let answer = read_until_closed(&mut refused, Duration::from_secs(8)).await.expect("answered");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
        let json = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        let body: Value = serde_json::from_str(json).unwrap_or(Value::Null);
        assert_eq!(body["error"]["code"], "overloaded", "{answer}");
        // A small one still fits, and reads are never gated.
        let event = serde_json::to_vec(&event("fits beside the held one")).unwrap();
        assert!(event.len() < 500);
        let (status, answer) = call("POST", format!("http://{}/api/v1/events", s.addr), vec![("X-Panicle-Key", s.key.clone())], event).await;
        assert_eq!(status, 202, "{answer}");
        let text = metrics(s.addr).await;
        assert_eq!(metric(&text, "panicle_ingest_overloaded_total{stage=\"bytes\"}"), 1.0, "{text}");
        assert_eq!(metric(&text, "panicle_ingest_in_flight"), 1.0, "{text}");
        // Once the held one is gone, its share is given back.
        drop(held);
        let deadline = Instant::now() + Duration::from_secs(10);
        while metric(&metrics(s.addr).await, "panicle_ingest_in_flight_bytes") > 0.0 {
            assert!(Instant::now() < deadline, "the held request's bytes were not given back");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn a_stalled_body_is_answered_408_after_the_body_timeout(db: &TestDb) {
        let config = ServerConfig { body_timeout: Duration::from_secs(1), ..ServerConfig::default() };
        let s = start(db, config).await;
        let started = Instant::now();
        let mut stream = TcpStream::connect(s.addr).await.unwrap();
        stream.write_all(stalled_body(s.addr, &s.key).as_bytes()).await.unwrap();
        let answer = read_until_closed(&mut stream, Duration::from_secs(8)).await.expect("answered and closed");
        let elapsed = started.elapsed();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        let json = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        let body: Value = serde_json::from_str(json).unwrap_or(Value::Null);
        assert_eq!(body["error"]["code"], "request_body_timeout", "{answer}");
        assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
        let text = metrics(s.addr).await;
        assert_eq!(metric(&text, "panicle_http_timeouts_total{stage=\"body\"}"), 1.0, "{text}");
        assert_eq!(metric(&text, "panicle_events_stored_total"), 0.0, "{text}");
    }

    async fn a_request_past_the_whole_request_timeout_gets_503(db: &TestDb) {
        // The body trickles in under its own (long) deadline; the request one cuts it.
        let config = ServerConfig {
            body_timeout: Duration::from_secs(20),
            request_timeout: Duration::from_secs(1),
            ..ServerConfig::default()
        };
        let s = start(db, config).await;
        let mut stream = TcpStream::connect(s.addr).await.unwrap();
        stream.write_all(stalled_body(s.addr, &s.key).as_bytes()).await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let trickle = tokio::spawn(async move {
            for _ in 0..40 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if writer.write_all(b" ").await.is_err() {
                    break;
                }
            }
        });
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(8), reader.read_to_end(&mut answer)).await;
        trickle.abort();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("retry-after: 5"), "{answer}");
        assert!(answer.contains("\"request_timeout\""), "{answer}");
    }

    async fn at_the_limit_a_new_connection_replaces_one_waiting_for_its_head(db: &TestDb) {
        let config = ServerConfig {
            max_connections: 2,
            header_timeout: Duration::from_secs(30),
            ..ServerConfig::default()
        };
        let s = start(db, config).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(s.addr).await.unwrap();
            stream.write_all(partial_head(s.addr).as_bytes()).await.unwrap();
            held.push(stream);
        }
        // Waiting a head for over a second (the least before a connection
        // may be closed to make room; less may be an answer going out).
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        // Both slots wait for a head: the oldest makes room at once.
        let started = Instant::now();
        let (status, body) = call("GET", format!("http://{}/healthz", s.addr), vec![], vec![]).await;
        let waited = started.elapsed();
        assert_eq!((status, body.as_str()), (200, "ok"));
        assert!(waited < Duration::from_secs(2), "served after {waited:?}");
        let closed = read_until_closed(&mut held[0], Duration::from_secs(5)).await;
        assert!(closed.is_some(), "the oldest slow connection was closed to make room");
        let text = metrics(s.addr).await;
        assert!(metric(&text, "panicle_http_timeouts_total{stage=\"evicted\"}") >= 1.0, "{text}");
        drop(held);
    }

    async fn connections_in_the_middle_of_a_request_are_never_cut_to_make_room(db: &TestDb) {
        let config = ServerConfig {
            max_connections: 2,
            body_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            ..ServerConfig::default()
        };
        let s = start(db, config).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(s.addr).await.unwrap();
            stream.write_all(stalled_body(s.addr, &s.key).as_bytes()).await.unwrap();
            held.push(stream);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        // Both slots are inside a request: the third waits until the body
        // timeout answers one of them (408), then is served.
        let (status, body) = call("GET", format!("http://{}/healthz", s.addr), vec![], vec![]).await;
        let waited = started.elapsed();
        assert_eq!((status, body.as_str()), (200, "ok"));
        assert!(waited >= Duration::from_millis(500), "served after {waited:?}: a request was cut");
        assert!(waited < Duration::from_secs(8), "{waited:?}");
        let answer = read_until_closed(&mut held[0], Duration::from_secs(5)).await.unwrap_or_default();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        drop(held);
    }

    async fn more_slow_clients_than_the_limit_still_leave_room(db: &TestDb) {
        raise_fd_limit(2_000);
        let config = ServerConfig {
            max_connections: 100,
            header_timeout: Duration::from_secs(120),
            body_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(240),
            ..ServerConfig::default()
        };
        let s = start(db, config).await;
        // Three times the limit of unfinished heads (each new one replaces
        // the oldest), and 40 stalled bodies inside requests.
        let mut slow = Vec::new();
        for i in 0..340 {
            let mut stream = TcpStream::connect(s.addr).await.unwrap();
            let head = if i < 40 { stalled_body(s.addr, &s.key) } else { partial_head(s.addr) };
            let _ = stream.write_all(head.as_bytes()).await;
            slow.push(stream);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        let body = serde_json::to_vec(&event("served past the limit")).unwrap();
        let (status, answer) = call("POST", format!("http://{}/api/v1/events", s.addr), vec![("X-Panicle-Key", s.key.clone())], body).await;
        let ingest = started.elapsed();
        assert_eq!(status, 202, "{answer}");
        eprintln!("{:?} with 340 slow clients over a limit of 100: ingest {ingest:?}", db.backend);
        assert!(ingest < Duration::from_secs(1), "ingest took {ingest:?}");
        drop(slow);
    }

    async fn shutdown_is_graceful_and_prompt(db: &TestDb) {
        let mut s = start(db, ServerConfig::default()).await;
        // An idle kept-alive connection does not hold the shutdown up.
        let mut idle = TcpStream::connect(s.addr).await.unwrap();
        idle.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr).as_bytes()).await.unwrap();
        let mut buf = [0u8; 512];
        let n = idle.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        let _ = s.shutdown.take().unwrap().send(());
        let done = tokio::time::timeout(Duration::from_secs(5), &mut s.served).await;
        assert!(matches!(done, Ok(Ok(Ok(())))), "{done:?}");
    }

    async fn clients_that_stop_reading_lose_their_slot_and_do_not_hold_shutdown(db: &TestDb) {
        let config = ServerConfig {
            max_connections: 2,
            body_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            ..ServerConfig::default()
        };
        let mut s = start(db, config).await;
        // Two clients ask for a large answer again and again and never read:
        // their socket buffers fill and the server's writes stall.
        let mut held = Vec::new();
        for _ in 0..2 {
            let stream = std::net::TcpStream::connect(s.addr).unwrap();
            shrink_receive_buffer(&stream);
            let mut stream = TcpStream::from_std({
                stream.set_nonblocking(true).unwrap();
                stream
            })
            .unwrap();
            let one = format!("GET /api/v1/openapi.json HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr);
            let many = one.repeat(200);
            // The server may stop reading too: write what fits, no more.
            let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(many.as_bytes())).await;
            held.push(stream);
        }
        let started = Instant::now();
        let served = tokio::time::timeout(Duration::from_secs(15), call("GET", format!("http://{}/healthz", s.addr), vec![], vec![])).await;
        let waited = started.elapsed();
        let (status, body) = served.expect("no slot came free: clients that do not read hold them");
        assert_eq!((status, body.as_str()), (200, "ok"));
        assert!(waited < Duration::from_secs(10), "a slot came free after {waited:?}");
        // Two more that stop reading, then a shutdown: bounded by the grace.
        for _ in 0..2 {
            let stream = std::net::TcpStream::connect(s.addr).unwrap();
            shrink_receive_buffer(&stream);
            let mut stream = TcpStream::from_std({
                stream.set_nonblocking(true).unwrap();
                stream
            })
            .unwrap();
            let many = format!("GET /api/v1/openapi.json HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr).repeat(200);
            let _ = tokio::time::timeout(Duration::from_millis(500), stream.write_all(many.as_bytes())).await;
            held.push(stream);
        }
        let _ = s.shutdown.take().unwrap().send(());
        let done = tokio::time::timeout(Duration::from_secs(10), &mut s.served).await;
        assert!(matches!(done, Ok(Ok(Ok(())))), "shutdown waited on clients that do not read: {done:?}");
        drop(held);
    }

    async fn metrics_show_the_write_ahead_log(db: &TestDb) {
        let s = start(db, ServerConfig::default()).await;
        let body = serde_json::to_vec(&event("fills the log")).unwrap();
        let (status, _) = call("POST", format!("http://{}/api/v1/events", s.addr), vec![("X-Panicle-Key", s.key.clone())], body).await;
        assert_eq!(status, 202);
        let text = metrics(s.addr).await;
        let wal = metric(&text, "panicle_sqlite_wal_bytes");
        match db.backend {
            panicle_store::Backend::Sqlite => assert!(wal > 0.0, "{text}"),
            panicle_store::Backend::Postgres => assert_eq!(wal, 0.0, "{text}"),
        }
    }
}
