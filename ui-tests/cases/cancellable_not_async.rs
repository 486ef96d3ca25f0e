use ctxkit::cancellable;

#[cancellable]
fn compute(x: u32) -> u32 {
    x * 2
}

fn main() {
    let _ = compute(1);
}
