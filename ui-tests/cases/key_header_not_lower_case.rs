use ctxkit::ContextKey;

#[derive(ContextKey)]
#[context_key(value = u64, header = "X-Request-Id")]
struct RequestId;

fn main() {}
