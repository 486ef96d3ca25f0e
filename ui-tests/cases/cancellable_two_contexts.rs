use ctxkit::{Context, cancellable};

#[cancellable]
async fn copy(from: &Context, to: &Context) -> u32 {
    let _ = (from, to);
    1
}

fn main() {
    let bg = Context::background();
    let _ = copy(&bg, &bg);
}
