use ctxkit::ContextKey;

#[derive(ContextKey)]
#[context_key(value = String, header = "traceparent")]
struct Trace;

fn main() {}
