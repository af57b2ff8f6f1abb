//! Draws an [`EvnDocument`] as an A4 PDF with printpdf: DIN 5008-style first page, a table whose
//! header repeats on every page, "Seite x von y", and DejaVu Sans embedded as a subset so that
//! umlauts, `ß` and `€` are real text. Byte-for-byte deterministic for the same document.

use std::io::Write;
use std::sync::OnceLock;

use chrono::Datelike;
use printpdf::{
    Color, FontId, Greyscale, Line, LinePoint, Mm, Op, PaintMode, ParsedFont, PdfDocument, PdfFont,
    PdfFontHandle, PdfPage, PdfSaveOptions, Point, Pt, Rect, TextItem, TextMatrix,
};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::format;
use crate::model::{EvnDocument, Row, ZoneSum};

const REGULAR_TTF: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
const BOLD_TTF: &[u8] = include_bytes!("../fonts/DejaVuSans-Bold.ttf");
/// Fixed font ids: printpdf derives the `XXXXXX+` subset tag from the first six characters,
/// and a random id would make every rendering differ.
const REGULAR_ID: &str = "EVNREG";
const BOLD_ID: &str = "EVNBLD";

const MM: f32 = 72.0 / 25.4;
const PAGE_W: f32 = 210.0 * MM;
const PAGE_H: f32 = 297.0 * MM;
/// 20 mm left (hole punch), 15 mm right: common for German business letters.
const LEFT: f32 = 20.0 * MM;
const RIGHT: f32 = PAGE_W - 15.0 * MM;
/// The table stops here; the footer lives below.
const BOTTOM: f32 = 22.0 * MM;

const BODY: f32 = 8.5;
const ROW_H: f32 = 11.5;
const SMALL: f32 = 7.0;

/// Column anchors of the connection table (x in pt). `R` columns are right-aligned.
const COL_NR_R: f32 = LEFT + 26.0;
const COL_DATE: f32 = LEFT + 36.0;
const COL_TIME: f32 = LEFT + 92.0;
const COL_DUR_R: f32 = LEFT + 170.0;
const COL_NUMBER: f32 = LEFT + 186.0;
const COL_ZONE: f32 = LEFT + 300.0;
const COL_AMOUNT_R: f32 = RIGHT - 4.0;

const WIDTH_TABLE_LEN: usize = 0x2200;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the embedded font {0} cannot be parsed: the build is broken, rebuild evn")]
    Font(&'static str),
    #[error("cannot serialise the PDF: {0}")]
    Save(String),
}

/// A rendered EVN.
#[derive(Debug, Clone)]
pub struct RenderedPdf {
    pub bytes: Vec<u8>,
    pub pages: usize,
}

struct Face {
    font: ParsedFont,
    /// Advance per codepoint below [`WIDTH_TABLE_LEN`], in 1/1000 em: text is measured for
    /// right alignment and wrapping on every row, so the lookups are done once.
    widths: Vec<f32>,
}

impl Face {
    fn load(bytes: &[u8], name: &'static str) -> Result<Face, RenderError> {
        let mut warnings = Vec::new();
        let bytes = crate::slim::slim(bytes);
        let font =
            ParsedFont::from_bytes(&bytes, 0, &mut warnings).ok_or(RenderError::Font(name))?;
        let upem = f32::from(font.pdf_font_metrics.units_per_em.max(1));
        let widths = (0..WIDTH_TABLE_LEN as u32)
            .map(|c| advance(&font, c, upem))
            .collect();
        Ok(Face { font, widths })
    }

    fn width(&self, text: &str, size: f32) -> f32 {
        let units: f32 = text
            .chars()
            .map(|c| {
                let c = c as usize;
                if c < WIDTH_TABLE_LEN {
                    self.widths[c]
                } else {
                    let upem = f32::from(self.font.pdf_font_metrics.units_per_em.max(1));
                    advance(&self.font, c as u32, upem)
                }
            })
            .sum();
        units * size / 1000.0
    }
}

