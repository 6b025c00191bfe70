//! An axum service behind `PanicleLayer` whose `/orders/{id}` handler panics.
//!
//! ```sh
//! PANICLE_DSN=http://KEY@127.0.0.1:8471/1 cargo run -p panicle --example axum_demo            # serve on 127.0.0.1:3000
//! PANICLE_DSN=http://KEY@127.0.0.1:8471/1 cargo run -p panicle --example axum_demo -- once    # one request, then exit
//! ```

use axum::Router;
use axum::extract::Path;
use axum::routing::get;

mod orders {
    #[inline(never)]
    pub fn reserve(id: u32) -> String {
        panicle::set_tag("order.id", id.to_string());
        let stock: Option<u32> = std::hint::black_box(None);
        format!("reserved {}", stock.unwrap())
    }
}

async fn order(Path(id): Path<u32>) -> String {
    orders::reserve(id)
}

#[tokio::main]
async fn main() {
    let _guard = panicle::init(panicle::Options::from_env().with_release(panicle::release_name!()));
    let app = Router::new()
        .route("/orders/{id}", get(order))
        .layer(panicle::PanicleLayer::new());
    let once = std::env::args().nth(1).as_deref() == Some("once");
    let listen = if once {
        "127.0.0.1:0"
    } else {
        "127.0.0.1:3000"
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    let Ok(addr) = listener.local_addr() else {
        return;
    };
    println!("listening on http://{addr}");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    if !once {
        let _ = server.await;
        return;
    }
    let answer = tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build(),
        );
        let mut resp = agent
            .get(format!("http://{addr}/orders/42"))
            .header("x-request-id", "demo-1")
            .call()?;
        let body = resp.body_mut().read_to_string()?;
        Ok::<_, ureq::Error>((resp.status(), body))
    })
    .await;
    match answer {
        Ok(Ok((status, body))) => println!("{status} {body}"),
        Ok(Err(e)) => eprintln!("request failed: {e}"),
        Err(e) => eprintln!("request task failed: {e}"),
    }
    panicle::flush(panicle::DEFAULT_FLUSH_TIMEOUT);
}
