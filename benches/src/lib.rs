//! Benchmarks are bench binaries in src/bin.
