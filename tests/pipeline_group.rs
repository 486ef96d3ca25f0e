//! The pipeline example on a `Group`: a failing stage stops every stage, and the pipeline
//! reports that one error, once. (Its cancellation scenarios are in `talk_scenarios.rs`.)

#[path = "../examples/pipeline.rs"]
#[allow(dead_code)]
mod pipeline;

use std::time::Duration;

use ctxkit::{Context, Error, TaskFailed};
use pipeline::{Pipeline, PipelineError, STAGES, demo_failure};

#[tokio::test(start_paused = true)]
async fn a_failing_stage_stops_every_stage_and_is_reported_once() {
    let outcome = demo_failure(42).await.expect("every stage stops");
    let finished = &outcome.finished;
    assert_eq!(
        finished.result,
        Err(PipelineError::Lookup {
            seq: 42,
            user: "user-0".into()
        })
    );
    let names: Vec<_> = finished.stages.iter().map(|s| s.name).collect();
    assert_eq!(names, STAGES);
    for stage in &finished.stages {
        if stage.name == "enrich" {
            assert!(stage.failed, "{stage}");
            assert_eq!(stage.handled, 42, "{stage}");
        } else {
            // Stopped by the group's context, with nothing of their own to report.
            assert!(!stage.failed, "{stage}");
            assert_eq!(stage.ended, Err(Error::Canceled), "{stage}");
        }
    }
    let cause = outcome
        .stages_context
        .cause()
        .expect("the group was cancelled");
    assert_eq!(
        cause.downcast_ref::<TaskFailed>().map(TaskFailed::message),
        Some("region lookup failed for user-0 (line 42)")
    );
    assert!(
        outcome.request_live,
        "the failure stays inside the pipeline"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_after_the_input_ran_out_is_still_reported() {
    let (ctx, _cancel) = Context::background().with_cancel();
    let finished = Pipeline::start_failing_at(&ctx, Some(10), Some(9))
        .finish(Duration::from_secs(60))
        .await
        .expect("every stage ends");
    assert!(matches!(
        finished.result,
        Err(PipelineError::Lookup { seq: 9, .. })
    ));
    let sink = finished.stages.last().unwrap();
    assert_eq!(sink.handled, 9);
}

#[tokio::test(start_paused = true)]
async fn a_pipeline_without_failure_reports_no_error() {
    let (ctx, _cancel) = Context::background().with_cancel();
    let finished = Pipeline::start(&ctx, Some(25))
        .finish(Duration::from_secs(60))
        .await
        .expect("every stage ends");
    assert_eq!(finished.result, Ok(()));
    assert!(
        finished
            .stages
            .iter()
            .all(|s| !s.failed && s.ended == Ok(()))
    );
}
