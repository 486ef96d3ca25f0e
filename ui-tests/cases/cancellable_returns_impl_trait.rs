use std::fmt::Display;

use ctxkit::cancellable;

#[cancellable]
async fn render(n: u32) -> impl Display {
    tokio::task::yield_now().await;
    n
}

fn main() {
    let _ = render(1);
}
