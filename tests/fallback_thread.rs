//! Outside a runtime, deadlines are held by one background thread that exists only while it has
//! deadlines to wait for (plus a short linger), so an idle program keeps no extra thread.
//!
//! Its own test binary: it counts the process's threads by name.

use std::time::{Duration, Instant};

use ctxkit::{Context, Error};

#[cfg(target_os = "linux")]
fn deadline_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == "ctxkit-deadline") // the kernel keeps 15 bytes
        .count()
}

#[cfg(target_os = "linux")]
fn wait_for(threads: usize) {
    let give_up = Instant::now() + Duration::from_secs(30);
    while deadline_threads() != threads {
        assert!(
            Instant::now() < give_up,
            "the deadline thread count never became {threads}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
#[cfg(target_os = "linux")]
#[cfg_attr(miri, ignore = "reads /proc")]
fn the_deadline_thread_runs_only_while_it_has_deadlines() {
    assert_eq!(deadline_threads(), 0);
    let (ctx, cancel) = Context::background().with_timeout(Duration::from_secs(3600));
    let (other, _h) = Context::background().with_timeout(Duration::from_secs(7200));
    wait_for(1); // (the thread names itself once it runs)
    assert_eq!(deadline_threads(), 1, "one thread for all deadlines");
    drop(cancel);
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(deadline_threads(), 1, "still a deadline to wait for");
    drop(_h);
    assert!(other.is_done());
    wait_for(0);
    // And it comes back when needed.
    let (again, _h) = Context::background().with_timeout(Duration::from_millis(10));
    let (tx, rx) = std::sync::mpsc::channel();
    let _a = again.after_func(move || tx.send(()).unwrap());
    rx.recv_timeout(Duration::from_secs(30)).unwrap();
    wait_for(0);
}
