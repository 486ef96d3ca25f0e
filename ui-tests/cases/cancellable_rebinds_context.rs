use std::time::Duration;

use ctxkit::{Context, Error, cancellable};

#[cancellable]
async fn fetch(ctx: &Context) -> Result<(), Error> {
    // The Go habit: a shorter deadline for the rest of the call. The awaits below would still
    // race the outer context.
    let (ctx, _cancel) = ctx.with_timeout(Duration::from_millis(100));
    tokio::time::sleep(Duration::from_millis(700)).await;
    ctx.check()
}

fn main() {
    let _ = fetch(&Context::background());
}
