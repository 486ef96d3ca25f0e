//! Nothing to use: this package only holds the compile-fail cases of ctxkit (`ui.rs`, `cases/`).
