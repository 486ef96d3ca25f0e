//! Threads that carry the current context: [`spawn`] and [`Builder`], `std::thread`'s with the
//! context current on the new thread.
//!
//! For threads you do not start yourself (rayon's pool, a C library's callback thread), make the
//! context current for the code that runs there with [`Context::enter`].

use std::io;
use std::thread::JoinHandle;

use crate::Context;

/// `std::thread::spawn` that makes the current context (if any) current on the new thread, for
/// as long as `f` runs.
///
/// ```
/// use ctxkit::{Context, ContextKey};
///
/// struct Tenant;
/// impl ContextKey for Tenant {
///     type Value = &'static str;
/// }
///
/// let ctx = Context::background().with_value::<Tenant>("acme");
/// let worker = ctx.sync_scope(|| {
///     ctxkit::thread::spawn(|| Context::current().value::<Tenant>().copied())
/// });
/// assert_eq!(worker.join().unwrap(), Some("acme"));
/// ```
///
/// # Panics
///
/// Like `std::thread::spawn`, when the operating system cannot create a thread.
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    std::thread::spawn(carry(f))
}

/// `std::thread::Builder` (name, stack size) whose [`Builder::spawn`] carries the current
/// context, like [`spawn`].
///
/// ```
/// use ctxkit::Context;
///
/// let (ctx, cancel) = Context::background().with_cancel();
/// cancel.cancel();
/// let worker = ctx.sync_scope(|| {
///     ctxkit::thread::Builder::new()
///         .name("crunch".into())
///         .spawn(|| Context::current().check())
/// });
/// assert_eq!(worker.unwrap().join().unwrap(), Err(ctxkit::Error::Canceled));
/// ```
#[derive(Debug)]
pub struct Builder {
    inner: std::thread::Builder,
}

impl Builder {
    /// A builder with `std::thread::Builder`'s defaults.
    pub fn new() -> Builder {
        Builder {
            inner: std::thread::Builder::new(),
        }
    }

    /// The new thread's name (`std::thread::Builder::name`).
    pub fn name(self, name: String) -> Builder {
        Builder {
            inner: self.inner.name(name),
        }
    }

    /// The new thread's stack size in bytes (`std::thread::Builder::stack_size`).
    pub fn stack_size(self, size: usize) -> Builder {
        Builder {
            inner: self.inner.stack_size(size),
        }
    }

    /// Starts `f` on the new thread with the current context current there.
    ///
    /// # Errors
    ///
    /// When the operating system cannot create the thread.
    pub fn spawn<F, T>(self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.inner.spawn(carry(f))
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

/// `f`, wrapped to run with the context current here and now.
fn carry<F, T>(f: F) -> impl FnOnce() -> T + Send + 'static
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let ctx = Context::try_current();
    #[cfg(feature = "tracing")]
    let span = ::tracing::Span::current();
    move || {
        #[cfg(feature = "tracing")]
        let _span = span.enter();
        match ctx {
            Some(ctx) => ctx.sync_scope(f),
            None => f(),
        }
    }
}
