//! The EVN (Einzelverbindungsnachweis): a pure layout model ([`EvnDocument`]), German formats
//! ([`format`]), and an A4 PDF rendering ([`render_pdf`]) with an embedded, subset font.

pub mod format;
mod model;
mod pdf;
mod slim;

pub use model::{EvnCall, EvnDocument, Header, LineGroup, Row, ZoneSum};
pub use pdf::{render_pdf, RenderError, RenderedPdf};