fn advance(font: &ParsedFont, c: u32, upem: f32) -> f32 {
    // A character the font lacks prints as .notdef, about 0.6 em wide.
    font.lookup_glyph_index(c).map_or(600.0, |g| {
        f32::from(font.get_horizontal_advance(g)) * 1000.0 / upem
    })
}

struct Fonts {
    regular: Face,
    bold: Face,
}

fn fonts() -> Result<&'static Fonts, RenderError> {
    static FONTS: OnceLock<Result<Fonts, RenderError>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            Ok(Fonts {
                regular: Face::load(REGULAR_TTF, "DejaVuSans.ttf")?,
                bold: Face::load(BOLD_TTF, "DejaVuSans-Bold.ttf")?,
            })
        })
        .as_ref()
        .map_err(|e| match e {
            RenderError::Font(n) => RenderError::Font(n),
            RenderError::Save(s) => RenderError::Save(s.clone()),
        })
}

#[derive(Clone, Copy, PartialEq)]
enum Weight {
    Regular,
    Bold,
}

#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// Ops of one page plus drawing helpers (PDF origin bottom-left, units pt). Consecutive texts
/// share one text object and the font is only set when it changes: content streams are most
/// of a long EVN's size and rendering time.
struct Canvas<'f> {
    fonts: &'f Fonts,
    ops: Vec<Op>,
    in_text: bool,
    font: Option<(Weight, f32)>,
}

/// Two decimals are 1/7200 inch: plenty, and shorter numbers in the content stream.
fn pt(v: f32) -> Pt {
    Pt((v * 100.0).round() / 100.0)
}

impl<'f> Canvas<'f> {
    fn new(fonts: &'f Fonts) -> Self {
        Canvas {
            fonts,
            ops: Vec::with_capacity(2048),
            in_text: false,
            font: None,
        }
    }

    fn face(&self, w: Weight) -> &'f Face {
        match w {
            Weight::Regular => &self.fonts.regular,
            Weight::Bold => &self.fonts.bold,
        }
    }

    fn width(&self, text: &str, w: Weight, size: f32) -> f32 {
        self.face(w).width(text, size)
    }

    /// Path operators are not allowed inside a text object.
    fn end_text(&mut self) {
        if self.in_text {
            self.ops.push(Op::EndTextSection);
            self.in_text = false;
        }
    }

    fn finish(mut self) -> Vec<Op> {
        self.end_text();
        self.ops
    }

    fn text(&mut self, x: f32, y: f32, text: &str, w: Weight, size: f32, align: Align) {
        if text.is_empty() {
            return;
        }
        let x = match align {
            Align::Left => x,
            Align::Right => x - self.width(text, w, size),
        };
        if !self.in_text {
            self.ops.push(Op::StartTextSection);
            self.in_text = true;
        }
        if self.font != Some((w, size)) {
            let id = match w {
                Weight::Regular => REGULAR_ID,
                Weight::Bold => BOLD_ID,
            };
            self.ops.push(Op::SetFont {
                font: PdfFontHandle::External(FontId(id.to_owned())),
                size: Pt(size),
            });
            self.font = Some((w, size));
        }
        self.ops.extend([
            Op::SetTextMatrix {
                matrix: TextMatrix::Translate(pt(x), pt(y)),
            },
            Op::ShowText {
                items: vec![TextItem::Text(text.to_owned())],
            },
        ]);
    }

    /// Text cut to `max` pt with an ellipsis, so a long label never runs into the next column.
    fn text_fit(&mut self, x: f32, y: f32, text: &str, w: Weight, size: f32, max: f32) {
        if self.width(text, w, size) <= max {
            return self.text(x, y, text, w, size, Align::Left);
        }
        let mut cut: String = text.to_owned();
        while !cut.is_empty() && self.width(&format!("{cut}…"), w, size) > max {
            cut.pop();
        }
        self.text(x, y, &format!("{}…", cut.trim_end()), w, size, Align::Left);
    }

    fn grey(&mut self, level: f32) {
        self.ops.push(Op::SetFillColor {
            col: Color::Greyscale(Greyscale::new(level, None)),
        });
    }

    fn rule(&mut self, x1: f32, x2: f32, y: f32, thickness: f32) {
        self.end_text();
        let (x1, x2, y) = (pt(x1), pt(x2), pt(y));
        self.ops.extend([
            Op::SetOutlineThickness { pt: Pt(thickness) },
            Op::DrawLine {
                line: Line {
                    points: vec![
                        LinePoint {
                            p: Point { x: x1, y },
                            bezier: false,
                        },
                        LinePoint {
                            p: Point { x: x2, y },
                            bezier: false,
                        },
                    ],
                    is_closed: false,
                },
            },
        ]);
    }

    fn band(&mut self, y: f32, h: f32, level: f32) {
        self.end_text();
        self.grey(level);
        self.ops.push(Op::DrawRectangle {
            rectangle: Rect {
                mode: Some(PaintMode::Fill),
                ..Rect::from_xywh(pt(LEFT), pt(y), pt(RIGHT - LEFT), pt(h))
            },
        });
        self.grey(0.0);
    }
}

