//! Operator configuration (INTERFACES.md §2): files in one directory, parsed and validated into
//! runtime types. Every error names the file, the line (and column where known) and the fix.
//!
//! Parse then validate: each file has a serde "raw" shape here, and a validated type that the
//! rest of the product trusts (no float money, no unknown plan, no missing rate).

mod counselling;
mod customers;
mod error;
mod numbers;
mod provider;
mod sources;
mod tariffs;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use counselling::{normalise_number, CounsellingList};
pub use customers::{CustomerDirectory, CustomerRow, Lookup, Terms};
pub use error::ConfigError;
pub use numbers::{NumberDirectory, NumberEntry};
pub use provider::Provider;
pub use sources::{
    CsvMapping, CustomerFrom, NumberPlan, Source, SourceFormat, Sources, TimeFormat,
    ASTERISK_CSV_COLUMNS, ASTERISK_CSV_MIN_FIELDS, FREESWITCH_CSV_COLUMNS,
};
pub use tariffs::{Increment, Plan, PlanIx, Rate, Tariffs, ZoneId};

pub const PROVIDER_FILE: &str = "provider.toml";
pub const TARIFFS_FILE: &str = "tariffs.toml";
pub const CUSTOMERS_FILE: &str = "customers.csv";
pub const COUNSELLING_FILE: &str = "counselling-numbers.txt";
/// Optional: what each topic carries (canonical JSON when absent).
pub const SOURCES_FILE: &str = "sources.toml";
/// Optional: customers' lines, for sources whose records name no customer.
pub const NUMBERS_FILE: &str = "numbers.csv";

/// Everything an operator configures, validated. Cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub provider: Provider,
    pub tariffs: Tariffs,
    pub customers: CustomerDirectory,
    pub counselling: CounsellingList,
    /// Per topic, the format of its records (`sources.toml`; empty: all canonical JSON).
    pub sources: Sources,
    /// Customers' lines and DID ranges (`numbers.csv`; empty when absent).
    pub numbers: NumberDirectory,
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
        // The optional files join the version only when present, so adding none keeps the
        // version of an existing configuration (and the bills that record it) unchanged.
        let sources = if dir.join(SOURCES_FILE).exists() {
            let (p, t) = read(SOURCES_FILE)?;
            Sources::parse(&p, &t)?
        } else {
            Sources::default()
        };
        let numbers = if dir.join(NUMBERS_FILE).exists() {
            let (p, t) = read(NUMBERS_FILE)?;
            NumberDirectory::parse(&p, &t, &customers)?
        } else {
            NumberDirectory::default()
        };
        if numbers.is_empty() {
            if let Some(s) = sources.iter().find(|s| {
                s.format != SourceFormat::CanonicalJson
                    && s.customer == CustomerFrom::NumberDirectory
            }) {
                return Err(ConfigError::new(
                    &dir.join(SOURCES_FILE),
                    Some(s.line),
                    format!("source {:?} finds customers in the number directory, but {NUMBERS_FILE} is missing or empty: add the customers' lines there, or set customer = \"accountcode\"", s.topic),
                ));
            }
        }
        let version = format!("sha256:{}", hex::encode(&hasher.finalize()[..12]));
        Ok(Config {
            dir: dir.to_owned(),
            provider,
            tariffs,
            customers,
            counselling,
            sources,
            numbers,
            version,
        })
    }
}

/// Hands each row of a CSV file with a header row to `each`, deserialised by header name, with
/// its line for error messages, in file order: the first error in the file is the one
/// reported. A missing header column or a malformed record is an error naming file and line.
pub(crate) fn csv_rows<T: serde::de::DeserializeOwned>(
    path: &Path,
    mut reader: csv::Reader<&[u8]>,
    required: &[&str],
    mut each: impl FnMut(usize, T) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    let headers = reader
        .headers()
        .map_err(|e| ConfigError::new(path, Some(1), format!("cannot read the header row: {e}")))?
        .clone();
    for required in required {
        if !headers.iter().any(|h| h == *required) {
            return Err(ConfigError::new(
                path,
                Some(1),
                format!("the header row lacks the column `{required}`"),
            ));
        }
    }
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map(|p| p.line() as usize);
            ConfigError::new(path, line, format!("is not valid CSV: {e}"))
        })?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let raw: T = record
            .deserialize(Some(&headers))
            .map_err(|e| ConfigError::new(path, Some(line), format!("bad row: {e}")))?;
        each(line, raw)?;
    }
    Ok(())
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
        assert_eq!(cfg.sources.len(), 6);
        assert_eq!(
            cfg.sources.format_of("switch-asterisk"),
            SourceFormat::AsteriskCsv
        );
        assert_eq!(cfg.sources.format_of("cdrs"), SourceFormat::CanonicalJson);
        assert_eq!(cfg.numbers.len(), 6);
    }
}
