use ctxkit::ContextKey;

#[derive(ContextKey)]
#[context_key(value = u32, codec = ctxkit::DisplayFromStr)]
struct Shard;

fn main() {}
