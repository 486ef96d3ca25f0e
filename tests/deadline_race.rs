//! A passed deadline is seen by every descendant's `err()`, even while the deadline's own walk
//! has marked the node that owns it but not yet reached the descendant.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Wake, Waker};
use std::time::Duration;

use ctxkit::{Context, Error};

/// Wakes during the walk (a leaf's waiters are woken as soon as it is marked, while the walk
/// goes on to its siblings), and asks every sibling for its `err()` right then.
struct AskSiblings {
    siblings: Vec<Context>,
    answers: Mutex<Vec<Option<Error>>>,
}

impl Wake for AskSiblings {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let answers: Vec<_> = self.siblings.iter().map(Context::err).collect();
        self.answers.lock().unwrap().extend(answers);
    }
}

#[test]
fn err_after_a_passed_deadline_is_deadline_exceeded_while_the_walk_is_on_its_way() {
    // No runtime: the deadline thread fires the deadline and walks the tree.
    let (owner, _cancel) = Context::background().with_timeout(Duration::from_millis(20));
    let children: Vec<_> = (0..64).map(|_| owner.with_cancel()).collect();
    let contexts: Vec<Context> = children.iter().map(|(c, _)| c.clone()).collect();
    let askers: Vec<_> = contexts
        .iter()
        .map(|c| {
            let asker = Arc::new(AskSiblings {
                siblings: contexts.clone(),
                answers: Mutex::new(Vec::new()),
            });
            let mut done = c.done();
            let waker = Waker::from(asker.clone());
            assert!(
                Pin::new(&mut done)
                    .poll(&mut TaskContext::from_waker(&waker))
                    .is_pending()
            );
            (asker, done)
        })
        .collect();
    while askers
        .iter()
        .any(|(a, _)| a.answers.lock().unwrap().is_empty())
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    for (asker, _) in &askers {
        for answer in asker.answers.lock().unwrap().iter() {
            assert_eq!(*answer, Some(Error::DeadlineExceeded));
        }
    }
}
