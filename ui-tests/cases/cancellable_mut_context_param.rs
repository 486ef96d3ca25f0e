use std::time::Duration;

use ctxkit::{Context, Error, cancellable};

#[cancellable]
async fn fetch(ctx: &mut Context) -> Result<(), Error> {
    let (child, _cancel) = ctx.with_timeout(Duration::from_millis(100));
    *ctx = child;
    tokio::time::sleep(Duration::from_millis(700)).await;
    Ok(())
}

fn main() {
    let mut ctx = Context::background();
    let _ = fetch(&mut ctx);
}
