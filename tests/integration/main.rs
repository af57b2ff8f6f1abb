//! The one integration-test binary: the real `evn` binary, the embedded broker over TCP, real
//! Parquet files read back. `scripts/test.sh` builds the binary first.

mod support;

mod bill;
mod cli;
mod deploy;
mod edges;
mod ingest;
mod object_store;
mod ops;
mod page;
mod portal;
mod privacy;
mod protect;
mod sources;
