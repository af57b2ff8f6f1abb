//! Draws an [`EvnDocument`] as an A4 PDF: DIN 5008-style first page, a table whose header
//! repeats on every page, "Seite x von y", and DejaVu Sans embedded as a subset so that
//! umlauts, `ß` and `€` are real text. Byte-for-byte deterministic for the same document.
//!
//! Division of labour with printpdf: printpdf builds the document (catalog, pages,
//! resources, the embedded fonts with their `/W` widths and `/ToUnicode` maps, metadata);
//! the page content streams are written here, directly as PDF operators. Going through
//! printpdf's `Op` list cost ~2.7 ms per table page (an allocated object per operand and a
//! glyph-map insert per character), four times the whole budget of the 500 pages/s target.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::Datelike;
use printpdf::{
    FontEmbeddingMode, FontId, Mm, Op, PdfDocument, PdfFont, PdfFontHandle, PdfPage,
    PdfSaveOptions, PrintpdfFontMeta, Pt, TextItem,
};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::fonts::{fonts, Fonts, Subset, Weight};
use crate::format;
use crate::model::{EvnDocument, Row, ZoneSum};

/// Fixed font ids: they are the resource names in the content streams and the `XXXXXX+`
/// subset tags; a random id would make every rendering differ.
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
/// Where the body starts on pages 2…, below the running header.
const CONTINUATION_TOP: f32 = PAGE_H - 15.0 * MM - 22.0;

const BODY: f32 = 8.5;
const ROW_H: f32 = 11.5;
const SMALL: f32 = 7.0;
const LINE_H: f32 = 17.0;
const SUBTOTAL_H: f32 = 16.0;
const NOTICE: f32 = 8.0;

/// Column anchors of the connection table (x in pt). `R` columns are right-aligned.
const COL_NR_R: f32 = LEFT + 28.0;
const COL_DATE: f32 = LEFT + 36.0;
const COL_TIME: f32 = LEFT + 92.0;
const COL_DUR_R: f32 = LEFT + 176.0;
const COL_NUMBER: f32 = LEFT + 190.0;
const COL_ZONE: f32 = LEFT + 300.0;
const COL_AMOUNT_R: f32 = RIGHT - 4.0;
/// Right edge of the count column in the summary.
const COL_COUNT_R: f32 = COL_ZONE + 60.0;
/// Room kept left of the amount column for the amount (`100.000,00 €` and a gap).
const AMOUNT_W: f32 = 66.0;

/// Grey levels (0 black, 1 white).
const GREY_TEXT: f32 = 0.35;
const GREY_RULE: f32 = 0.6;
const GREY_HEAD: f32 = 0.85;
const GREY_ZEBRA: f32 = 0.95;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the embedded font {0} cannot be parsed: the build is broken, rebuild evn")]
    Font(&'static str),
    #[error("cannot subset the embedded font: {0}")]
    Subset(String),
    #[error("cannot serialise the PDF: {0}")]
    Save(String),
    #[error("cannot password-protect the PDF: {0}")]
    Protect(String),
}

/// A rendered EVN.
#[derive(Debug, Clone)]
pub struct RenderedPdf {
    pub bytes: Vec<u8>,
    pub pages: usize,
}

#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// Appends `v` rounded to 1/100 pt (1/7200 inch: plenty) in the shortest form: `12`, `12.5`,
/// `-3.25`. Positions are kept in these integer units so relative moves never drift.
fn put_hundredths(buf: &mut Vec<u8>, v: i64) {
    if v < 0 {
        buf.push(b'-');
    }
    let v = v.unsigned_abs();
    let (int, frac) = (v / 100, v % 100);
    // By hand rather than `write!`: a page has ~2,000 numbers, and core::fmt was a sixth of
    // the rendering time.
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = int;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
    if frac != 0 {
        buf.push(b'.');
        buf.push(b'0' + (frac / 10) as u8);
        if frac % 10 != 0 {
            buf.push(b'0' + (frac % 10) as u8);
        }
    }
}

fn hundredths(v: f32) -> i64 {
    (v * 100.0).round() as i64
}

