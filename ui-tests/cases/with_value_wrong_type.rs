use ctxkit::{Context, ContextKey};

#[derive(ContextKey)]
#[context_key(value = u64)]
struct RequestId;

fn main() {
    let _ctx = Context::background().with_value::<RequestId>("not a number");
}
