use ctxkit::{Context, cancellable};

#[cancellable]
async fn copy(from: &Context, to: &Context) -> Result<u32, ctxkit::Error> {
    let _ = (from, to);
    Ok(1)
}

fn main() {
    let bg = Context::background();
    let _ = copy(&bg, &bg);
}
