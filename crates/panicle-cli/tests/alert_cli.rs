//! `panicle alert add|list|remove|test` on a server's database (SQLite and
//! PostgreSQL), with `test` sending to a real HTTP receiver.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Command;

use panicle_store::Backend;
use serde_json::Value;

fn cli(url: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(common::PANICLE)
        .args(args)
        .env("DATABASE_URL", url)
        .env("PANICLE_PUBLIC_URL", "http://panicle.test:8471")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Answers one HTTP request with 200 and hands back its JSON body.
fn receive_one() -> (String, std::thread::JoinHandle<Value>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        reader
            .get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    });
    (url, handle)
}

panicle_store::backend_tests! {
    async fn alert_rules_are_added_listed_tested_and_removed(db: &TestDb) {
        let store = db.store().await;
        store.create_project("shop").await.unwrap();
        let url = db.url.clone();
        tokio::task::spawn_blocking(move || {
            let (code, _, err) = cli(&url, &["alert", "add", "--project", "shop", "--kind", "sometimes", "--webhook", "http://h/"]);
            assert_eq!(code, Some(1), "{err}");
            assert!(err.contains("`kind` must be one of"), "{err}");
            let (code, _, err) = cli(&url, &["alert", "add", "--project", "nope", "--kind", "spike", "--webhook", "http://h/"]);
            assert_eq!(code, Some(1));
            assert!(err.contains("no project named `nope`"), "{err}");

            let (hook, received) = receive_one();
            let (code, out, err) = cli(&url, &[
                "alert", "add", "--project", "shop", "--kind", "spike", "--webhook", &hook,
                "--name", "checkout spikes", "--service", "checkout", "--threshold", "50", "--window", "60", "--cooldown", "900",
            ]);
            assert_eq!(code, Some(0), "{err}");
            let id = out.trim().to_string();
            assert!(id.parse::<i64>().is_ok(), "{out}");

            let (code, out, _) = cli(&url, &["alert", "list", "--project", "shop"]);
            assert_eq!(code, Some(0));
            let row = out.lines().nth(1).unwrap();
            assert!(row.starts_with(&format!("{id}\tshop\tcheckout spikes\tspike\twebhook {hook}\tcooldown=900s\t")), "{row}");
            assert!(row.contains("service=checkout") && row.contains("threshold=50") && row.contains("window=60s"), "{row}");

            let (code, out, err) = cli(&url, &["alert", "test", &id]);
            assert_eq!(code, Some(0), "{err}");
            assert!(out.contains("answered HTTP 200"), "{out}");
            let body = received.join().unwrap();
            assert_eq!(body["test"], true);
            assert_eq!(body["rule"]["name"], "checkout spikes");
            assert_eq!(body["project"]["name"], "shop");
            assert!(body["links"]["cluster"].as_str().unwrap().starts_with("http://panicle.test:8471/clusters/"), "{body}");

            // A CA file that trusts nothing is refused before any send.
            let (code, _, err) = cli(&url, &["alert", "test", &id, "--alert-ca-file", "Cargo.toml"]);
            assert_eq!(code, Some(1));
            assert!(err.contains("--alert-ca-file Cargo.toml") && err.contains("no PEM certificate"), "{err}");

            let (code, _, err) = cli(&url, &["alert", "remove", &id]);
            assert_eq!(code, Some(0), "{err}");
            let (_, out, _) = cli(&url, &["alert", "list"]);
            assert_eq!(out.lines().count(), 1, "{out}");
            let (code, _, err) = cli(&url, &["alert", "remove", &id]);
            assert_eq!(code, Some(1));
            assert!(err.contains("no alert rule with id"), "{err}");
        })
        .await
        .unwrap();
    }

    async fn alert_commands_do_not_create_a_database(db: &TestDb) {
        if db.backend == Backend::Postgres {
            return; // A PostgreSQL database is made by its operator.
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("none.db");
        let url = format!("sqlite://{}", file.display());
        let (code, _, err) = tokio::task::spawn_blocking(move || cli(&url, &["alert", "list"])).await.unwrap();
        assert_eq!(code, Some(1));
        assert!(err.contains("no database at"), "{err}");
        assert!(!file.exists());
    }
}
