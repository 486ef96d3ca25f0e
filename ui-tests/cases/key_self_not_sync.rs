use std::cell::Cell;

use ctxkit::ContextKey;

#[derive(ContextKey)]
struct Counter(Cell<u64>);

fn main() {}
