use std::rc::Rc;

use ctxkit::ContextKey;

#[derive(ContextKey)]
#[context_key(value = Rc<String>)]
struct Shared;

fn main() {}
