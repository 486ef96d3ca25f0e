//! Nothing to use: this package only holds ctxkit's benchmarks (`benches/benches/*.rs`), run by
//! `benches/compare.sh` side by side with tokio-util and Go.
