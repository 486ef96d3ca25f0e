use ctxkit::ContextKey;

// A value recorded in the request's span comes from the request's headers: the key must travel.
#[derive(ContextKey)]
#[context_key(value = String, record)]
struct RequestId;

fn main() {}
