//! Per-customer passwords for protected EVN PDFs (issue #11, optional): a CSV file the operator
//! mounts as a secret (`EVN_PDF_PASSWORDS_FILE`), exported from wherever customers choose their
//! EVN password (the customer portal, the CRM). Header `customer_id,password`; a customer listed
//! gets every new EVN version encrypted with that password (AES-256), others get plain PDFs.
//! Passwords are never logged, printed or written anywhere else.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PasswordsError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {detail}")]
    Invalid {
        path: PathBuf,
        line: u64,
        detail: String,
    },
}

/// Customer id → password, and the line it came from (for messages).
#[derive(Clone, Default)]
pub struct PdfPasswords {
    by_customer: HashMap<String, String>,
    lines: HashMap<String, u64>,
    path: PathBuf,
}

impl std::fmt::Debug for PdfPasswords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PdfPasswords({} customers)", self.by_customer.len())
    }
}

impl PdfPasswords {
    pub fn get(&self, customer_id: &str) -> Option<&str> {
        self.by_customer.get(customer_id).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.by_customer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_customer.is_empty()
    }

    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        PdfPasswords {
            by_customer: pairs.into_iter().collect(),
            ..PdfPasswords::default()
        }
    }

    /// Refuses a line naming a customer `customers.csv` does not know (`k1003` for `K1003`):
    /// that customer's EVNs, promised protected, would come out plain without a word.
    pub fn check_customers(&self, known: &[&str]) -> Result<(), PasswordsError> {
        let set: std::collections::HashSet<&str> = known.iter().copied().collect();
        let mut unknown: Vec<(&String, u64)> = self
            .by_customer
            .keys()
            .filter(|id| !set.contains(id.as_str()))
            .map(|id| (id, self.lines.get(id).copied().unwrap_or(0)))
            .collect();
        unknown.sort_by_key(|&(_, line)| line);
        let Some(&(id, line)) = unknown.first() else {
            return Ok(());
        };
        let near = known
            .iter()
            .find(|k| k.eq_ignore_ascii_case(id))
            .map(|k| format!(" ({k} is: mind the spelling)"))
            .unwrap_or_default();
        Err(PasswordsError::Invalid {
            path: self.path.clone(),
            line,
            detail: format!(
                "customer {id} is not in customers.csv{near}: the EVNs meant to be protected with this password would come out unprotected"
            ),
        })
    }

    pub fn load(path: &Path) -> Result<Self, PasswordsError> {
        let bytes = std::fs::read(path).map_err(|source| PasswordsError::Read {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |line: u64, detail: String| PasswordsError::Invalid {
            path: path.to_owned(),
            line,
            detail,
        };
        let mut reader = csv::ReaderBuilder::new().from_reader(bytes.as_slice());
        let header = reader
            .headers()
            .map_err(|e| invalid(1, e.to_string()))?
            .clone();
        if header.iter().collect::<Vec<_>>() != ["customer_id", "password"] {
            return Err(invalid(
                1,
                "expected the header customer_id,password".into(),
            ));
        }
        let mut lines = evn_config::CsvLines::new(&bytes, None);
        let mut line_of = |p: Option<&csv::Position>| p.map_or(0, |p| lines.line(p) as u64);
        let (mut map, mut lines) = (HashMap::new(), HashMap::new());
        for record in reader.records() {
            let record = record.map_err(|e| {
                // The csv error text may quote the record, and with it a password.
                invalid(
                    line_of(e.position()),
                    "not a CSV record of two fields".into(),
                )
            })?;
            let line = line_of(record.position());
            let (id, password) = (&record[0], &record[1]);
            if id.is_empty() || password.is_empty() {
                return Err(invalid(
                    line,
                    "customer id and password must not be empty".into(),
                ));
            }
            // Kept short of what people type, long enough to resist guessing offline: the
            // file can be copied, the guesses are then free.
            if password.chars().count() < 8 || password.len() > 127 {
                return Err(invalid(
                    line,
                    format!("the password of {id} must have 8 to 127 characters"),
                ));
            }
            // What the PDF's security handler refuses (control characters such as a line
            // break an unclosed quote swallowed, SASLprep's prohibited characters) is refused
            // here, naming the line, not when the billing run has rendered half the month.
            if let Err(e) = evn_render::check_password(password) {
                return Err(invalid(
                    line,
                    format!("the password of {id} cannot protect a PDF: {e}"),
                ));
            }
            if map.insert(id.to_owned(), password.to_owned()).is_some() {
                return Err(invalid(line, format!("customer {id} is listed twice")));
            }
            lines.insert(id.to_owned(), line);
        }
        Ok(PdfPasswords {
            by_customer: map,
            lines,
            path: path.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_passwords_and_names_bad_lines_without_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.csv");
        std::fs::write(&path, "customer_id,password\nK1001,Geheim-123 ä\n").unwrap();
        let p = PdfPasswords::load(&path).unwrap();
        assert_eq!(p.get("K1001"), Some("Geheim-123 ä"));
        assert_eq!(p.get("K1002"), None);
        assert_eq!(format!("{p:?}"), "PdfPasswords(1 customers)");
        for (text, line) in [
            ("customer_id,password\nK1001,kurz\n", 2),
            (
                "customer_id,password\nK1001,langgenug1\nK1001,langgenug2\n",
                3,
            ),
            ("id,pw\n", 1),
            ("customer_id,password\nK1001,langgenug1,extra\n", 2),
            // Windows line ends, and blank lines csv skips: still the line in the file.
            (
                "customer_id,password\r\nK1001,langgenug1\r\nK1002,kurz\r\n",
                3,
            ),
            ("customer_id,password\r\n\r\nK1001,langgenug1,extra\r\n", 3),
            // An unclosed quote swallows the line break into the password.
            (
                "customer_id,password\nK1000,langgenug0\nK1001,\"langgenug1\nK1002,x\"\n",
                3,
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = PasswordsError::to_string(&PdfPasswords::load(&path).unwrap_err());
            assert!(e.contains(&format!("p.csv:{line}:")), "{e}");
            assert!(!e.contains("langgenug"), "a password in the error: {e}");
        }
    }

    /// A line whose customer id matches nobody would leave that customer's EVNs unprotected.
    #[test]
    fn a_customer_the_directory_does_not_know_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.csv");
        std::fs::write(
            &path,
            "customer_id,password\nK1002,langgenug2\nk1003,langgenug3\nK9,langgenug9\n",
        )
        .unwrap();
        let p = PdfPasswords::load(&path).unwrap();
        let e = p
            .check_customers(&["K1001", "K1002", "K1003", "K9"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "p.csv:3: customer k1003 is not in customers.csv (K1003 is: mind the spelling)"
            ),
            "{e}"
        );
        assert!(!e.contains("langgenug"), "{e}");
        assert!(p.check_customers(&["k1003", "K1002", "K9"]).is_ok());
    }
}