/// What flows down the pages after the header.
enum Item<'d> {
    /// "Anschluss 030 901820"; kept together with the first row below it.
    Line(String),
    Row(&'d Row, bool),
    Subtotal(String, Decimal),
    Gap(f32),
    /// A bold heading kept together with `keep` pt of what follows.
    Heading(&'static str, f32),
    ZoneHeader,
    Zone(&'d ZoneSum),
    Total(usize, Decimal),
    Paragraph(String, f32, Weight),
    SmallPrint(String),
}

impl Item<'_> {
    fn height(&self) -> f32 {
        match self {
            Item::Line(_) => 17.0,
            Item::Row(..) => ROW_H,
            Item::Subtotal(..) => 16.0,
            Item::Gap(h) => *h,
            Item::Heading(..) => 18.0,
            Item::ZoneHeader => 15.0,
            Item::Zone(_) => ROW_H,
            Item::Total(..) => 18.0,
            Item::Paragraph(_, size, _) => size * 1.35,
            Item::SmallPrint(_) => SMALL * 1.4,
        }
    }

    /// Extra room that must fit on the same page (no orphaned headings).
    fn keep(&self) -> f32 {
        match self {
            Item::Line(_) => ROW_H,
            Item::Heading(_, keep) => *keep,
            Item::ZoneHeader => ROW_H,
            _ => 0.0,
        }
    }

    fn in_table(&self) -> bool {
        matches!(self, Item::Line(_) | Item::Row(..) | Item::Subtotal(..))
    }
}

/// Renders the EVN to PDF bytes. Same document in, same bytes out.
pub fn render_pdf(doc: &EvnDocument) -> Result<RenderedPdf, RenderError> {
    let fonts = fonts()?;
    let items = flow(doc, fonts);
    let mut pages: Vec<Canvas> = Vec::new();
    let mut page = Canvas::new(fonts);
    let mut y = first_page_header(&mut page, doc);
    let table = doc.itemised() > 0;
    if table {
        y = table_header(&mut page, y);
    }
    for item in &items {
        if y - item.height() - item.keep() < BOTTOM {
            pages.push(std::mem::replace(&mut page, Canvas::new(fonts)));
            y = continuation_header(&mut page, doc);
            if item.in_table() {
                y = table_header(&mut page, y);
            }
        }
        y = draw(&mut page, item, y);
    }
    pages.push(page);
    let count = pages.len();
    let footer_left = format!(
        "{} · Einzelverbindungsnachweis {} · Kundennummer {}",
        doc.header.provider_name,
        format::month_name(doc.header.month),
        doc.header.customer_id
    );
    let pdf_pages: Vec<PdfPage> = pages
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            c.grey(0.6);
            c.rule(LEFT, RIGHT, 16.0 * MM, 0.5);
            c.grey(0.35);
            c.text(
                LEFT,
                11.0 * MM,
                &footer_left,
                Weight::Regular,
                SMALL,
                Align::Left,
            );
            c.grey(0.0);
            c.text(
                RIGHT,
                11.0 * MM,
                &format!("Seite {} von {count}", i + 1),
                Weight::Regular,
                BODY,
                Align::Right,
            );
            PdfPage::new(Mm(210.0), Mm(297.0), c.finish())
        })
        .collect();
    let bytes = save(doc, fonts, pdf_pages)?;
    Ok(RenderedPdf {
        bytes,
        pages: count,
    })
}

