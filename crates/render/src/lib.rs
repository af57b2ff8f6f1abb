//! The EVN (Einzelverbindungsnachweis): a pure layout model ([`EvnDocument`]), German formats
//! ([`format`]), and an A4 PDF rendering ([`render_pdf`]) with an embedded, subset font.

mod csv_export;
mod fonts;
pub mod format;
mod model;
mod pdf;
mod protect;
#[doc(hidden)]
pub mod sample;
mod slim;

pub use csv_export::{render_csv, BOM, CSV_HEADER};
pub use model::{DayRange, EvnCall, EvnDocument, Header, LineGroup, Row, ZoneSum};
pub use pdf::{render_pdf, RenderError, RenderedPdf};
pub use protect::{check_password, protect_pdf, ProtectionKeys};

/// Characters of `text` that neither EVN face can show: they would print blank in the PDF
/// (the CSV keeps them). `evn validate` warns about them in customer names and addresses.
pub fn unprintable(text: &str) -> Result<std::collections::BTreeSet<char>, RenderError> {
    let fonts = fonts::fonts()?;
    Ok(text
        .chars()
        .filter(|&c| !c.is_control() && !fonts.regular.has(c) && !fonts.bold.has(c))
        .collect())
}
