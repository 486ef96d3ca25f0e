//! The talk's context tree, A to H: how values are found and how far a cancellation reaches.
//!
//! ```text
//!                    A = Background
//!          ┌─────────────┼─────────────┐
//!   B = WithCancel   C = Value:"C"   D = Value:"D"
//!     ┌────┴────┐                  ┌────┴────┐
//!  E = BKey:"E" F = BKey:"F"     G = DKey:"G" H = DKey:"H"
//! ```
//!
//! Go keys its values with strings (`"Value"`, `"B Key"`, `"D Key"`); ctxkit keys them with types,
//! so two keys can never collide and a lookup can never return the wrong type. Cancelling B
//! reaches E and F (everything under B) and nothing else. No async runtime is needed for any of
//! it.
//!
//! Run it with `cargo run --example context_tree`.

use ctxkit::{CancelHandle, Context, ContextKey};

/// The talk's `"Value"` key: C and D store their own name under it.
#[derive(ContextKey)]
#[context_key(value = &'static str)]
pub struct Value;

/// The talk's `"B Key"`: E and F, the children of B, store their name under it.
#[derive(ContextKey)]
#[context_key(value = &'static str)]
pub struct BKey;

/// The talk's `"D Key"`: G and H, the children of D, store their name under it.
#[derive(ContextKey)]
#[context_key(value = &'static str)]
pub struct DKey;

/// The eight nodes of the figure, in order A..H, and the handle that cancels B.
pub struct Tree {
    /// `(name, context)` for A..H.
    pub nodes: Vec<(&'static str, Context)>,
    /// B's cancel handle (dropping it would cancel B too).
    pub cancel_b: CancelHandle,
}

impl Tree {
    /// The node called `name`.
    pub fn node(&self, name: &str) -> &Context {
        let (_, ctx) = self
            .nodes
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no node {name} in the tree"));
        ctx
    }
}

/// Builds the tree exactly as the talk's slide does.
pub fn build() -> Tree {
    let a = Context::background(); // A = context.Background()
    let (b, cancel_b) = a.with_cancel(); // B = context.WithCancel(A)
    let c = Value::set(&a, "C"); // C = context.WithValue(A, "Value", "C")
    let d = Value::set(&a, "D"); // D = context.WithValue(A, "Value", "D")
    let e = BKey::set(&b, "E"); // E = context.WithValue(B, "B Key", "E")
    let f = BKey::set(&b, "F");
    let g = DKey::set(&d, "G");
    let h = DKey::set(&d, "H"); // H = context.WithValue(D, "D Key", "H")
    Tree {
        nodes: vec![
            ("A", a),
            ("B", b),
            ("C", c),
            ("D", d),
            ("E", e),
            ("F", f),
            ("G", g),
            ("H", h),
        ],
        cancel_b,
    }
}

/// One node's lookups as text: `Value=C  BKey=-  DKey=-`.
pub fn lookups(ctx: &Context) -> String {
    let show = |v: Option<&&'static str>| v.copied().unwrap_or("-");
    format!(
        "Value={}  BKey={}  DKey={}",
        show(Value::get(ctx)),
        show(BKey::get(ctx)),
        show(DKey::get(ctx)),
    )
}

fn print_tree(tree: &Tree) {
    let width = tree.nodes.iter().map(|(_, ctx)| chain(ctx).len()).max();
    let width = width.unwrap_or(0);
    for (name, ctx) in &tree.nodes {
        let state = match ctx.err() {
            None => "live".to_string(),
            Some(err) => err.to_string(),
        };
        println!(
            "  {name}  {:<width$}  {}  {state}",
            chain(ctx),
            lookups(ctx)
        );
    }
}

/// The node's `Debug` chain without the cancellation note (printed separately, below).
fn chain(ctx: &Context) -> String {
    let full = format!("{ctx:?}");
    match full.split_once(" [") {
        Some((chain, _)) => chain.to_string(),
        None => full,
    }
}

fn main() {
    println!("The talk's context tree (Go keys are strings; here each key is its own type):\n");
    println!("                   A = Background");
    println!("         ┌─────────────┼─────────────┐");
    println!("  B = WithCancel   C = Value:\"C\"   D = Value:\"D\"");
    println!("    ┌────┴────┐                  ┌────┴────┐");
    println!(" E = BKey:\"E\" F = BKey:\"F\"     G = DKey:\"G\" H = DKey:\"H\"\n");

    let tree = build();
    println!("Each node, its chain (`{{:?}}`, like Go's String()) and what it finds:");
    print_tree(&tree);
    println!();
    println!("A lookup walks towards the root and stops at the nearest match: G finds D's");
    println!("`Value` and its own `DKey`, while E, under B, sees no `Value` at all. `Value`,");
    println!("`BKey` and `DKey` all hold a &str, yet never collide: the key is the type.\n");

    println!("Now B is cancelled:");
    tree.cancel_b.cancel();
    print_tree(&tree);
    println!();

    let (cancelled, live): (Vec<_>, Vec<_>) = tree.nodes.iter().partition(|(_, ctx)| ctx.is_done());
    let names = |v: Vec<&(&'static str, Context)>| v.iter().map(|(n, _)| *n).collect::<Vec<_>>();
    println!("Cancelled: {}", names(cancelled).join(", "));
    println!("Untouched: {}", names(live).join(", "));
    println!("A cancellation flows down to every descendant of B and never up or sideways.\n");

    let e = tree.node("E");
    if let Some(cause) = e.cause() {
        let origin = cause.origin().unwrap_or_else(|| "unknown".to_string());
        println!("Why is E done? {cause}: {origin}");
    }
    println!("E's full Debug: {e:?}");
    println!(
        "Values outlive the cancellation: E still finds BKey={:?}.",
        BKey::get(e)
    );
}