fn save(doc: &EvnDocument, fonts: &Fonts, pages: Vec<PdfPage>) -> Result<Vec<u8>, RenderError> {
    let h = &doc.header;
    let mut pdf = PdfDocument::new(&format!(
        "Einzelverbindungsnachweis {} {}",
        h.customer_id, h.month
    ));
    for (id, face) in [(REGULAR_ID, &fonts.regular), (BOLD_ID, &fonts.bold)] {
        pdf.resources
            .fonts
            .map
            .insert(FontId(id.to_owned()), PdfFont::new(face.font.clone()));
    }
    let created = printpdf::DateTime {
        date: printpdf::Date {
            year: h.created.year(),
            month: h.created.month() as u8,
            day: h.created.day() as u8,
        },
        time: printpdf::Time {
            hour: 0,
            minute: 0,
            second: 0,
            millisecond: 0,
        },
        offset: printpdf::Offset {
            hours: 0,
            minutes: 0,
            seconds: 0,
            milliseconds: 0,
        },
    };
    let info = &mut pdf.metadata.info;
    info.creation_date = created;
    info.modification_date = created;
    info.metadata_date = created;
    info.author = h.provider_name.clone();
    info.creator = concat!("evn ", env!("CARGO_PKG_VERSION")).to_owned();
    info.producer = "printpdf".to_owned();
    info.subject = format!("Einzelverbindungsnachweis {}", format::month_name(h.month));
    pdf.with_pages(pages);
    let mut warnings = Vec::new();
    let opts = PdfSaveOptions {
        optimize: true,
        subset_fonts: true,
        secure: true,
        image_optimization: None,
    };
    let mut lo = pdf.to_lopdf_document(&opts, &mut warnings);
    // printpdf draws the trailer /ID at random; derive it from the content instead, so the
    // same EVN is the same file (two equal halves: the document was never modified).
    let id = document_id(doc);
    lo.trailer.set(
        "ID",
        lopdf::Object::Array(vec![
            lopdf::Object::String(id.clone(), lopdf::StringFormat::Hexadecimal),
            lopdf::Object::String(id, lopdf::StringFormat::Hexadecimal),
        ]),
    );
    compress(&mut lo);
    let mut bytes = Vec::new();
    lo.save_to(&mut bytes)
        .map_err(|e| RenderError::Save(e.to_string()))?;
    Ok(bytes)
}

/// Deflates every stream at level 6. lopdf's own `compress` uses level 9, which took half the
/// render time for about 1 % smaller files.
fn compress(lo: &mut lopdf::Document) {
    use flate2::{write::ZlibEncoder, Compression};
    for object in lo.objects.values_mut() {
        let lopdf::Object::Stream(stream) = object else {
            continue;
        };
        if !stream.allows_compression || stream.dict.get(b"Filter").is_ok() {
            continue;
        }
        let mut encoder = ZlibEncoder::new(
            Vec::with_capacity(stream.content.len() / 3),
            Compression::new(6),
        );
        if encoder.write_all(&stream.content).is_err() {
            continue;
        }
        if let Ok(compressed) = encoder.finish() {
            if compressed.len() + 19 < stream.content.len() {
                stream.dict.set("Filter", "FlateDecode");
                stream.set_content(compressed);
            }
        }
    }
}

