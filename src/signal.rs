//! Contexts cancelled by process signals: [`notify`], Go's `signal.NotifyContext`.
//!
//! ```rust,standalone_crate
//! use ctxkit::Context;
//! use ctxkit::signal::{self, Signal, SignalReceived};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let (ctx, _stop) = signal::notify(&Context::background(), &[Signal::Interrupt, Signal::Terminate]);
//! # #[cfg(unix)] {
//! # std::process::Command::new("kill").arg("-INT").arg(std::process::id().to_string()).status().unwrap();
//! // ... serve requests under `ctx` until the user presses Ctrl-C ...
//! ctx.done().await;
//! let cause = ctx.cause().unwrap();
//! assert_eq!(cause.downcast_ref(), Some(&SignalReceived(Signal::Interrupt)));
//! assert_eq!(cause.to_string(), "received SIGINT");
//! // ... shut down gracefully; a second Ctrl-C now ends the process at once ...
//! # }
//! # }
//! ```

use std::fmt;
use std::future::poll_fn;

use crate::{CancelHandle, Context};

/// A signal that [`notify`] can listen for.
///
/// On Unix each is the POSIX signal it names. Elsewhere only [`Signal::Interrupt`] is heard (as
/// Ctrl-C, through `tokio::signal::ctrl_c`); the others are never delivered there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Signal {
    /// `SIGINT`: Ctrl-C in a terminal.
    Interrupt,
    /// `SIGTERM`: the polite request to stop that `kill`, systemd, Docker and Kubernetes send.
    Terminate,
    /// `SIGHUP`: the terminal went away (or, by convention, "reload").
    Hangup,
    /// `SIGQUIT`: Ctrl-\ in a terminal.
    Quit,
}

impl Signal {
    const ALL: [Signal; 4] = [
        Signal::Interrupt,
        Signal::Terminate,
        Signal::Hangup,
        Signal::Quit,
    ];

    /// The signal's POSIX name: `"SIGINT"`, `"SIGTERM"`, `"SIGHUP"` or `"SIGQUIT"`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
            Signal::Hangup => "SIGHUP",
            Signal::Quit => "SIGQUIT",
        }
    }

    #[cfg_attr(not(unix), allow(dead_code))]
    fn index(self) -> usize {
        match self {
            Signal::Interrupt => 0,
            Signal::Terminate => 1,
            Signal::Hangup => 2,
            Signal::Quit => 3,
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The cause of a context that [`notify`] cancelled: which signal arrived.
/// Its text is `received SIGINT` (or the signal's name).
///
/// ```
/// use ctxkit::signal::{Signal, SignalReceived};
///
/// assert_eq!(SignalReceived(Signal::Terminate).to_string(), "received SIGTERM");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SignalReceived(pub Signal);

impl fmt::Display for SignalReceived {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "received {}", self.0)
    }
}

impl std::error::Error for SignalReceived {}

/// A child of `parent` that is cancelled when the process receives one of `signals` (its cause
/// is then [`SignalReceived`]), when the returned handle is cancelled or dropped, or when
/// `parent` is (Go's `signal.NotifyContext`). Each signal cancels every context that
/// listens for it at the time. An empty `signals` listens for nothing.
///
/// # The second signal
///
/// As in Go, a signal that arrives while no `notify` context listens for it any more, because
/// the first one cancelled it, or it was stopped, is left to the default action: for these four
/// signals, the process ends, killed by that signal. A second Ctrl-C thus ends a program whose
/// graceful shutdown hangs, even when its runtime is stuck.
///
/// tokio cannot give a signal back to the system: once a tokio program has listened for a
/// signal, it catches it until it exits (and without listeners, ignores it). ctxkit therefore
/// emulates the default action instead: the first `notify` for a signal adds a handler that,
/// while no `notify` context listens for it, resets the signal to its default disposition and
/// raises it again (`signal_hook::low_level::emulate_default_handler`), so the process's parent
/// sees it killed by the signal, as it expects (a shell then stops its script, for instance).
/// That handler decides before the listeners hear the delivery, so the first signal is never
/// taken for a second one.
///
/// # When the last `notify` context is gone
///
/// That handler lives only as long as some `notify` context for the signal does (cancelled or
/// not: every clone of it, and every context derived from it). Once the last one is dropped,
/// ctxkit removes it, and the signal reaches the process's own listeners as if `notify` had
/// never been called: a library that used `notify` during start-up does not break the
/// application's `tokio::signal::ctrl_c()` later. The one trace left is tokio's: like any tokio
/// program that has listened for a signal once, the process keeps catching it, so a signal
/// that nobody listens for any more is ignored rather than fatal.
///
/// Consequences to know:
/// - While a `notify` context for a signal exists and none listens, a delivery ends the
///   process, even if other code listens with `tokio::signal` (ctxkit cannot see those
///   listeners). Drop the contexts (after stopping them) to hand the signal back.
/// - Until the listener task has seen its context done (a moment after `stop`, the parent's
///   cancellation or the first signal), signals are still caught.
/// - Elsewhere than on Unix there is no such emulation: there Ctrl-C stays caught by tokio.
///
/// If listening fails (the operating system refuses the handler), the context is returned
/// already cancelled, with the error as its cause.
///
/// # Panics
///
/// Outside a tokio runtime, or in one built without I/O (tokio's signal driver is part of it:
/// use `enable_all()` or `enable_io()`).
#[track_caller]
pub fn notify(parent: &Context, signals: &[Signal]) -> (Context, CancelHandle) {
    let wanted: Vec<Signal> = Signal::ALL
        .into_iter()
        .filter(|s| signals.contains(s))
        .collect();
    if wanted.is_empty() || parent.is_done() {
        return parent.with_cancel();
    }
    // The claim comes first: the default-action handler is in place before the listener's
    // stream exists.
    let claim = sys::Claim::new(&wanted);
    let listener = match sys::Listener::new(&wanted) {
        Ok(Some(listener)) => Ok(listener),
        // None of them can be heard on this platform.
        Ok(None) => return parent.with_cancel(),
        Err(e) => Err(e),
    };
    // `by_signal` is the listener's; the caller's handle cancels the child below it, whose
    // cause is the parent's when a signal comes first.
    let (heard, by_signal) = parent.with_cancel();
    let (listening, stop) = heard.with_cancel();
    match listener {
        Ok(listener) => {
            tokio::spawn(listen(listener, listening.clone(), by_signal));
        }
        Err(e) => by_signal.cancel_with(e),
    }
    // The caller's context carries the claim: dropping its last clone hands the signals back.
    (listening.with_value::<SignalNotify>(claim), stop)
}

