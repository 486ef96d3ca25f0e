use ctxkit::ContextKey;

// The request span has a `trace_id` of its own.
#[derive(ContextKey)]
#[context_key(value = String, header = "x-trace", record = "trace_id")]
struct TraceId;

fn main() {}