fn document_id(doc: &EvnDocument) -> Vec<u8> {
    let h = &doc.header;
    let mut hasher = Sha256::new();
    hasher.update(doc.content_digest());
    for part in [
        h.created.to_string(),
        h.version.to_string(),
        h.config_version.clone(),
        h.counselling_version.clone(),
    ] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize()[..16].to_vec()
}

/// Page 1: provider top right, sender line and address where a DIN window envelope shows it,
/// the facts block, and the title. Returns where the body starts.
fn first_page_header(c: &mut Canvas, doc: &EvnDocument) -> f32 {
    let h = &doc.header;
    let mut y = PAGE_H - 18.0 * MM;
    c.text(RIGHT, y, &h.provider_name, Weight::Bold, 12.0, Align::Right);
    y -= 13.0;
    for line in &h.provider_address {
        c.text(RIGHT, y, line, Weight::Regular, BODY, Align::Right);
        y -= 10.5;
    }
    c.grey(0.35);
    for line in &h.provider_contact {
        c.text(RIGHT, y, line, Weight::Regular, SMALL + 0.5, Align::Right);
        y -= 9.5;
    }
    c.grey(0.0);

    // DIN 5008 form B: the address field starts 45 mm from the top, 20 mm from the left.
    let sender = std::iter::once(h.provider_name.as_str())
        .chain(h.provider_address.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" · ");
    let mut y = PAGE_H - 50.0 * MM;
    c.grey(0.35);
    c.text_fit(LEFT, y, &sender, Weight::Regular, 6.5, 80.0 * MM);
    c.grey(0.0);
    y -= 16.0;
    c.text_fit(LEFT, y, &h.customer_name, Weight::Regular, 10.0, 80.0 * MM);
    for line in &h.customer_address {
        y -= 13.0;
        c.text_fit(LEFT, y, line, Weight::Regular, 10.0, 80.0 * MM);
    }

    let (first, last) = (h.month.first_day(), h.month.last_day());
    let facts = [
        ("Kundennummer", h.customer_id.clone()),
        (
            "Abrechnungszeitraum",
            format!("{} – {}", format::date(first), format::date(last)),
        ),
        ("Erstellt am", format::date(h.created)),
        ("Version", h.version.to_string()),
    ];
    let label_x = 112.0 * MM;
    let mut y = PAGE_H - 52.0 * MM;
    for (label, value) in facts {
        c.grey(0.35);
        c.text(label_x, y, label, Weight::Regular, BODY, Align::Left);
        c.grey(0.0);
        c.text(RIGHT, y, &value, Weight::Regular, BODY, Align::Right);
        y -= 13.0;
    }

    let mut y = PAGE_H - 98.0 * MM;
    c.text(
        LEFT,
        y,
        "Einzelverbindungsnachweis",
        Weight::Bold,
        16.0,
        Align::Left,
    );
    y -= 16.0;
    c.text(
        LEFT,
        y,
        &format!(
            "Abrechnungszeitraum {} – {}",
            format::date(first),
            format::date(last)
        ),
        Weight::Regular,
        10.0,
        Align::Left,
    );
    y - 20.0
}

/// Pages 2…: a slim running header.
fn continuation_header(c: &mut Canvas, doc: &EvnDocument) -> f32 {
    let h = &doc.header;
    let y = PAGE_H - 15.0 * MM;
    c.text(LEFT, y, &h.provider_name, Weight::Bold, 9.0, Align::Left);
    c.text(
        RIGHT,
        y,
        &format!(
            "Einzelverbindungsnachweis {} · Kundennummer {}",
            format::month_name(h.month),
            h.customer_id
        ),
        Weight::Regular,
        BODY,
        Align::Right,
    );
    c.grey(0.6);
    c.rule(LEFT, RIGHT, y - 5.0, 0.5);
    c.grey(0.0);
    y - 22.0
}

