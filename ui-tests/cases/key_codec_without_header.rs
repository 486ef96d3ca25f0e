use ctxkit::ContextKey;

#[derive(ContextKey)]
#[context_key(value = u32, codec = ctxkit::propagation::DisplayFromStr)]
struct Shard;

fn main() {}