/// One page's content stream, written as PDF operators (origin bottom-left, units pt).
/// Consecutive texts share one text object, and font and colour are only set when they
/// change: content streams are most of a long EVN's bytes and of its rendering time.
struct Canvas<'f> {
    fonts: &'f Fonts,
    subsets: &'f [Arc<Subset>; 2],
    buf: Vec<u8>,
    in_text: bool,
    font: Option<(Weight, i64)>,
    /// Fill grey (text and bands) and stroke grey (rules), in 1/100.
    fill: i64,
    stroke: i64,
    line_width: i64,
    /// Start of the current text line (`Td` moves relative to it), in 1/100 pt.
    origin: (i64, i64),
    /// Characters drawn that the face has but the subset lacks (per weight): the document
    /// is then drawn again with them added.
    missing: [BTreeSet<char>; 2],
}

impl<'f> Canvas<'f> {
    fn new(fonts: &'f Fonts, subsets: &'f [Arc<Subset>; 2]) -> Self {
        Canvas {
            fonts,
            subsets,
            buf: Vec::with_capacity(16 * 1024),
            in_text: false,
            font: None,
            fill: 0,
            stroke: 0,
            line_width: 100,
            origin: (0, 0),
            missing: Default::default(),
        }
    }

    fn width(&self, text: &str, w: Weight, size: f32) -> f32 {
        self.fonts.face(w).width(text, size)
    }

    fn op_num(&mut self, v: i64) {
        put_hundredths(&mut self.buf, v);
        self.buf.push(b' ');
    }

    /// Path operators are not allowed inside a text object.
    fn end_text(&mut self) {
        if self.in_text {
            self.buf.extend_from_slice(b"ET\n");
            self.in_text = false;
        }
    }

    fn finish(mut self) -> (Vec<u8>, [BTreeSet<char>; 2]) {
        self.end_text();
        (self.buf, self.missing)
    }

    fn set_fill(&mut self, grey: f32) {
        let g = hundredths(grey);
        if g != self.fill {
            self.op_num(g);
            self.buf.extend_from_slice(b"g\n");
            self.fill = g;
        }
    }

    fn set_stroke(&mut self, grey: f32, width: f32) {
        let g = hundredths(grey);
        if g != self.stroke {
            self.op_num(g);
            self.buf.extend_from_slice(b"G\n");
            self.stroke = g;
        }
        let w = hundredths(width);
        if w != self.line_width {
            self.op_num(w);
            self.buf.extend_from_slice(b"w\n");
            self.line_width = w;
        }
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
            self.buf.extend_from_slice(b"BT\n");
            self.in_text = true;
            // A new text object starts with the identity text matrix. The font would survive
            // ET (it is graphics state), but setting it per object keeps objects standalone.
            self.origin = (0, 0);
            self.font = None;
        }
        let s = hundredths(size);
        if self.font != Some((w, s)) {
            let id = match w {
                Weight::Regular => REGULAR_ID,
                Weight::Bold => BOLD_ID,
            };
            let _ = write!(self.buf, "/{id} ");
            self.op_num(s);
            self.buf.extend_from_slice(b"Tf\n");
            self.font = Some((w, s));
        }
        let (hx, hy) = (hundredths(x), hundredths(y));
        self.op_num(hx - self.origin.0);
        self.op_num(hy - self.origin.1);
        self.buf.extend_from_slice(b"Td\n(");
        self.origin = (hx, hy);
        let subset = &self.subsets[w as usize];
        for c in text.chars() {
            let code = subset.code(c);
            if code == 0 && self.fonts.face(w).has(c) {
                self.missing[w as usize].insert(c);
            }
            // Two-byte codes in a literal string: half the bytes of hex, and content streams
            // are what deflate spends its time on. Only `(`, `)`, `\` and CR need escaping
            // (a raw CR would be read as an end of line).
            for b in code.to_be_bytes() {
                match b {
                    b'(' | b')' | b'\\' => self.buf.extend_from_slice(&[b'\\', b]),
                    b'\r' => self.buf.extend_from_slice(b"\\r"),
                    _ => self.buf.push(b),
                }
            }
        }
        self.buf.extend_from_slice(b") Tj\n");
    }

    /// Text cut to `max` pt with an ellipsis, so a long label never runs into the next column.
    fn text_fit(&mut self, x: f32, y: f32, text: &str, w: Weight, size: f32, max: f32) {
        if self.width(text, w, size) <= max {
            return self.text(x, y, text, w, size, Align::Left);
        }
        let mut cut: String = text.to_owned();
        while !cut.is_empty() && self.width(&cut, w, size) + self.width("…", w, size) > max {
            cut.pop();
        }
        self.text(x, y, &format!("{}…", cut.trim_end()), w, size, Align::Left);
    }

    fn rule(&mut self, x1: f32, x2: f32, y: f32, thickness: f32, grey: f32) {
        self.end_text();
        self.set_stroke(grey, thickness);
        let y = hundredths(y);
        self.op_num(hundredths(x1));
        self.op_num(y);
        self.buf.extend_from_slice(b"m ");
        self.op_num(hundredths(x2));
        self.op_num(y);
        self.buf.extend_from_slice(b"l S\n");
    }

    fn band(&mut self, y: f32, h: f32, grey: f32) {
        self.end_text();
        self.set_fill(grey);
        self.op_num(hundredths(LEFT));
        self.op_num(hundredths(y));
        self.op_num(hundredths(RIGHT - LEFT));
        self.op_num(hundredths(h));
        self.buf.extend_from_slice(b"re f\n");
        self.set_fill(0.0);
    }
}

