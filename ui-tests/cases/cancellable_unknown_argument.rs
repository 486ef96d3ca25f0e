use ctxkit::cancellable;

#[cancellable(deadline = "1s")]
async fn fetch() -> u32 {
    1
}

fn main() {
    let _ = fetch();
}
