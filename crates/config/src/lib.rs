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
/// Fields are trimmed; lines starting with `comment` are skipped.
pub(crate) fn csv_rows<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
    comment: Option<u8>,
    required: &[&str],
    mut each: impl FnMut(usize, T) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(comment)
        .from_reader(text.as_bytes());
    let mut lines = CsvLines::new(text.as_bytes(), comment);
    let headers = reader
        .headers()
        .map_err(|e| {
            let line = e.position().map_or(1, |p| lines.line(p));
            ConfigError::new(path, Some(line), format!("cannot read the header row: {e}"))
        })?
        .clone();
    let header_line = headers.position().map_or(1, |p| lines.line(p));
    for required in required {
        if !headers.iter().any(|h| h == *required) {
            return Err(ConfigError::new(
                path,
                Some(header_line),
                format!("the header row lacks the column `{required}`"),
            ));
        }
    }
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map(|p| lines.line(p));
            ConfigError::new(path, line, format!("is not valid CSV: {e}"))
        })?;
        let line = record.position().map_or(0, |p| lines.line(p));
        let raw: T = record
            .deserialize(Some(&headers))
            .map_err(|e| ConfigError::new(path, Some(line), format!("bad row: {e}")))?;
        each(line, raw)?;
    }
    Ok(())
}

/// The 1-based lines on which the records of one CSV text start, for error messages. Not
/// csv's `Position::line()`: csv places a record where reading began, before the blank and
/// comment lines it skipped, and after a CRLF that is the `\n` still on the line before (every
/// line one short). So a record's line is counted from the first byte at or after its position
/// that starts neither a blank nor a comment line.
///
/// Records are asked for in file order, so the count goes on from the previous record instead
/// of from the start: counting afresh for each of 20,000 customers would read the file 20,000
/// times.
pub struct CsvLines<'a> {
    text: &'a [u8],
    /// The reader's comment byte, if it has one.
    comment: Option<u8>,
    /// Byte offset up to which line breaks are counted, and the line it is on.
    at: usize,
    line: usize,
}

impl<'a> CsvLines<'a> {
    pub fn new(text: &'a [u8], comment: Option<u8>) -> Self {
        CsvLines {
            text,
            comment,
            at: 0,
            line: 1,
        }
    }

    /// The line of the record (or error) at `position`.
    pub fn line(&mut self, position: &csv::Position) -> usize {
        let start = self.record_start(position);
        if start < self.at {
            // Out of order (not how csv_rows asks): count from the top.
            (self.at, self.line) = (0, 1);
        }
        self.line += newlines(&self.text[self.at..start]);
        self.at = start;
        self.line
    }

    fn record_start(&self, position: &csv::Position) -> usize {
        let text = self.text;
        let mut at = usize::try_from(position.byte()).map_or(text.len(), |b| b.min(text.len()));
        while at < text.len() {
            match text[at] {
                b'\n' | b'\r' => at += 1,
                b if Some(b) == self.comment => {
                    at = text[at..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(text.len(), |n| at + n + 1);
                }
                _ => break,
            }
        }
        at
    }
}

fn newlines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line of each record of `text`, as `CsvLines` counts them.
    fn record_lines(text: &str, comment: Option<u8>) -> Vec<usize> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .comment(comment)
            .flexible(true)
            .from_reader(text.as_bytes());
        let mut lines = CsvLines::new(text.as_bytes(), comment);
        reader
            .records()
            .map(|r| lines.line(r.unwrap().position().unwrap()))
            .collect()
    }

    #[test]
    fn csv_lines_count_crlf_blank_and_comment_lines() {
        let check = |text: &str, comment, expected: &[usize]| {
            assert_eq!(record_lines(text, comment), expected, "{text:?}");
        };
        check("a,b\n1,2\n3,4\n", None, &[1, 2, 3]);
        check("a,b\r\n1,2\r\n3,4\r\n", None, &[1, 2, 3]);
        check("a,b\n\n\n1,2\n", None, &[1, 4]);
        check("a,b\r\n\r\n1,2\r\n", None, &[1, 3]);
        check("# c\n# d\na,b\n# e\n1,2\n", Some(b'#'), &[3, 5]);
        check("# c\r\na,b\r\n# e\r\n\r\n1,2", Some(b'#'), &[2, 5]);
        // Without a comment byte, `#` starts an ordinary record.
        check("a\n#b\n", None, &[1, 2]);
        // A quoted field over two lines: the next record starts two lines on.
        check("\"x\ny\",1\n2,3\n", None, &[1, 3]);
    }

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
