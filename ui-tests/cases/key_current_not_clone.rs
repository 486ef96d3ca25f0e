use ctxkit::ContextKey;

struct Connection;

#[derive(ContextKey)]
#[context_key(value = Connection)]
struct Db;

fn main() {
    let _conn = Db::current();
}
