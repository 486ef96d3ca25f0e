//! `#[derive(ContextKey)]`: both forms, generic keys, and the generated accessors.
#![deny(missing_docs)] // the generated accessors are documented

use std::marker::PhantomData;
use std::sync::Arc;

use ctxkit::{Context, ContextKey};

#[derive(Clone, Debug, PartialEq, ContextKey)]
struct RequestId(u64);

#[derive(ContextKey)]
#[context_key(value = String)]
struct UserName;

#[derive(ContextKey)]
#[context_key(value = Arc<Vec<u8>>)]
/// A public key: its generated accessors must carry docs too.
pub struct Payload;

#[derive(Debug, PartialEq, ContextKey)]
struct NotClone(u8);

#[derive(Clone, Debug, PartialEq, ContextKey)]
struct Wrapper<T>(T);

#[derive(ContextKey)]
#[context_key(value = Vec<T>)]
struct ListOf<T>(PhantomData<T>);

#[derive(Clone, Debug, PartialEq, ContextKey)]
enum Tier {
    Free,
    Paid,
}

mod reexported {
    pub use ctxkit as kit;
}

#[derive(ContextKey)]
#[context_key(crate = reexported::kit, value = u32)]
struct ThroughReexport;

#[test]
fn self_valued_key_round_trips() {
    let ctx = RequestId::set(&Context::background(), RequestId(7));
    assert_eq!(RequestId::get(&ctx), Some(&RequestId(7)));
    assert_eq!(ctx.value::<RequestId>(), Some(&RequestId(7)));
}

#[test]
fn marker_key_carries_its_value_type() {
    let ctx = UserName::set(&Context::background(), "gopher".to_string());
    assert_eq!(UserName::get(&ctx).map(String::as_str), Some("gopher"));
    let bytes = Arc::new(vec![1, 2, 3]);
    let ctx = Payload::set(&ctx, bytes.clone());
    assert!(Arc::ptr_eq(Payload::get(&ctx).unwrap(), &bytes));
}

#[test]
fn set_returns_a_child_and_leaves_the_parent_unchanged() {
    let parent = Context::background();
    let child = UserName::set(&parent, "a".into());
    assert_eq!(UserName::get(&parent), None);
    assert_eq!(UserName::get(&child).map(String::as_str), Some("a"));
    let grandchild = UserName::set(&child, "b".into());
    assert_eq!(UserName::get(&grandchild).map(String::as_str), Some("b"));
    assert_eq!(UserName::get(&child).map(String::as_str), Some("a"));
}

#[test]
fn keys_with_equal_values_never_collide() {
    #[derive(ContextKey)]
    #[context_key(value = String)]
    struct Other;
    let ctx = UserName::set(&Context::background(), "mine".into());
    assert_eq!(Other::get(&ctx), None);
}

#[test]
fn current_clones_the_value_of_the_current_context() {
    assert_eq!(RequestId::current(), None);
    let ctx = RequestId::set(&Context::background(), RequestId(9));
    assert_eq!(ctx.sync_scope(RequestId::current), Some(RequestId(9)));
    assert_eq!(ctx.sync_scope(UserName::current), None);
}

#[test]
fn a_non_clone_value_still_has_get_and_set() {
    let ctx = NotClone::set(&Context::background(), NotClone(1));
    assert_eq!(NotClone::get(&ctx), Some(&NotClone(1)));
}

#[test]
fn generic_keys_are_distinct_per_instantiation() {
    let ctx = Wrapper::<u8>::set(&Context::background(), Wrapper(1));
    let ctx = Wrapper::<&'static str>::set(&ctx, Wrapper("x"));
    assert_eq!(Wrapper::<u8>::get(&ctx), Some(&Wrapper(1)));
    assert_eq!(Wrapper::<&str>::get(&ctx), Some(&Wrapper("x")));
    assert_eq!(Wrapper::<u16>::get(&ctx), None);

    let ctx = ListOf::<u8>::set(&ctx, vec![1, 2]);
    assert_eq!(ListOf::<u8>::get(&ctx), Some(&vec![1, 2]));
    assert_eq!(ListOf::<i8>::get(&ctx), None);
}

#[test]
fn enums_can_be_keys() {
    let ctx = Tier::set(&Context::background(), Tier::Paid);
    assert_eq!(Tier::get(&ctx), Some(&Tier::Paid));
    assert_ne!(Tier::get(&ctx), Some(&Tier::Free));
}

#[test]
fn crate_argument_reaches_the_runtime_through_a_reexport() {
    let ctx = ThroughReexport::set(&Context::background(), 5);
    assert_eq!(ThroughReexport::get(&ctx), Some(&5));
}

#[tokio::test]
async fn current_follows_the_scope_across_awaits() {
    let ctx = RequestId::set(&Context::background(), RequestId(3));
    let seen = ctx
        .scope(async {
            tokio::task::yield_now().await;
            RequestId::current()
        })
        .await;
    assert_eq!(seen, Some(RequestId(3)));
}

/// `ctxkit-macros` cannot import `RESERVED_HEADERS` (a proc-macro crate shares no constants), so
/// it keeps a copy to reject those headers at compile time: the two lists must agree.
#[cfg(feature = "propagation")]
#[test]
fn the_derive_reserves_the_same_headers_as_propagation() {
    let source = include_str!("../ctxkit-macros/src/key/args.rs");
    let start = source
        .find("const RESERVED: [&str; ")
        .expect("the derive's RESERVED list");
    let list = &source[start..];
    let list = &list[list.find('[').unwrap() + 1..];
    let list = &list[list.find('[').unwrap() + 1..list.find("];").unwrap()];
    let mut derive: Vec<&str> = list
        .split(',')
        .map(|s| s.trim().trim_matches('"'))
        .filter(|s| !s.is_empty())
        .collect();
    let mut runtime = ctxkit::propagation::RESERVED_HEADERS.to_vec();
    derive.sort_unstable();
    runtime.sort_unstable();
    assert_eq!(derive, runtime);
}
