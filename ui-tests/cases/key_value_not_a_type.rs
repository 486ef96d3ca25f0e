use ctxkit::ContextKey;

#[derive(ContextKey)]
#[context_key(value = 42)]
struct Answer;

fn main() {}
