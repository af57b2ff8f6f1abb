//! Errors of the storage layer; each names the path it is about.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: parquet: {source}")]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
    #[error("{path}: arrow: {source}")]
    Arrow {
        path: PathBuf,
        source: arrow::error::ArrowError,
    },
    #[error(
        "{path}: the file is encrypted: set EVN_DATA_KEY_FILE to the key file it was written with"
    )]
    Encrypted { path: PathBuf },
    #[error("{path}: not an evn CDR file: {detail}")]
    Schema { path: PathBuf, detail: String },
    #[error("{path}: damaged commit record: {detail}")]
    CorruptCommit { path: PathBuf, detail: String },
    #[error("{path}: object store: {source}")]
    Object {
        path: String,
        source: object_store::Error,
    },
    #[error("{url}: {detail}")]
    Location { url: String, detail: String },
    /// Another writer committed this offset range first: this writer's view is stale.
    #[error(
        "partition {topic}/{partition}: offsets from {start} were committed by another writer"
    )]
    Fenced {
        topic: String,
        partition: i32,
        start: i64,
    },
}

impl StoreError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// True when the disk is full: operators need a distinct message for that.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Io { source, .. } => source.kind() == std::io::ErrorKind::StorageFull,
            StoreError::Parquet {
                source: parquet::errors::ParquetError::External(e),
                ..
            } => e
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::StorageFull),
            _ => false,
        }
    }
}
