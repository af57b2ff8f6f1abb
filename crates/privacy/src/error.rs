//! Errors of retention, export and erasure; each names the file it is about.

use std::path::{Path, PathBuf};

use evn_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `legal-holds.csv` is malformed: a configuration error (exit 2), never "no holds".
    #[error("{path}:{line}: {message}")]
    Holds {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: unreadable manifest: {detail}; fix or restore it before deleting anything")]
    Manifest { path: PathBuf, detail: String },
    #[error("{path}: cannot write the export: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl PrivacyError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        PrivacyError::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// INTERFACES §4: 2 for a configuration error, 1 for everything that went wrong at runtime.
    pub fn exit_code(&self) -> u8 {
        match self {
            PrivacyError::Holds { .. } => 2,
            _ => 1,
        }
    }
}