/// What flows down the pages after the header. `keep`: room that must be left below the
/// item on the same page, so that nothing is orphaned (a line heading without its first
/// row, a subtotal without its last row, a summary split from its total).
enum Item<'d> {
    /// A calling line's heading: "Anschluss 030 901820".
    Line(String, f32),
    /// A row, whether its band is shaded, and its keep.
    Row(&'d Row, bool, f32),
    Subtotal(String, Decimal),
    Gap(f32),
    /// A bold heading and its keep.
    Heading(&'static str, f32),
    ZoneHeader,
    Zone(&'d ZoneSum),
    Total(usize, Decimal),
    /// Lines of one paragraph, kept together, and the font size.
    Paragraph(Vec<String>, f32),
    SmallPrint(Vec<String>),
}

impl Item<'_> {
    fn height(&self) -> f32 {
        match self {
            Item::Line(..) => LINE_H,
            Item::Row(..) => ROW_H,
            Item::Subtotal(..) => SUBTOTAL_H,
            Item::Gap(h) => *h,
            Item::Heading(..) => 18.0,
            Item::ZoneHeader => 15.0,
            Item::Zone(_) => ROW_H,
            Item::Total(..) => 18.0,
            Item::Paragraph(lines, size) => lines.len() as f32 * size * 1.35,
            Item::SmallPrint(lines) => lines.len() as f32 * SMALL * 1.4,
        }
    }

    fn keep(&self) -> f32 {
        match self {
            Item::Line(_, keep) | Item::Row(_, _, keep) | Item::Heading(_, keep) => *keep,
            _ => 0.0,
        }
    }

    /// Items of the connection table: a page they start on gets the column titles.
    fn in_table(&self) -> bool {
        matches!(self, Item::Line(..) | Item::Row(..) | Item::Subtotal(..))
    }
}

/// Renders the EVN to PDF bytes. Same document in, same bytes out.
pub fn render_pdf(doc: &EvnDocument) -> Result<RenderedPdf, RenderError> {
    let fonts = fonts()?;
    // Bold shows fixed headings, numbers and sums, and the provider's name.
    let mut extra = [
        fonts.regular.extra_chars(document_texts(doc)),
        fonts.bold.extra_chars(
            std::iter::once(doc.header.provider_name.as_str())
                .chain(doc.groups.iter().map(|g| g.calling_number.as_str())),
        ),
    ];
    // The subset is chosen before drawing; a character the prediction missed (nothing the
    // model holds should get there) sends the document round once more with it added.
    for _ in 0..3 {
        let subsets = [
            fonts.regular.subset(&extra[0])?,
            fonts.bold.subset(&extra[1])?,
        ];
        let (contents, missing) = draw_pages(doc, fonts, &subsets);
        if missing.iter().all(BTreeSet::is_empty) {
            let pages = contents.len();
            let bytes = save(doc, &subsets, contents)?;
            return Ok(RenderedPdf { bytes, pages });
        }
        for (e, m) in extra.iter_mut().zip(missing) {
            e.extend(m);
        }
    }
    Err(RenderError::Subset(
        "characters keep missing from the font subset".to_owned(),
    ))
}

/// Lays the document out and draws every page: the content streams, and the characters
/// the subsets lacked.
fn draw_pages(
    doc: &EvnDocument,
    fonts: &Fonts,
    subsets: &[Arc<Subset>; 2],
) -> (Vec<Vec<u8>>, [BTreeSet<char>; 2]) {
    let items = flow(doc, fonts);
    let new_page = || Canvas::new(fonts, subsets);

    let mut pages: Vec<Canvas> = Vec::new();
    let mut page = new_page();
    let mut y = first_page_header(&mut page, doc);
    if doc.itemised() > 0 {
        y = table_header(&mut page, y);
    }
    // The calling line whose rows are being drawn: repeated at the top of a new page.
    let mut line: Option<&str> = None;
    for item in &items {
        if y - item.height() - item.keep() < BOTTOM {
            pages.push(std::mem::replace(&mut page, new_page()));
            y = continuation_header(&mut page, doc);
            if item.in_table() {
                y = table_header(&mut page, y);
                if let (Some(number), Item::Row(..) | Item::Subtotal(..)) = (line, item) {
                    y = draw(
                        &mut page,
                        &Item::Line(format!("{number} (Fortsetzung)"), 0.0),
                        y,
                    );
                }
            }
        }
        match item {
            Item::Line(text, _) => line = Some(text),
            Item::Subtotal(..) => line = None,
            _ => {}
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
    let mut missing: [BTreeSet<char>; 2] = Default::default();
    let contents = pages
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            c.rule(LEFT, RIGHT, 16.0 * MM, 0.5, GREY_RULE);
            c.set_fill(GREY_TEXT);
            c.text_fit(
                LEFT,
                11.0 * MM,
                &footer_left,
                Weight::Regular,
                SMALL,
                RIGHT - LEFT - 80.0,
            );
            c.set_fill(0.0);
            c.text(
                RIGHT,
                11.0 * MM,
                &format!("Seite {} von {count}", i + 1),
                Weight::Regular,
                BODY,
                Align::Right,
            );
            let (content, m) = c.finish();
            for (all, m) in missing.iter_mut().zip(m) {
                all.extend(m);
            }
            content
        })
        .collect();
    (contents, missing)
}

/// Every text of the document that is not fixed layout text: what decides the font subset.
fn document_texts(doc: &EvnDocument) -> impl Iterator<Item = &str> {
    let h = &doc.header;
    [
        h.provider_name.as_str(),
        &h.customer_id,
        &h.customer_name,
        &h.config_version,
        &h.counselling_version,
    ]
    .into_iter()
    .chain(h.provider_address.iter().map(String::as_str))
    .chain(h.provider_contact.iter().map(String::as_str))
    .chain(h.customer_address.iter().map(String::as_str))
    .chain(doc.zones.iter().map(|z| z.label.as_str()))
    .chain(doc.flatrate_zones.iter().map(|(label, _)| label.as_str()))
    .chain(doc.groups.iter().flat_map(|g| {
        std::iter::once(g.calling_number.as_str()).chain(
            g.rows
                .iter()
                .flat_map(|r| [r.called_number.as_str(), r.zone_label.as_str()]),
        )
    }))
}

/// Builds the document with printpdf, then puts in the page contents drawn here.
fn save(
    doc: &EvnDocument,
    subsets: &[Arc<Subset>; 2],
    contents: Vec<Vec<u8>>,
) -> Result<Vec<u8>, RenderError> {
    let h = &doc.header;
    let mut pdf = PdfDocument::new(&format!(
        "Einzelverbindungsnachweis {} {}",
        h.customer_id, h.month
    ));
    // The subsets are embedded whole (they are the subset): printpdf must not subset again.
    let meta = PrintpdfFontMeta {
        embedding_mode: FontEmbeddingMode::Full,
        requires_subsetting: false,
        ..PrintpdfFontMeta::default()
    };
    let mut declare = vec![Op::StartTextSection];
    for (id, subset) in [(REGULAR_ID, &subsets[0]), (BOLD_ID, &subsets[1])] {
        pdf.resources.fonts.map.insert(
            FontId(id.to_owned()),
            PdfFont::with_meta(subset.font.clone(), meta.clone()),
        );
        // printpdf builds /W and /ToUnicode for the characters its pages show. Showing it
        // the whole repertoire once makes both cover the subset; this placeholder page
        // content is replaced below, so the text never reaches the PDF.
        declare.push(Op::SetFont {
            font: PdfFontHandle::External(FontId(id.to_owned())),
            size: Pt(1.0),
        });
        declare.push(Op::ShowText {
            items: vec![TextItem::Text(subset.chars.clone())],
        });
    }
    declare.push(Op::EndTextSection);
    let pages: Vec<PdfPage> = (0..contents.len())
        .map(|i| {
            let ops = if i == 0 {
                std::mem::take(&mut declare)
            } else {
                Vec::new()
            };
            PdfPage::new(Mm(210.0), Mm(297.0), ops)
        })
        .collect();
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
        optimize: false,
        subset_fonts: false,
        secure: true,
        image_optimization: None,
    };
    let mut lo = pdf.to_lopdf_document(&opts, &mut warnings);

    let page_ids: Vec<lopdf::ObjectId> = lo.get_pages().into_values().collect();
    if page_ids.len() != contents.len() {
        return Err(RenderError::Save(format!(
            "printpdf made {} pages of {}",
            page_ids.len(),
            contents.len()
        )));
    }
    // Each page's placeholder stream is replaced in place by the content drawn here.
    let mut content_ids = std::collections::HashSet::with_capacity(contents.len());
    for (page_id, content) in page_ids.into_iter().zip(contents) {
        let stream_id = lo
            .get_object(page_id)
            .and_then(lopdf::Object::as_dict)
            .and_then(|d| d.get(b"Contents"))
            .and_then(lopdf::Object::as_reference)
            .map_err(|e| RenderError::Save(format!("page without a content stream: {e}")))?;
        lo.objects.insert(
            stream_id,
            lopdf::Object::Stream(lopdf::Stream::new(lopdf::Dictionary::new(), content)),
        );
        content_ids.insert(stream_id);
    }
    tag_subset_fonts(&mut lo);
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
    compress(&mut lo, &content_ids);
    let mut bytes = Vec::new();
    lo.save_to(&mut bytes)
        .map_err(|e| RenderError::Save(e.to_string()))?;
    Ok(bytes)
}

