//! Nothing to use: this package only holds ctxkit's tests against real peers and servers
//! (`tests/`) and the cross-process examples (`examples/`).
