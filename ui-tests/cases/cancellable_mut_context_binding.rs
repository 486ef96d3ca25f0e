use std::time::Duration;

use ctxkit::{Context, Error, cancellable};

#[cancellable]
async fn fetch(mut ctx: Context) -> Result<(), Error> {
    let (child, _cancel) = ctx.with_timeout(Duration::from_millis(100));
    ctx = child;
    tokio::time::sleep(Duration::from_millis(700)).await;
    ctx.check()
}

fn main() {
    let _ = fetch(Context::background());
}
