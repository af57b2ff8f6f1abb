//! Operator configuration (INTERFACES.md §2): files in one directory, parsed and validated into
//! runtime types. Every error names the file, the line (and column where known) and the fix.
//!
//! Parse then validate: each file has a serde "raw" shape here, and a validated type that the
//! rest of the product trusts (no float money, no unknown plan, no missing rate).

mod counselling;
mod customers;
mod error;
mod provider;
mod tariffs;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use counselling::{normalise_number, CounsellingList};
pub use customers::{CustomerDirectory, CustomerRow, Lookup};
pub use error::ConfigError;
pub use provider::Provider;
pub use tariffs::{Increment, Plan, Rate, Tariffs, ZoneId};

pub const PROVIDER_FILE: &str = "provider.toml";
pub const TARIFFS_FILE: &str = "tariffs.toml";
pub const CUSTOMERS_FILE: &str = "customers.csv";
pub const COUNSELLING_FILE: &str = "counselling-numbers.txt";

/// Everything an operator configures, validated. Cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub provider: Provider,
    pub tariffs: Tariffs,
    pub customers: CustomerDirectory,
    pub counselling: CounsellingList,
    /// `sha256:` of the configuration files, in a fixed order: the "config version" a bill records.
    pub version: String,
}

impl Config {
    /// Loads and validates the whole directory; the first error stops it.
    pub fn load(dir: &Path) -> Result<Config, ConfigError> {
        if !dir.is_dir() {
            return Err(ConfigError::new(dir, None, "is not a directory: pass --config with the folder holding provider.toml, tariffs.toml, customers.csv and counselling-numbers.txt"));
        }
        let mut hasher = Sha256::new();
        let mut read = |name: &str| -> Result<(PathBuf, String), ConfigError> {
            let path = dir.join(name);
            let text = std::fs::read(&path)
                .map_err(|e| ConfigError::new(&path, None, format!("cannot be read: {e}")))?;
            hasher.update(name.as_bytes());
            hasher.update((text.len() as u64).to_le_bytes());
            hasher.update(&text);
            let text = String::from_utf8(text)
                .map_err(|e| ConfigError::new(&path, None, format!("is not valid UTF-8: {e}")))?;
            Ok((path, text))
        };
        let (p, t) = read(PROVIDER_FILE)?;
        let provider = Provider::parse(&p, &t)?;
        let (p, t) = read(TARIFFS_FILE)?;
        let tariffs = Tariffs::parse(&p, &t)?;
        let (p, t) = read(CUSTOMERS_FILE)?;
        let customers = CustomerDirectory::parse(&p, &t, &tariffs)?;
        let (p, t) = read(COUNSELLING_FILE)?;
        let counselling = CounsellingList::parse(&p, &t)?;
        let version = format!("sha256:{}", hex::encode(&hasher.finalize()[..12]));
        Ok(Config {
            dir: dir.to_owned(),
            provider,
            tariffs,
            customers,
            counselling,
            version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_the_shipped_example() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/config");
        let cfg = Config::load(&dir).unwrap();
        assert_eq!(cfg.provider.name, "Mango Office GmbH");
        assert!(cfg.customers.len() >= 5);
        assert!(cfg.tariffs.plans.contains_key("office_flat"));
        assert!(cfg.counselling.len() >= 5);
        assert!(cfg.version.starts_with("sha256:"));
    }
}
