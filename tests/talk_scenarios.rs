//! The Go talk's scenarios, as the examples in `examples/` run them: each example's logic is
//! compiled into this test (its `main` only narrates) and its claims are checked here.

#[path = "../examples/cancellable_request.rs"]
#[allow(dead_code)]
mod cancellable_request;

#[path = "../examples/context_tree.rs"]
#[allow(dead_code)]
mod context_tree;

#[path = "../examples/pipeline.rs"]
#[allow(dead_code)]
mod pipeline;

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

mod pipe {
    use std::time::Duration;

    use super::pipeline::{
        CAPACITY, ClientDisconnected, Counter, Pipeline, STAGES, StillRunning, demo, generate,
    };
    use ctxkit::{Context, Error};
    use tokio::sync::mpsc;

    #[tokio::test(start_paused = true)]
    async fn cancelling_mid_stream_stops_every_stage() {
        let outcome = demo(Duration::from_millis(150))
            .await
            .expect("every stage stops");
        let names: Vec<_> = outcome.stages.iter().map(|s| s.name).collect();
        assert_eq!(names, STAGES);
        for stage in &outcome.stages {
            assert_eq!(stage.ended, Err(Error::Canceled), "{stage}");
        }
        let handled: Vec<_> = outcome.stages.iter().map(|s| s.handled).collect();
        assert!(handled.windows(2).all(|w| w[0] >= w[1]), "{handled:?}");
        assert!(
            handled[3] > 0,
            "the sink stored something before the cancel: {handled:?}"
        );
        assert!(
            handled[0] - handled[3] <= 3 * CAPACITY + 3,
            "bounded channels bound the work in flight: {handled:?}"
        );
        let cause = outcome.request.cause().unwrap();
        assert!(cause.is::<ClientDisconnected>(), "{cause:?}");
        assert!(
            cause.origin().unwrap().contains("examples/pipeline.rs"),
            "{cause:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_finite_input_flows_through_every_stage() {
        let (ctx, _cancel) = Context::background().with_cancel();
        let pipeline = Pipeline::start(&ctx, Some(25));
        let stages = pipeline.join(Duration::from_secs(60)).await.unwrap();
        for stage in &stages {
            assert_eq!(stage.ended, Ok(()), "{stage}");
            assert_eq!(stage.handled, 25, "{stage}");
        }
        assert_eq!(ctx.err(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stage_blocked_on_a_full_channel_stops_at_the_cancel() {
        let (ctx, cancel) = Context::background().with_cancel();
        let (tx, rx) = mpsc::channel(CAPACITY);
        let sent = Counter::default();
        let task = tokio::spawn(ctx.run(generate(tx, None, sent.clone())));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(sent.get(), CAPACITY, "the generator waits for room");
        assert!(!task.is_finished());
        cancel.cancel();
        assert_eq!(task.await.unwrap(), Err(Error::Canceled));
        assert_eq!(rx.len(), CAPACITY);
    }

    #[tokio::test(start_paused = true)]
    async fn join_reports_a_stage_that_does_not_stop() {
        let (ctx, _cancel) = Context::background().with_cancel();
        let pipeline = Pipeline::start(&ctx, None); // endless and never cancelled
        match pipeline.join(Duration::from_millis(100)).await {
            Err(StillRunning(name)) => assert_eq!(name, "generate"),
            Ok(_) => panic!("an endless pipeline cannot have ended"),
        }
    }
}

mod request {
    use std::time::Duration;

    use super::cancellable_request::{
        COMMIT_WRITE, ClientHungUp, Event, Payload, Processor, STEP, ServerError, Status, demo,
        start_request,
    };
    use ctxkit::{Context, Error, Instant};

    const TALK_ID: &str = "c66e30e7-5a91-435c-bf18-e63469d472b3";

    fn event(request_id: &'static str, steps: u32) -> Event {
        Event {
            request_id,
            payload: Payload::Downstream1 {
                event_id: "ev-1".into(),
            },
            steps,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_request_succeeds_without_cleanup() {
        let processor = Processor::default();
        let started = Instant::now();
        let result = start_request(
            &Context::background(),
            &processor,
            &event(TALK_ID, 3),
            Duration::from_millis(300),
        )
        .await;
        let processed = Status {
            event_id: "ev-1".into(),
            steps: 3,
        };
        assert_eq!(result, Ok(processed.clone()));
        assert_eq!(started.elapsed(), 3 * STEP + 2 * COMMIT_WRITE);
        assert!(processor.cleaned_up().is_empty());
        assert_eq!(processor.stored(), [processed]);
        assert_eq!(processor.acknowledged(), ["ev-1"]);
        assert_eq!(processor.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_request_ends_with_deadline_exceeded_after_its_cleanup() {
        let processor = Processor::default();
        let started = Instant::now();
        let result = start_request(
            &Context::background(),
            &processor,
            &event(TALK_ID, 10),
            Duration::from_millis(150),
        )
        .await;
        assert_eq!(result, Err(ServerError::Context(Error::DeadlineExceeded)));
        assert_eq!(result.unwrap_err().to_string(), "context deadline exceeded");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(150) && took < 10 * STEP,
            "ended at the deadline, not after the processing: {took:?}"
        );
        assert_eq!(processor.cleaned_up(), ["ev-1"], "the cleanup ran");
        assert_eq!(
            processor.in_flight(),
            0,
            "the processing was dropped before the server returned"
        );
        assert!(processor.stored().is_empty() && processor.acknowledged().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_during_the_commit_lets_the_commit_finish() {
        let processor = Processor::default();
        let started = Instant::now();
        // The steps end at 120ms, the commit's two writes at 140ms and 160ms.
        let result = start_request(
            &Context::background(),
            &processor,
            &event(TALK_ID, 3),
            3 * STEP + COMMIT_WRITE / 2,
        )
        .await;
        let processed = Status {
            event_id: "ev-1".into(),
            steps: 3,
        };
        assert_eq!(
            result,
            Ok(processed.clone()),
            "nothing after the commit awaits"
        );
        assert_eq!(started.elapsed(), 3 * STEP + 2 * COMMIT_WRITE);
        assert_eq!(processor.stored(), [processed]);
        assert_eq!(processor.acknowledged(), ["ev-1"], "the commit is whole");
        assert!(processor.cleaned_up().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_hang_up_cancels_the_request_and_says_where_from() {
        let processor = Processor::default();
        let (conn, hang_up) = Context::background().with_cancel();
        let client = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(60)).await;
            hang_up.cancel_with(ClientHungUp);
        });
        let result = start_request(
            &conn,
            &processor,
            &event(TALK_ID, 10),
            Duration::from_secs(5),
        )
        .await;
        client.await.unwrap();
        assert_eq!(result, Err(ServerError::Context(Error::Canceled)));
        assert_eq!(processor.cleaned_up(), ["ev-1"]);
        assert_eq!(processor.in_flight(), 0);
        let cause = conn.cause().unwrap();
        assert!(cause.is::<ClientHungUp>(), "{cause:?}");
        assert!(cause.origin().unwrap().contains(file!()), "{cause:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_without_a_valid_id_is_refused_before_any_processing() {
        let processor = Processor::default();
        let started = Instant::now();
        let result = start_request(
            &Context::background(),
            &processor,
            &event("not-a-uuid", 3),
            Duration::from_millis(300),
        )
        .await;
        assert_eq!(result, Err(ServerError::NoRequestId));
        assert_eq!(
            result.unwrap_err().to_string(),
            "not a valid UUID to process"
        );
        assert_eq!(started.elapsed(), Duration::ZERO, "nothing was processed");
        assert!(processor.cleaned_up().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_demo_shows_success_deadline_hang_up_shielded_commit_and_missing_id() {
        let processor = Processor::default();
        let results = demo(&processor).await;
        let errors: Vec<_> = results.iter().map(|r| r.as_ref().err().copied()).collect();
        assert_eq!(
            errors,
            [
                None,
                Some(ServerError::Context(Error::DeadlineExceeded)),
                Some(ServerError::Context(Error::Canceled)),
                None,
                Some(ServerError::NoRequestId),
            ]
        );
        assert_eq!(processor.cleaned_up(), ["ds2-18", "ds1-19"]);
        assert_eq!(processor.acknowledged(), ["ds1-17", "ds2-20"]);
        assert_eq!(processor.in_flight(), 0);
    }
}
