use ctxkit::ContextKey;

#[derive(ContextKey)]
#[context_key(value = String)]
#[context_key(value = u64)]
struct UserName;

fn main() {}
