//! Data keys for encryption at rest (AES-256): loading the key file, key ids for rotation, and
//! the AES-256-GCM envelope for stored files that are not Parquet (EVN PDFs and CSVs). Parquet
//! uses its own modular encryption with these keys (`evn-store`).
//!
//! Key file (`EVN_DATA_KEY_FILE`, e.g. a mounted Kubernetes Secret): one key per line as 64 hex
//! digits; `#` starts a comment. The first key is the current one: new files are encrypted with
//! it. Further lines are retired keys, kept only so that older files stay readable. A key's id is
//! the first 16 hex digits of its SHA-256, stored in each file, so a reader picks the right key
//! and rotation needs no rewrite of old files.

use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use sha2::{Digest, Sha256};

/// First bytes of every sealed file; a format version in one place.
pub const MAGIC: &[u8; 8] = b"EVNAES1\n";
const ID_LEN: usize = 16;
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: expected a 256-bit key as 64 hex digits (generate one with `openssl rand -hex 32`)")]
    BadKey { path: PathBuf, line: usize },
    #[error("{path}: no key in the file (generate one with `openssl rand -hex 32`)")]
    Empty { path: PathBuf },
    #[error("the file is encrypted with key {id}, which is not in the key file: add the retired key as a further line")]
    UnknownKey { id: String },
    #[error("the file is encrypted but no data key is configured: set EVN_DATA_KEY_FILE")]
    NoKey,
    #[error("decryption failed: the file was altered, truncated or belongs elsewhere")]
    Tampered,
    #[error("not an encrypted file (no {magic:?} header)", magic = String::from_utf8_lossy(MAGIC))]
    NotSealed,
}

/// One AES-256 key and its id.
#[derive(Clone)]
pub struct DataKey {
    id: String,
    key: [u8; 32],
}

impl DataKey {
    pub fn from_bytes(key: [u8; 32]) -> DataKey {
        let id = hex::encode(&Sha256::digest(key)[..ID_LEN / 2]);
        DataKey { id, key }
    }

    /// A fresh random key (the operating system's generator), for data that must not outlive
    /// the process, such as a billing run's spill files.
    pub fn generate() -> DataKey {
        DataKey::from_bytes(Aes256Gcm::generate_key(&mut OsRng).into())
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.key
    }
}

impl fmt::Debug for DataKey {
    // Never print key material, not even in a debug log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataKey({})", self.id)
    }
}

/// The current key and the retired ones still needed for reading.
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Vec<DataKey>,
}

impl Keyring {
    pub fn new(current: DataKey, retired: Vec<DataKey>) -> Keyring {
        let mut keys = vec![current];
        keys.extend(retired);
        Keyring { keys }
    }

    pub fn load(path: &Path) -> Result<Keyring, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = || KeyError::BadKey {
                path: path.to_owned(),
                line: i + 1,
            };
            let bytes = hex::decode(line).map_err(|_| bad())?;
            let key: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
            keys.push(DataKey::from_bytes(key));
        }
        if keys.is_empty() {
            return Err(KeyError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(Keyring { keys })
    }

    /// The key new files are encrypted with.
    pub fn current(&self) -> &DataKey {
        &self.keys[0]
    }

    pub fn get(&self, id: &str) -> Result<&DataKey, KeyError> {
        self.keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| KeyError::UnknownKey { id: id.to_owned() })
    }

    /// Encrypts `plaintext` with the current key. `context` (e.g. `2026-11/K1001.v2.pdf`) is
    /// authenticated, not stored: a file moved to another customer's name does not decrypt.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Vec<u8> {
        let key = self.current();
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key.key));
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ct = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad(&key.id, context),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(MAGIC.len() + ID_LEN + NONCE_LEN + ct.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(key.id.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypts what [`Keyring::seal`] wrote for the same `context`.
    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Vec<u8>, KeyError> {
        let (id, nonce, ct) = split(sealed)?;
        let key = self.get(id)?;
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key.key));
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: &aad(id, context),
                },
            )
            .map_err(|_| KeyError::Tampered)
    }
}

