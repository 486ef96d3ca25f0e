use ctxkit::ContextKey;

#[derive(ContextKey)]
#[context_key(value = String, default = "anonymous")]
struct UserName;

fn main() {}
