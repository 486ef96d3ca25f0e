use ctxkit::cancellable;

#[cancellable(timeout = 250)]
async fn fetch() -> u32 {
    1
}

fn main() {
    let _ = fetch();
}