/// Whether `bytes` start like a sealed file.
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Opens a file that may or may not be sealed: plain files pass through (data written before
/// encryption was switched on stays readable); sealed ones need a key.
pub fn open_any(
    keys: Option<&Keyring>,
    bytes: Vec<u8>,
    context: &str,
) -> Result<Vec<u8>, KeyError> {
    if !is_sealed(&bytes) {
        return Ok(bytes);
    }
    keys.ok_or(KeyError::NoKey)?.open(&bytes, context)
}

fn aad(id: &str, context: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(MAGIC.len() + id.len() + context.len());
    a.extend_from_slice(MAGIC);
    a.extend_from_slice(id.as_bytes());
    a.extend_from_slice(context.as_bytes());
    a
}

fn split(sealed: &[u8]) -> Result<(&str, &[u8], &[u8]), KeyError> {
    let rest = sealed.strip_prefix(MAGIC).ok_or(KeyError::NotSealed)?;
    if rest.len() < ID_LEN + NONCE_LEN + 16 {
        return Err(KeyError::Tampered);
    }
    let id = std::str::from_utf8(&rest[..ID_LEN]).map_err(|_| KeyError::Tampered)?;
    Ok((
        id,
        &rest[ID_LEN..ID_LEN + NONCE_LEN],
        &rest[ID_LEN + NONCE_LEN..],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(fill: u8) -> Keyring {
        Keyring::new(DataKey::from_bytes([fill; 32]), Vec::new())
    }

    #[test]
    fn seal_open_round_trip_and_ciphertext_hides_the_plaintext() {
        let k = ring(7);
        let sealed = k.seal(b"+4915112345678", "2026-11/K1001.pdf");
        assert!(is_sealed(&sealed));
        assert!(!sealed.windows(8).any(|w| w == b"15112345"));
        assert_eq!(
            k.open(&sealed, "2026-11/K1001.pdf").unwrap(),
            b"+4915112345678"
        );
    }

    #[test]
    fn another_context_wrong_key_or_a_flipped_bit_fail() {
        let k = ring(7);
        let sealed = k.seal(b"EVN", "2026-11/K1001.pdf");
        assert!(matches!(
            k.open(&sealed, "2026-11/K1002.pdf"),
            Err(KeyError::Tampered)
        ));
        assert!(matches!(
            ring(8).open(&sealed, "2026-11/K1001.pdf"),
            Err(KeyError::UnknownKey { .. })
        ));
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(
            k.open(&bad, "2026-11/K1001.pdf"),
            Err(KeyError::Tampered)
        ));
        assert!(matches!(
            k.open(&sealed[..30], "2026-11/K1001.pdf"),
            Err(KeyError::Tampered)
        ));
        assert!(matches!(open_any(None, sealed, "x"), Err(KeyError::NoKey)));
        assert_eq!(open_any(None, b"%PDF".to_vec(), "x").unwrap(), b"%PDF");
    }

    #[test]
    fn rotation_reads_old_files_with_the_retired_key() {
        let old = ring(1);
        let sealed = old.seal(b"old", "c");
        let rotated = Keyring::new(
            DataKey::from_bytes([2; 32]),
            vec![DataKey::from_bytes([1; 32])],
        );
        assert_eq!(rotated.open(&sealed, "c").unwrap(), b"old");
        let new = rotated.seal(b"new", "c");
        assert_eq!(&new[8..24], rotated.current().id().as_bytes());
        assert_ne!(rotated.current().id(), old.current().id());
    }

    #[test]
    fn key_file_lines_comments_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("data.key");
        std::fs::write(
            &p,
            format!(
                "# current\n{}\n\n{}  # retired\n",
                "ab".repeat(32),
                "cd".repeat(32)
            ),
        )
        .unwrap();
        let k = Keyring::load(&p).unwrap();
        assert_eq!(k.current().bytes(), &[0xab; 32]);
        assert_eq!(k.keys.len(), 2);
        assert!(
            !format!("{k:?}").contains("abab"),
            "no key material in Debug"
        );
        std::fs::write(&p, "abc\n").unwrap();
        assert_eq!(
            Keyring::load(&p).unwrap_err().to_string(),
            format!("{}:1: expected a 256-bit key as 64 hex digits (generate one with `openssl rand -hex 32`)", p.display())
        );
        std::fs::write(&p, "# nothing\n").unwrap();
        assert!(matches!(Keyring::load(&p), Err(KeyError::Empty { .. })));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_round_trip(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            let k = ring(3);
            proptest::prop_assert_eq!(k.open(&k.seal(&data, "ctx"), "ctx").unwrap(), data);
        }
    }
}