/// The column titles; repeated at the top of every page the table runs over.
fn table_header(c: &mut Canvas, y: f32) -> f32 {
    c.band(y - 4.0, 14.0, 0.85);
    let b = Weight::Bold;
    c.text(COL_NR_R, y, "Nr.", b, BODY, Align::Right);
    c.text(COL_DATE, y, "Datum", b, BODY, Align::Left);
    c.text(COL_TIME, y, "Uhrzeit", b, BODY, Align::Left);
    c.text(COL_DUR_R, y, "Dauer", b, BODY, Align::Right);
    c.text(COL_NUMBER, y, "Zielrufnummer", b, BODY, Align::Left);
    c.text(COL_ZONE, y, "Tarifzone", b, BODY, Align::Left);
    c.text(COL_AMOUNT_R, y, "Betrag", b, BODY, Align::Right);
    y - 12.0
}

/// Lays the document out as a flow of items, wrapping paragraphs to the text width.
fn flow<'d>(doc: &'d EvnDocument, fonts: &Fonts) -> Vec<Item<'d>> {
    let mut items = Vec::with_capacity(doc.itemised() + 3 * doc.groups.len() + 40);
    let notices = doc.notices();
    let mut notices = notices.iter();
    if doc.itemised() == 0 {
        // The one sentence the customer needs comes first, not among the fine print.
        if let Some(first) = notices.next() {
            for line in wrap(first, &fonts.regular, 10.0, RIGHT - LEFT) {
                items.push(Item::Paragraph(line, 10.0, Weight::Regular));
            }
        }
        items.push(Item::Gap(8.0));
    }
    for group in doc.groups.iter().filter(|g| !g.rows.is_empty()) {
        let number = format::number(&group.calling_number);
        items.push(Item::Line(format!("Anschluss {number}")));
        for (i, row) in group.rows.iter().enumerate() {
            items.push(Item::Row(row, i % 2 == 1));
        }
        items.push(Item::Subtotal(
            format!("Summe Anschluss {number}"),
            group.subtotal,
        ));
    }
    items.push(Item::Gap(10.0));
    items.push(Item::Heading("Zusammenfassung", 15.0 + ROW_H));
    if !doc.zones.is_empty() {
        items.push(Item::ZoneHeader);
        items.extend(doc.zones.iter().map(Item::Zone));
    }
    if doc.not_itemised.count > 0 {
        if doc.zones.is_empty() {
            items.push(Item::ZoneHeader);
        }
        items.push(Item::Zone(&doc.not_itemised));
    }
    items.push(Item::Total(doc.billed, doc.total));
    items.push(Item::Gap(8.0));
    items.push(Item::Heading("Hinweise", 10.0));
    for notice in notices {
        for line in wrap(notice, &fonts.regular, 8.0, RIGHT - LEFT) {
            items.push(Item::Paragraph(line, 8.0, Weight::Regular));
        }
        items.push(Item::Gap(3.0));
    }
    items.push(Item::Gap(6.0));
    let h = &doc.header;
    let small = format!(
        "EVN-Version {} · erstellt am {} · Konfiguration {} · Liste der Beratungsstellen {}",
        h.version,
        format::date(h.created),
        h.config_version,
        h.counselling_version
    );
    for line in wrap(&small, &fonts.regular, SMALL, RIGHT - LEFT) {
        items.push(Item::SmallPrint(line));
    }
    items
}

