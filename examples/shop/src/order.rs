//! Orders: the handler awaits a lookup that panics inside an `async move` block.

use axum::extract::Path;

pub async fn show(Path(id): Path<u32>) -> String {
    let line = load(id).await;
    format!("order {id}: {line}")
}

async fn load(id: u32) -> String {
    tokio::task::yield_now().await;
    let reserved = async move {
        tokio::task::yield_now().await;
        let stock: Option<u32> = std::hint::black_box(None);
        stock.unwrap() + id
    }
    .await;
    reserved.to_string()
}
