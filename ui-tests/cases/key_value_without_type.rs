use ctxkit::ContextKey;

#[derive(ContextKey)]
#[context_key(value)]
struct UserName;

fn main() {}