/// Greedy word wrap by measured width.
fn wrap(text: &str, face: &Face, size: f32, max: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let candidate = if line.is_empty() {
            word.to_owned()
        } else {
            format!("{line} {word}")
        };
        if !line.is_empty() && face.width(&candidate, size) > max {
            lines.push(std::mem::replace(&mut line, word.to_owned()));
        } else {
            line = candidate;
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Draws one item with its top at `y`; returns the next top.
fn draw(c: &mut Canvas, item: &Item, y: f32) -> f32 {
    let base = y - item.height();
    match item {
        Item::Line(text) => {
            c.text(LEFT + 2.0, base + 5.0, text, Weight::Bold, 9.0, Align::Left);
        }
        Item::Row(row, shaded) => {
            if *shaded {
                c.band(base, ROW_H, 0.95);
            }
            let t = base + 3.0;
            let r = Weight::Regular;
            c.text(COL_NR_R, t, &row.nr.to_string(), r, BODY, Align::Right);
            c.text(
                COL_DATE,
                t,
                &format::local_date(row.start_time),
                r,
                BODY,
                Align::Left,
            );
            c.text(
                COL_TIME,
                t,
                &format::local_time(row.start_time),
                r,
                BODY,
                Align::Left,
            );
            c.text(
                COL_DUR_R,
                t,
                &format::duration(row.duration_s),
                r,
                BODY,
                Align::Right,
            );
            c.text_fit(
                COL_NUMBER,
                t,
                &format::number(&row.called_number),
                r,
                BODY,
                COL_ZONE - COL_NUMBER - 6.0,
            );
            c.text_fit(
                COL_ZONE,
                t,
                &row.zone_label,
                r,
                BODY,
                COL_AMOUNT_R - COL_ZONE - 60.0,
            );
            c.text(
                COL_AMOUNT_R,
                t,
                &format::money(row.charge),
                r,
                BODY,
                Align::Right,
            );
        }
        Item::Subtotal(label, amount) => {
            c.grey(0.4);
            c.rule(COL_NUMBER, RIGHT, y - 1.0, 0.5);
            c.grey(0.0);
            c.text(
                COL_AMOUNT_R - 64.0,
                base + 5.0,
                label,
                Weight::Bold,
                BODY,
                Align::Right,
            );
            c.text(
                COL_AMOUNT_R,
                base + 5.0,
                &format::money(*amount),
                Weight::Bold,
                BODY,
                Align::Right,
            );
        }
        Item::Gap(_) => {}
        Item::Heading(text, _) => {
            c.text(LEFT, base + 5.0, text, Weight::Bold, 10.5, Align::Left);
        }
        Item::ZoneHeader => {
            c.band(base + 1.0, 14.0, 0.85);
            c.text(
                LEFT + 4.0,
                base + 5.0,
                "Tarifzone",
                Weight::Bold,
                BODY,
                Align::Left,
            );
            c.text(
                COL_ZONE + 60.0,
                base + 5.0,
                "Anzahl",
                Weight::Bold,
                BODY,
                Align::Right,
            );
            c.text(
                COL_AMOUNT_R,
                base + 5.0,
                "Betrag",
                Weight::Bold,
                BODY,
                Align::Right,
            );
        }
        Item::Zone(zone) => {
            let t = base + 3.0;
            c.text(
                LEFT + 4.0,
                t,
                &zone.label,
                Weight::Regular,
                BODY,
                Align::Left,
            );
            c.text(
                COL_ZONE + 60.0,
                t,
                &zone.count.to_string(),
                Weight::Regular,
                BODY,
                Align::Right,
            );
            c.text(
                COL_AMOUNT_R,
                t,
                &format::money(zone.amount),
                Weight::Regular,
                BODY,
                Align::Right,
            );
        }
        Item::Total(count, amount) => {
            c.rule(LEFT, RIGHT, y - 1.0, 0.8);
            let t = base + 5.0;
            c.text(
                LEFT + 4.0,
                t,
                "Gesamtsumme (netto)",
                Weight::Bold,
                9.5,
                Align::Left,
            );
            c.text(
                COL_ZONE + 60.0,
                t,
                &count.to_string(),
                Weight::Bold,
                9.5,
                Align::Right,
            );
            c.text(
                COL_AMOUNT_R,
                t,
                &format::money(*amount),
                Weight::Bold,
                9.5,
                Align::Right,
            );
        }
        Item::Paragraph(text, size, w) => {
            c.text(LEFT, base + 3.0, text, *w, *size, Align::Left);
        }
        Item::SmallPrint(text) => {
            c.grey(0.4);
            c.text(LEFT, base + 2.0, text, Weight::Regular, SMALL, Align::Left);
            c.grey(0.0);
        }
    }
    base
}

#[cfg(test)]
#[path = "pdf_tests.rs"]
mod tests;
