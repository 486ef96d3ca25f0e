//! The Go talk's scenarios, as the examples in `examples/` run them: each example's logic is
//! compiled into this test (its `main` only narrates) and its claims are checked here.

#[path = "../examples/context_tree.rs"]
#[allow(dead_code)]
mod context_tree;

mod tree {
    use super::context_tree::{BKey, DKey, Value, build, lookups};
    use ctxkit::Error;

    #[test]
    fn lookups_find_the_nearest_value_of_each_key_type() {
        let tree = build();
        let expect = [
            ("A", "Value=-  BKey=-  DKey=-"),
            ("B", "Value=-  BKey=-  DKey=-"),
            ("C", "Value=C  BKey=-  DKey=-"),
            ("D", "Value=D  BKey=-  DKey=-"),
            ("E", "Value=-  BKey=E  DKey=-"),
            ("F", "Value=-  BKey=F  DKey=-"),
            ("G", "Value=D  BKey=-  DKey=G"),
            ("H", "Value=D  BKey=-  DKey=H"),
        ];
        for (name, want) in expect {
            assert_eq!(lookups(tree.node(name)), want, "lookups of {name}");
        }
        assert_eq!(tree.node("G").value::<Value>(), Some(&"D"));
        assert_eq!(tree.node("G").value::<DKey>(), Some(&"G"));
        assert_eq!(tree.node("E").value::<BKey>(), Some(&"E"));
    }

    #[test]
    fn debug_shows_each_chain_like_go_string() {
        let tree = build();
        let expect = [
            ("A", "Background"),
            ("B", "Background.WithCancel"),
            ("C", "Background.WithValue(Value)"),
            ("E", "Background.WithCancel.WithValue(BKey)"),
            ("H", "Background.WithValue(Value).WithValue(DKey)"),
        ];
        for (name, want) in expect {
            assert_eq!(format!("{:?}", tree.node(name)), want, "chain of {name}");
        }
    }

    #[test]
    fn cancelling_b_cancels_exactly_b_e_and_f() {
        let tree = build();
        for (name, ctx) in &tree.nodes {
            assert_eq!(ctx.err(), None, "{name} is live before the cancel");
        }
        tree.cancel_b.cancel();
        for (name, ctx) in &tree.nodes {
            let want = matches!(*name, "B" | "E" | "F").then_some(Error::Canceled);
            assert_eq!(ctx.err(), want, "err of {name}");
            assert_eq!(ctx.is_done(), want.is_some(), "is_done of {name}");
        }
        // Values outlive the cancellation.
        assert_eq!(tree.node("E").value::<BKey>(), Some(&"E"));
    }

    #[test]
    fn a_cancelled_node_names_where_it_was_cancelled() {
        let tree = build();
        tree.cancel_b.cancel(); // this line is the origin
        let origin = tree.node("F").cause().and_then(|c| c.origin()).unwrap();
        assert!(
            origin.contains(&format!("{}:{}", file!(), line!() - 3)),
            "origin {origin:?}"
        );
        let debug = format!("{:?}", tree.node("F"));
        assert!(debug.contains("context canceled"), "{debug}");
        assert!(debug.contains(file!()), "{debug}");
    }

    #[test]
    fn dropping_the_handle_cancels_b_too() {
        let tree = build();
        let e = tree.node("E").clone();
        let c = tree.node("C").clone();
        drop(tree);
        assert_eq!(e.err(), Some(Error::Canceled));
        assert_eq!(c.err(), None);
    }
}
