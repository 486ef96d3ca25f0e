use ctxkit::cancellable;

#[cancellable]
async fn save(data: &mut Vec<u8>) -> Result<(), ctxkit::Error> {
    #[shield]
    data.push(1);
    tokio::task::yield_now().await;
    Ok(())
}

fn main() {
    let mut data = Vec::new();
    let _ = save(&mut data);
}