/// printpdf names a font embedded whole without the `XXXXXX+` tag; ours are subsets, which
/// ISO 32000-1 § 9.6.4 wants tagged (`EVNREG+DejaVuSans`), on /BaseFont and /FontName alike.
fn tag_subset_fonts(lo: &mut lopdf::Document) {
    fn tag(dict: &mut lopdf::Dictionary, key: &[u8]) {
        let Ok(lopdf::Object::Name(name)) = dict.get(key) else {
            return;
        };
        let prefix = match name.as_slice() {
            b"DejaVuSans" => REGULAR_ID,
            b"DejaVuSans-Bold" => BOLD_ID,
            _ => return,
        };
        let mut tagged = format!("{prefix}+").into_bytes();
        tagged.extend_from_slice(name);
        dict.set(key.to_vec(), lopdf::Object::Name(tagged));
    }
    for object in lo.objects.values_mut() {
        let Ok(dict) = object.as_dict_mut() else {
            continue;
        };
        tag(dict, b"BaseFont");
        tag(dict, b"FontName");
        if let Ok(lopdf::Object::Array(descendants)) = dict.get_mut(b"DescendantFonts") {
            for d in descendants {
                if let Ok(d) = d.as_dict_mut() {
                    tag(d, b"BaseFont");
                }
            }
        }
    }
}

