#![deny(unused_must_use)]

use ctxkit::Context;

fn main() {
    let parent = Context::background();
    // Dropping the handle at once cancels the child: almost certainly a mistake.
    parent.with_cancel().1;
}
