use ctxkit::{Context, ContextKey};

#[derive(ContextKey)]
#[context_key(value = String)]
struct UserName;

fn main() {
    let _ctx = UserName::set(&Context::background(), 42);
}