/// The key of the value node that holds a `notify` context's [`sys::Claim`].
struct SignalNotify;

impl crate::ContextKey for SignalNotify {
    type Value = sys::Claim;
}

/// Waits for a signal or for the context to be done, whichever comes first.
async fn listen(mut listener: sys::Listener, ctx: Context, by_signal: CancelHandle) {
    let heard = ctx.run(poll_fn(|cx| listener.poll_recv(cx))).await;
    if let Ok(Some(signal)) = heard {
        by_signal.cancel_with(SignalReceived(signal));
        listener.settle(signal).await;
    }
    // Dropping the listener here tells the default action that one listener fewer is left.
}

#[cfg(unix)]
mod sys {
    use std::io;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::{Mutex, MutexGuard, PoisonError};
    use std::task::{Context as TaskContext, Poll};

    use signal_hook::SigId;
    use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    use tokio::signal::unix::{SignalKind, signal};

    use super::Signal;

    /// Per signal (by [`Signal::index`]): who has a stake in it.
    struct Stake {
        /// Live `notify` contexts (their [`Claim`]s).
        contexts: usize,
        /// Live listeners (their [`Armed`]s).
        listeners: usize,
        /// ctxkit's handler actions, registered while `contexts > 0`.
        actions: Option<[SigId; 2]>,
    }

    static STAKES: Mutex<[Stake; 4]> = Mutex::new(
        [const {
            Stake {
                contexts: 0,
                listeners: 0,
                actions: None,
            }
        }; 4],
    );
    /// Per signal: whether its default action is due, i.e. a `notify` context exists but no
    /// listener is live. Read by the signal handler, so it is an atomic that mirrors `STAKES`
    /// (written under its lock).
    static DEFAULT: [AtomicBool; 4] = [const { AtomicBool::new(false) }; 4];
    /// Per signal: set by every delivery, right after the default action was considered.
    static SEEN: [AtomicBool; 4] = [const { AtomicBool::new(false) }; 4];

    fn stakes() -> MutexGuard<'static, [Stake; 4]> {
        STAKES.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn raw(s: Signal) -> std::ffi::c_int {
        match s {
            Signal::Interrupt => SIGINT,
            Signal::Terminate => SIGTERM,
            Signal::Hangup => SIGHUP,
            Signal::Quit => SIGQUIT,
        }
    }

    /// Adds the handler actions that run the default action while no listener is live and then
    /// set `SEEN`. A signal handler runs its actions in the order they were added: these come
    /// before tokio's own action unless someone listened with tokio first (then [`settle`]
    /// covers the difference).
    fn hook(s: Signal) -> Option<[SigId; 2]> {
        let i = s.index();
        // Best effort: without them a second signal is caught like the first.
        let default = signal_hook::flag::register_conditional_default(raw(s), &DEFAULT[i]).ok()?;
        match signal_hook::flag::register(raw(s), &SEEN[i]) {
            Ok(seen) => Some([default, seen]),
            Err(_) => {
                signal_hook::low_level::unregister(default);
                None
            }
        }
    }

    /// Waits until the handler has considered the default action for the delivery this listener
    /// heard: when tokio's action ran first (someone listened with tokio before ctxkit's actions
    /// were added), the listener may hear the signal before that, and disarming then would make
    /// the same delivery end the process. Bounded: the flag may have been reset by a new
    /// listener meanwhile, which keeps the default action off anyway.
    async fn settle(s: Signal) {
        let start = std::time::Instant::now();
        while !SEEN[s.index()].load(SeqCst)
            && start.elapsed() < std::time::Duration::from_millis(100)
        {
            tokio::task::yield_now().await;
        }
    }

