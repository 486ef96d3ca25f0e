use ctxkit::cancellable;

#[cancellable]
async fn save(data: &mut Vec<u8>) {
    tokio::task::yield_now().await;
    data.push(1);
}

fn main() {
    let mut data = Vec::new();
    let _ = save(&mut data);
}
