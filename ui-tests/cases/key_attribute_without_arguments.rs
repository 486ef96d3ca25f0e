use ctxkit::ContextKey;

#[derive(ContextKey)]
#[context_key]
struct UserName(String);

fn main() {}