/// Deflated streams that recur in every EVN (font programs, `/ToUnicode` maps), keyed by
/// their bytes' hash: compressing the same 20 KB font in every document was a third of a
/// short EVN's rendering time.
fn deflate_cached(content: &[u8]) -> Arc<Vec<u8>> {
    /// (length, xxh3-128) of the plain bytes → the deflated bytes.
    type Cache = Mutex<HashMap<(usize, u128), Arc<Vec<u8>>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let key = (content.len(), xxhash_rust::xxh3::xxh3_128(content));
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hit) = cache.lock().expect("deflate cache").get(&key) {
        return hit.clone();
    }
    let out = Arc::new(deflate(content, 9));
    let mut cache = cache.lock().expect("deflate cache");
    if cache.len() >= 256 {
        cache.clear();
    }
    cache.insert(key, out.clone());
    out
}

fn deflate(content: &[u8], level: u32) -> Vec<u8> {
    use flate2::{write::ZlibEncoder, Compression};
    let mut encoder = ZlibEncoder::new(
        Vec::with_capacity(content.len() / 3 + 64),
        Compression::new(level),
    );
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(content);
    encoder.finish().unwrap_or_default()
}

/// Deflates every stream. Page contents at level 6 (level 9 cost twice the time for ~1 %);
/// everything else is the same in every EVN of a run and comes from [`deflate_cached`].
fn compress(lo: &mut lopdf::Document, contents: &std::collections::HashSet<lopdf::ObjectId>) {
    for (id, object) in lo.objects.iter_mut() {
        let lopdf::Object::Stream(stream) = object else {
            continue;
        };
        if stream.dict.get(b"Filter").is_ok() {
            continue;
        }
        let compressed = if contents.contains(id) {
            deflate(&stream.content, 6)
        } else {
            deflate_cached(&stream.content).as_ref().clone()
        };
        if compressed.len() + 19 < stream.content.len() {
            stream.dict.set("Filter", "FlateDecode");
            stream.set_content(compressed);
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
    // The right column: from 112 mm to the right margin.
    let right_w = RIGHT - 112.0 * MM;
    let mut y = PAGE_H - 18.0 * MM;
    // The name may use the whole width (nothing else is up there), on up to two lines.
    for line in wrap_lines(c, &h.provider_name, Weight::Bold, 12.0, RIGHT - LEFT, 2) {
        right_fit(c, y, &line, Weight::Bold, 12.0, RIGHT - LEFT);
        y -= 14.0;
    }
    for line in &h.provider_address {
        right_fit(c, y, line, Weight::Regular, BODY, right_w);
        y -= 10.5;
    }
    c.set_fill(GREY_TEXT);
    for line in &h.provider_contact {
        right_fit(c, y, line, Weight::Regular, SMALL + 0.5, right_w);
        y -= 9.5;
    }
    c.set_fill(0.0);

    // DIN 5008 form B: the address field starts 45 mm from the top, 20 mm from the left.
    let sender = std::iter::once(h.provider_name.as_str())
        .chain(h.provider_address.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" · ");
    let y = PAGE_H - 50.0 * MM;
    c.set_fill(GREY_TEXT);
    c.text_fit(LEFT, y, &sender, Weight::Regular, 6.5, 80.0 * MM);
    c.set_fill(0.0);
    // The address field is 85 mm wide with six lines (DIN 5008): a long company name or
    // street wraps into them, in a smaller size if it must, rather than being cut; a legal
    // name or an address cut short is wrong on a document sent to the customer.
    let (lines, size) = address_lines(c, &h.customer_name, &h.customer_address, 82.0 * MM);
    let mut y = y - 3.0;
    for line in &lines {
        y -= size * 1.3;
        c.text_fit(LEFT, y, line, Weight::Regular, size, 82.0 * MM);
    }

    let period = format!(
        "{} – {}",
        format::date(h.month.first_day()),
        format::date(h.month.last_day())
    );
    let facts = [
        ("Kundennummer", h.customer_id.as_str()),
        ("Abrechnungszeitraum", &period),
        ("Erstellt am", &format::date(h.created)),
        ("Version", &h.version.to_string()),
    ];
    let label_x = 112.0 * MM;
    let mut y = PAGE_H - 52.0 * MM;
    for (label, value) in facts {
        c.set_fill(GREY_TEXT);
        c.text(label_x, y, label, Weight::Regular, BODY, Align::Left);
        c.set_fill(0.0);
        // A long customer number must not run into its label.
        right_fit(c, y, value, Weight::Regular, BODY, right_w - 90.0);
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
        &format!("Abrechnungszeitraum {period}"),
        Weight::Regular,
        10.0,
        Align::Left,
    );
    y - 20.0
}

/// Lines of DIN 5008's address zone.
const ADDRESS_LINES: usize = 6;

/// The customer's name and address wrapped to `max` pt in the address zone's six lines, at
/// 10 pt, or 9 or 8 pt when they need it; only beyond that is the name's last line cut.
fn address_lines(c: &Canvas, name: &str, address: &[String], max: f32) -> (Vec<String>, f32) {
    let face = c.fonts.face(Weight::Regular);
    let wrapped = |size: f32| {
        let mut lines = wrap_face(name, face, size, max);
        lines.extend(address.iter().flat_map(|l| wrap_face(l, face, size, max)));
        lines
    };
    for size in [10.0, 9.0, 8.0] {
        let lines = wrapped(size);
        if lines.len() <= ADDRESS_LINES {
            return (lines, size);
        }
    }
    // Never seen in practice: the address keeps its lines, the name what is left.
    let address: Vec<String> = address
        .iter()
        .flat_map(|l| wrap_face(l, face, 8.0, max))
        .collect();
    let room = ADDRESS_LINES.saturating_sub(address.len()).max(1);
    let mut lines = wrap_lines(c, name, Weight::Regular, 8.0, max, room);
    lines.extend(address);
    (lines, 8.0)
}

/// `text` wrapped to `max` pt, at most `lines` lines (the last one is cut when drawn).
fn wrap_lines(c: &Canvas, text: &str, w: Weight, size: f32, max: f32, lines: usize) -> Vec<String> {
    let mut out = wrap_face(text, c.fonts.face(w), size, max);
    if out.len() > lines {
        let rest = out.split_off(lines - 1).join(" ");
        out.push(rest);
    }
    out
}

/// Right-aligned at the right margin, cut to `max` pt.
fn right_fit(c: &mut Canvas, y: f32, text: &str, w: Weight, size: f32, max: f32) {
    let width = c.width(text, w, size).min(max);
    c.text_fit(RIGHT - width, y, text, w, size, max);
}

/// Pages 2…: a slim running header.
fn continuation_header(c: &mut Canvas, doc: &EvnDocument) -> f32 {
    let h = &doc.header;
    let y = PAGE_H - 15.0 * MM;
    let right = format!(
        "Einzelverbindungsnachweis {} · Kundennummer {}",
        format::month_name(h.month),
        h.customer_id
    );
    let right_w = c.width(&right, Weight::Regular, BODY);
    c.text_fit(
        LEFT,
        y,
        &h.provider_name,
        Weight::Bold,
        9.0,
        RIGHT - LEFT - right_w - 12.0,
    );
    c.text(RIGHT, y, &right, Weight::Regular, BODY, Align::Right);
    c.rule(LEFT, RIGHT, y - 5.0, 0.5, GREY_RULE);
    CONTINUATION_TOP
}

/// The column titles; repeated at the top of every page the table runs over.
fn table_header(c: &mut Canvas, y: f32) -> f32 {
    c.band(y - 4.0, 14.0, GREY_HEAD);
    let b = Weight::Bold;
    c.text(COL_NR_R, y, "Nr.", b, BODY, Align::Right);
    c.text(COL_DATE, y, "Datum", b, BODY, Align::Left);
    c.text(COL_TIME, y, "Uhrzeit", b, BODY, Align::Left);
    c.text(COL_DUR_R, y, "Dauer", b, BODY, Align::Right);
    c.text(COL_NUMBER, y, "Zielrufnummer", b, BODY, Align::Left);
    c.text(COL_ZONE, y, "Tarifzone", b, BODY, Align::Left);
    c.text(COL_AMOUNT_R, y, "Betrag", b, BODY, Align::Right);
    y - 8.0
}

/// Lays the document out as a flow of items, wrapping paragraphs to the text width.
fn flow<'d>(doc: &'d EvnDocument, fonts: &Fonts) -> Vec<Item<'d>> {
    let mut items = Vec::with_capacity(doc.itemised() + 3 * doc.groups.len() + 40);
    let notices = doc.notices();
    let mut notices = notices.iter();
    let width = RIGHT - LEFT;
    if doc.itemised() == 0 {
        // The one sentence the customer needs comes first, not among the fine print.
        if let Some(first) = notices.next() {
            items.push(Item::Paragraph(wrap(first, fonts, 10.0, width), 10.0));
        }
        items.push(Item::Gap(8.0));
    }
    for group in doc.groups.iter().filter(|g| !g.rows.is_empty()) {
        let number = format::number(&group.calling_number);
        // A line heading keeps its first row; a one-row group keeps its subtotal too.
        let first_keep = ROW_H
            + if group.rows.len() == 1 {
                SUBTOTAL_H
            } else {
                0.0
            };
        items.push(Item::Line(format!("Anschluss {number}"), first_keep));
        let last = group.rows.len() - 1;
        for (i, row) in group.rows.iter().enumerate() {
            // The last row keeps its subtotal: never a lone sum at the top of a page.
            let keep = if i == last { SUBTOTAL_H } else { 0.0 };
            items.push(Item::Row(row, i % 2 == 1, keep));
        }
        items.push(Item::Subtotal(
            format!("Summe Anschluss {number}"),
            group.subtotal,
        ));
    }
    items.push(Item::Gap(10.0));
    // The summary is short: it stays on one page with its heading.
    let summary = [Item::ZoneHeader, Item::Total(0, Decimal::ZERO)]
        .iter()
        .map(Item::height)
        .sum::<f32>()
        + doc.zones.len() as f32 * ROW_H;
    let page_room = CONTINUATION_TOP - BOTTOM - 18.0;
    items.push(Item::Heading("Zusammenfassung", summary.min(page_room)));
    items.push(Item::ZoneHeader);
    items.extend(doc.zones.iter().map(Item::Zone));
    // The itemised calls only: nothing in the EVN may show that a counselling call was
    // made, neither a row nor a count or a sum (the notices say so).
    items.push(Item::Total(doc.itemised(), doc.total));
    items.push(Item::Gap(8.0));
    let notices: Vec<Item> = notices
        .map(|n| Item::Paragraph(wrap(n, fonts, NOTICE, width), NOTICE))
        .collect();
    let first = notices.first().map_or(0.0, Item::height);
    items.push(Item::Heading("Hinweise", first));
    for n in notices {
        items.push(n);
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
    items.push(Item::SmallPrint(wrap_face(
        &small,
        &fonts.regular,
        SMALL,
        width,
    )));
    items
}

fn wrap(text: &str, fonts: &Fonts, size: f32, max: f32) -> Vec<String> {
    wrap_face(text, &fonts.regular, size, max)
}

/// Greedy word wrap by measured width.
fn wrap_face(text: &str, face: &crate::fonts::Face, size: f32, max: f32) -> Vec<String> {
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
        Item::Line(text, _) => {
            c.text_fit(
                LEFT + 2.0,
                base + 5.0,
                text,
                Weight::Bold,
                9.0,
                RIGHT - LEFT - 4.0,
            );
        }
        Item::Row(row, shaded, _) => {
            if *shaded {
                c.band(base, ROW_H, GREY_ZEBRA);
            }
            let t = base + 3.0;
            let r = Weight::Regular;
            let local = format::Local::of(row.start_time);
            c.text(COL_NR_R, t, &row.nr.to_string(), r, BODY, Align::Right);
            c.text(COL_DATE, t, &local.date(), r, BODY, Align::Left);
            c.text(COL_TIME, t, &local.time(), r, BODY, Align::Left);
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
                COL_AMOUNT_R - COL_ZONE - AMOUNT_W,
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
            c.rule(COL_NUMBER, RIGHT, y - 1.0, 0.5, 0.4);
            let amount = format::money(*amount);
            // Right of the label: the amount, however wide it is.
            let amount_w = c.width(&amount, Weight::Bold, BODY).max(AMOUNT_W - 8.0);
            c.text(
                COL_AMOUNT_R - amount_w - 10.0,
                base + 5.0,
                label,
                Weight::Bold,
                BODY,
                Align::Right,
            );
            c.text(
                COL_AMOUNT_R,
                base + 5.0,
                &amount,
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
            c.band(base + 1.0, 14.0, GREY_HEAD);
            let (b, t) = (Weight::Bold, base + 5.0);
            c.text(LEFT + 4.0, t, "Tarifzone", b, BODY, Align::Left);
            c.text(COL_COUNT_R, t, "Anzahl", b, BODY, Align::Right);
            c.text(COL_AMOUNT_R, t, "Betrag", b, BODY, Align::Right);
        }
        Item::Zone(zone) => {
            let (r, t) = (Weight::Regular, base + 3.0);
            c.text_fit(
                LEFT + 4.0,
                t,
                &zone.label,
                r,
                BODY,
                COL_COUNT_R - LEFT - 4.0 - 40.0,
            );
            c.text(
                COL_COUNT_R,
                t,
                &zone.count.to_string(),
                r,
                BODY,
                Align::Right,
            );
            c.text(
                COL_AMOUNT_R,
                t,
                &format::money(zone.amount),
                r,
                BODY,
                Align::Right,
            );
        }
        Item::Total(count, amount) => {
            c.rule(LEFT, RIGHT, y - 1.0, 0.8, 0.0);
            let (b, t) = (Weight::Bold, base + 5.0);
            c.text(LEFT + 4.0, t, "Gesamtsumme (netto)", b, 9.5, Align::Left);
            c.text(COL_COUNT_R, t, &count.to_string(), b, 9.5, Align::Right);
            c.text(
                COL_AMOUNT_R,
                t,
                &format::money(*amount),
                b,
                9.5,
                Align::Right,
            );
        }
        Item::Paragraph(lines, size) => {
            let mut t = y;
            for line in lines {
                t -= size * 1.35;
                c.text(LEFT, t + 3.0, line, Weight::Regular, *size, Align::Left);
            }
        }
        Item::SmallPrint(lines) => {
            c.set_fill(0.4);
            let mut t = y;
            for line in lines {
                t -= SMALL * 1.4;
                c.text(LEFT, t + 2.0, line, Weight::Regular, SMALL, Align::Left);
            }
            c.set_fill(0.0);
        }
    }
    base
}

#[cfg(test)]
#[path = "pdf_tests.rs"]
mod tests;