    /// One `notify` context's stake in its signals, held by the context (in a value node) and
    /// dropped with its last clone. ctxkit's handler actions for a signal exist exactly while
    /// some claim on it does: the last one to go removes them, which gives the signal back to
    /// the rest of the process.
    pub(crate) struct Claim(Vec<Signal>);

    impl Claim {
        pub(super) fn new(signals: &[Signal]) -> Claim {
            let mut stakes = stakes();
            for &s in signals {
                let stake = &mut stakes[s.index()];
                stake.contexts += 1;
                if stake.actions.is_none() {
                    // A listener is about to arm: the default action is not due meanwhile.
                    DEFAULT[s.index()].store(false, SeqCst);
                    stake.actions = hook(s);
                }
            }
            Claim(signals.to_vec())
        }
    }

    impl Drop for Claim {
        fn drop(&mut self) {
            let mut stakes = stakes();
            for &s in &self.0 {
                let stake = &mut stakes[s.index()];
                stake.contexts -= 1;
                if stake.contexts == 0
                    && let Some(actions) = stake.actions.take()
                {
                    for id in actions {
                        signal_hook::low_level::unregister(id);
                    }
                    DEFAULT[s.index()].store(false, SeqCst);
                }
            }
        }
    }

    /// One live listener of one signal; dropping it may make the default action due.
    struct Armed(Signal);

    impl Armed {
        fn new(s: Signal) -> Armed {
            let mut stakes = stakes();
            stakes[s.index()].listeners += 1;
            DEFAULT[s.index()].store(false, SeqCst);
            SEEN[s.index()].store(false, SeqCst);
            Armed(s)
        }
    }

    impl Drop for Armed {
        fn drop(&mut self) {
            let i = self.0.index();
            let mut stakes = stakes();
            let stake = &mut stakes[i];
            stake.listeners -= 1;
            if stake.listeners == 0 && stake.actions.is_some() {
                DEFAULT[i].store(true, SeqCst);
            }
        }
    }

    pub(super) struct Listener {
        streams: Vec<(Signal, tokio::signal::unix::Signal, Armed)>,
    }

    impl Listener {
        pub(super) fn new(signals: &[Signal]) -> io::Result<Option<Listener>> {
            let mut streams = Vec::with_capacity(signals.len());
            for &s in signals {
                // Armed before the stream exists, so the default action is never due while
                // this listener could still hear the signal.
                let armed = Armed::new(s);
                let stream = signal(SignalKind::from_raw(raw(s)))
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot listen for {s}: {e}")))?;
                streams.push((s, stream, armed));
            }
            Ok(Some(Listener { streams }))
        }

        pub(super) async fn settle(&self, s: Signal) {
            settle(s).await
        }

        pub(super) fn poll_recv(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<Signal>> {
            for (s, stream, _) in &mut self.streams {
                if let Poll::Ready(Some(())) = stream.poll_recv(cx) {
                    return Poll::Ready(Some(*s));
                }
            }
            Poll::Pending
        }
    }
}

#[cfg(windows)]
mod sys {
    use std::io;
    use std::task::{Context as TaskContext, Poll};

    use tokio::signal::windows::{CtrlC, ctrl_c};

    use super::Signal;

    /// Nothing to give back: there is no default-action emulation here.
    pub(crate) struct Claim;

    impl Claim {
        pub(super) fn new(_: &[Signal]) -> Claim {
            Claim
        }
    }

    pub(super) struct Listener {
        ctrl_c: CtrlC,
    }

    impl Listener {
        pub(super) fn new(signals: &[Signal]) -> io::Result<Option<Listener>> {
            if !signals.contains(&Signal::Interrupt) {
                return Ok(None);
            }
            Ok(Some(Listener { ctrl_c: ctrl_c()? }))
        }

        pub(super) async fn settle(&self, _: Signal) {}

        pub(super) fn poll_recv(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<Signal>> {
            match self.ctrl_c.poll_recv(cx) {
                Poll::Ready(Some(())) => Poll::Ready(Some(Signal::Interrupt)),
                _ => Poll::Pending,
            }
        }
    }
}

#[cfg(not(any(unix, windows)))]
mod sys {
    use std::io;
    use std::task::{Context as TaskContext, Poll};

    use super::Signal;

    /// Nothing to give back: no signal is heard here.
    pub(crate) struct Claim;

    impl Claim {
        pub(super) fn new(_: &[Signal]) -> Claim {
            Claim
        }
    }

    pub(super) enum Listener {}

    impl Listener {
        pub(super) fn new(_: &[Signal]) -> io::Result<Option<Listener>> {
            Ok(None)
        }

        pub(super) async fn settle(&self, _: Signal) {
            match *self {}
        }

        pub(super) fn poll_recv(&mut self, _: &mut TaskContext<'_>) -> Poll<Option<Signal>> {
            match *self {}
        }
    }
}
