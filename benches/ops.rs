//! One operation of a scenario, repeated: for instruction counts under callgrind, which are
//! repeatable where wall-clock times on a busy machine are not.
//!
//! `valgrind --tool=callgrind $(ls target/release/deps/ops-* | grep -v '\.d$') create_drop 100000`
//! then divide the total instruction count (minus an `empty` run's) by the repetitions.
//! Without arguments (as `cargo bench` runs it) it does nothing.

use std::hint::black_box;

use ctxkit::{Context, ContextKey};
use tokio_util::sync::CancellationToken;

struct RootKey;
impl ContextKey for RootKey {
    type Value = u64;
}
struct Other;
impl ContextKey for Other {
    type Value = u64;
}
struct Missing;
impl ContextKey for Missing {
    type Value = u64;
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(op) = args.next() else { return };
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let bg = Context::background();
    let (parent, _p) = bg.with_cancel();
    let token = CancellationToken::new();
    let mut chain = bg.with_value::<RootKey>(1);
    for i in 1..100 {
        chain = chain.with_value::<Other>(i);
    }
    for _ in 0..n {
        match op.as_str() {
            "empty" => {}
            "create_drop" => drop(black_box(bg.with_cancel())),
            "create_drop_parent" => drop(black_box(parent.with_cancel())),
            "create_drop_value" => drop(black_box(bg.with_value::<RootKey>(1))),
            "tokio_create_drop" => drop(black_box(CancellationToken::new())),
            "tokio_create_drop_parent" => drop(black_box(token.child_token())),
            "is_done" => {
                black_box(black_box(&parent).is_done());
            }
            "err" => {
                black_box(black_box(&parent).err());
            }
            "value_hit_100" => {
                black_box(black_box(&chain).value::<RootKey>());
            }
            "value_miss_100" => {
                black_box(black_box(&chain).value::<Missing>());
            }
            other => {
                eprintln!("unknown op {other}");
                std::process::exit(2);
            }
        }
    }
}
