use ctxkit::ContextKey;

struct Opaque;

#[derive(ContextKey)]
#[context_key(value = Opaque, header = "x-opaque")]
struct Key;

fn main() {}
