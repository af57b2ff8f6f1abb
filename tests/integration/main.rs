//! The one integration-test binary: the real `evn` binary, the embedded broker over TCP, real
//! Parquet files read back. `scripts/test.sh` builds the binary first.

mod support;

mod cli;
mod ingest;
