//! The strict patterns every path value passes before it may name a file: customer id, month,
//! file name and version. Pure; anything that does not match is refused, never repaired.

use std::fmt;

/// The same rule as `customers.csv` in `evn-config` (ids become file names there too): 1 to 64
/// ASCII letters, digits, `_` or `-`. No `.`, `/`, `%`, NUL or anything else a path could use.
pub const MAX_CUSTOMER_ID_LEN: usize = 64;

/// A customer id that is safe as a file-name stem.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CustomerId(String);

impl CustomerId {
    pub fn parse(s: &str) -> Option<CustomerId> {
        let ok = !s.is_empty()
            && s.len() <= MAX_CUSTOMER_ID_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        ok.then(|| CustomerId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A billing month `YYYY-MM` (month 01 to 12), exactly as the billing run names its folders.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Month(String);

impl Month {
    pub fn parse(s: &str) -> Option<Month> {
        let b = s.as_bytes();
        let ok = b.len() == 7
            && b[..4].iter().all(u8::is_ascii_digit)
            && b[4] == b'-'
            && matches!((b[5], b[6]), (b'0', b'1'..=b'9') | (b'1', b'0'..=b'2'));
        ok.then(|| Month(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What is served per customer and month: the PDF, and the CSV of the same rows (issue 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Pdf,
    Csv,
}

impl Format {
    pub const ALL: [Format; 2] = [Format::Pdf, Format::Csv];

    pub fn extension(self) -> &'static str {
        match self {
            Format::Pdf => "pdf",
            Format::Csv => "csv",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Pdf => "application/pdf",
            // The billing run writes UTF-8 with a BOM; the charset keeps a browser that shows
            // it inline from guessing Latin-1.
            Format::Csv => "text/csv; charset=utf-8",
        }
    }

    /// The file of `version` in the month folder, as the billing run writes it
    /// (`<customer>.v<N>.pdf`), built from validated values only.
    pub fn file_name(self, customer: &CustomerId, version: u32) -> String {
        format!("{customer}.v{version}.{}", self.extension())
    }

    /// The name the customer's browser saves it under.
    pub fn download_name(
        self,
        customer: &CustomerId,
        month: &Month,
        version: Option<u32>,
    ) -> String {
        match version {
            Some(v) => format!("EVN_{customer}_{month}_v{v}.{}", self.extension()),
            None => format!("EVN_{customer}_{month}.{}", self.extension()),
        }
    }
}

/// The last path segment of a download: `YYYY-MM.pdf` or `YYYY-MM.csv`.
pub fn parse_file_name(s: &str) -> Option<(Month, Format)> {
    let (stem, ext) = s.split_once('.')?;
    let format = match ext {
        "pdf" => Format::Pdf,
        "csv" => Format::Csv,
        _ => return None,
    };
    Some((Month::parse(stem)?, format))
}

/// `?version=N`: a positive decimal integer without sign or leading zeros.
pub fn parse_version(s: &str) -> Option<u32> {
    let ok = !s.is_empty()
        && s.len() <= 9
        && s.bytes().all(|b| b.is_ascii_digit())
        && !s.starts_with('0');
    if ok {
        s.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_ids() {
        for ok in ["K1001", "a", "A-b_9", &"x".repeat(64)] {
            assert!(CustomerId::parse(ok).is_some(), "{ok:?}");
        }
        for bad in [
            "",
            &"x".repeat(65),
            ".",
            "..",
            "../K1001",
            "K1001/..",
            "K1001%2F",
            "K1001\0",
            "K 1001",
            "K1001.pdf",
            "K1001\\x",
            "Kö",
            "K1001\n",
        ] {
            assert!(CustomerId::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn months() {
        for ok in ["2026-01", "2026-09", "2026-10", "2026-12", "0000-01"] {
            assert!(Month::parse(ok).is_some(), "{ok:?}");
        }
        for bad in [
            "2026-00",
            "2026-13",
            "2026-1",
            "2026-011",
            "26-11",
            "2026/11",
            "2026_11",
            "２０２６-11",
            "2026-1a",
            "+026-11",
            "2026-11\0",
            "",
            "..",
        ] {
            assert!(Month::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn file_names() {
        let check = |s: &str, expected: Option<&str>| {
            assert_eq!(
                parse_file_name(s).map(|(m, f)| format!("{m}.{}", f.extension())),
                expected.map(str::to_owned),
                "{s:?}"
            );
        };
        check("2026-11.pdf", Some("2026-11.pdf"));
        check("2026-11.PDF", None);
        check("2026-11.pdf.pdf", None);
        check("2026-11", None);
        check("2026-11.csv", Some("2026-11.csv"));
        check("2026-11.CSV", None);
        check("2026-11.csv.pdf", None);
        check("2026-11.xlsx", None);
        check("../2026-11.pdf", None);
        check("..%2F2026-11.pdf", None);
        check("2026-11.pdf\0", None);
        check("2026-13.pdf", None);
        check("manifest.json", None);
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("1"), Some(1));
        assert_eq!(parse_version("42"), Some(42));
        assert_eq!(parse_version("999999999"), Some(999_999_999));
        for bad in [
            "",
            "0",
            "01",
            "-1",
            "+1",
            "1.0",
            "1e3",
            " 1",
            "1000000000",
            "x",
        ] {
            assert_eq!(parse_version(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn file_name_is_built_from_validated_values() {
        let c = CustomerId::parse("K1001").unwrap();
        let m = Month::parse("2026-11").unwrap();
        assert_eq!(Format::Pdf.file_name(&c, 3), "K1001.v3.pdf");
        assert_eq!(
            Format::Pdf.download_name(&c, &m, None),
            "EVN_K1001_2026-11.pdf"
        );
        assert_eq!(
            Format::Pdf.download_name(&c, &m, Some(2)),
            "EVN_K1001_2026-11_v2.pdf"
        );
        assert_eq!(Format::Csv.file_name(&c, 3), "K1001.v3.csv");
        assert_eq!(
            Format::Csv.download_name(&c, &m, Some(2)),
            "EVN_K1001_2026-11_v2.csv"
        );
    }
}
