use ctxkit::ContextKey;

#[derive(ContextKey)]
struct Borrowed<'a>(&'a str);

fn main() {}
