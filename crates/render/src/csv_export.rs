//! The EVN as CSV for spreadsheets (issue #11): exactly the connection rows of the PDF, in
//! the same order, with the same text (shortened numbers stay shortened, counselling rows are
//! absent because the model never holds them as rows), in the form a German spreadsheet opens
//! without an import wizard: UTF-8 with BOM, `;` separator, decimal comma, `24.11.2026`.

use rust_decimal::Decimal;

use crate::format;
use crate::model::EvnDocument;

/// The header row. `Betrag (EUR)` carries the unit so that the cells can be plain numbers.
pub const CSV_HEADER: [&str; 8] = [
    "Nr.",
    "Anschluss",
    "Datum",
    "Uhrzeit",
    "Dauer",
    "Zielrufnummer",
    "Tarifzone",
    "Betrag (EUR)",
];

/// The byte order mark: how Excel recognises UTF-8 (without it umlauts arrive as `Ã¤`).
pub const BOM: &str = "\u{feff}";

/// Renders the connection rows. Same document in, same bytes out.
pub fn render_csv(doc: &EvnDocument) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + doc.itemised() * 80);
    out.extend_from_slice(BOM.as_bytes());
    let mut w = csv::WriterBuilder::new()
        .delimiter(b';')
        // CRLF, as RFC 4180 and Excel expect.
        .terminator(csv::Terminator::CRLF)
        .from_writer(&mut out);
    // Writing to a Vec cannot fail; a failure here would be a bug in the csv crate.
    w.write_record(CSV_HEADER).expect("csv into memory");
    for group in &doc.groups {
        let line = format::number(&group.calling_number);
        for row in &group.rows {
            let local = format::Local::of(row.start_time);
            w.write_record([
                row.nr.to_string(),
                cell(&line),
                local.date(),
                local.time(),
                format::duration(row.duration_s),
                cell(&format::number(&row.called_number)),
                cell(&row.zone_label),
                amount(row.charge),
            ])
            .expect("csv into memory");
        }
    }
    w.flush().expect("csv into memory");
    drop(w);
    out
}

/// `1234,56`: cents as printed in the PDF (rounded half away from zero), decimal comma, no
/// thousands separator, no `€`, so that every spreadsheet reads a number.
pub fn amount(d: Decimal) -> String {
    let mut rounded = format::cents(d);
    if rounded.is_zero() {
        // No `-0,00` for a tiny negative amount.
        rounded = Decimal::ZERO;
    }
    rounded.rescale(2);
    rounded.to_string().replace('.', ",")
}

/// A text cell that a spreadsheet would run as a formula (`=`, `+`, `-`, `@` first: CSV
/// injection) gets a leading apostrophe, which spreadsheets show as plain text. Formatted
/// numbers never start like that; a zone label from the configuration could.
fn cell(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn amounts_are_plain_german_decimals() {
        for (input, expected) in [
            ("0", "0,00"),
            ("0.3030", "0,30"),
            ("0.0050", "0,01"),
            ("1234.5649", "1234,56"),
            ("-0.005", "-0,01"),
            ("-0.004", "0,00"),
        ] {
            assert_eq!(
                amount(Decimal::from_str(input).unwrap()),
                expected,
                "{input}"
            );
        }
    }

    #[test]
    fn formula_like_cells_are_text() {
        assert_eq!(cell("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(cell("-Sonderzone"), "'-Sonderzone");
        assert_eq!(cell("0151 12345xxx"), "0151 12345xxx");
    }
}
