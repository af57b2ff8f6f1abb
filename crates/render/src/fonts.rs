//! The two embedded faces (DejaVu Sans, regular and bold): parsed once per process, measured
//! from lookup tables, and subset once per glyph repertoire rather than once per EVN.
//!
//! Why not let printpdf subset each document: subsetting, re-parsing the subset and deflating
//! the font program cost ~4 ms per EVN, more than drawing a page. Nearly every EVN uses the
//! same characters (digits, German letters, the fixed labels), so each face is subset to a
//! fixed repertoire ([`BASE_REGULAR`], [`BASE_BOLD`]) plus whatever else a document needs; the subset, keyed by
//! that extra set, is cached and handed to printpdf for embedding as is.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use printpdf::ParsedFont;

use crate::pdf::RenderError;

const REGULAR_TTF: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
const BOLD_TTF: &[u8] = include_bytes!("../fonts/DejaVuSans-Bold.ttf");

/// Codepoints below this get table lookups (Latin, punctuation, `€` at U+20AC).
const TABLE_LEN: usize = 0x2200;

/// Characters every regular subset contains: letters, digits, the punctuation of addresses
/// and e-mail, German letters, and the typography the layout uses (`–`, `·`, `…`, `€`,
/// `„“`). A document whose text stays inside it (nearly all) shares one cached subset.
/// Rarer characters (`é` in a customer's name) are added per document: a separate subset.
pub(crate) const BASE_REGULAR: &str = concat!(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    " !&'()+,-./:;?@",
    "ÄÖÜäöüß€–·…„“",
);

/// Bold is only used for fixed headings, calling lines, sums and the provider's name (which
/// is the same for a whole run): its base is what the fixed headings and the numbers need.
pub(crate) const BASE_BOLD: &str = concat!(
    "Einzelverbindungsnachweis Nr. Datum Uhrzeit Dauer Zielrufnummer Tarifzone Betrag ",
    "Anschluss (Fortsetzung) Summe Zusammenfassung Anzahl Gesamtsumme (netto) Hinweise ",
    "0123456789.,:+-x€…",
);

/// Subsets kept per face; a run sees a handful (one per unusual name), so this only bounds
/// a pathological input.
const CACHE_MAX: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Weight {
    Regular,
    Bold,
}

/// A full face: the font printpdf parses, plus per-codepoint advance and glyph tables.
pub(crate) struct Face {
    font: ParsedFont,
    /// Advance per codepoint below [`TABLE_LEN`], in 1/1000 em.
    widths: Vec<f32>,
    /// Whether the face has a glyph, per codepoint below [`TABLE_LEN`].
    has: Vec<bool>,
    /// The repertoire every subset of this face holds, and a lookup table of it.
    base: &'static str,
    in_base: Vec<bool>,
    upem: f32,
    cache: Mutex<HashMap<String, Arc<Subset>>>,
}

/// A face subset to one repertoire, ready to embed; codes are the subset's glyph ids, which
/// printpdf's `/W` and `/ToUnicode` (built from this same font) use too.
pub(crate) struct Subset {
    pub font: ParsedFont,
    /// Every character of the repertoire with its glyph id in the subset, in char order:
    /// also the text printpdf is shown to build `/W` and `/ToUnicode` for all of them.
    pub chars: String,
    codes_table: Vec<u16>,
    codes_other: HashMap<char, u16>,
}

impl Subset {
    /// The Identity-H code of `c`; 0 (.notdef) for a character the face lacks.
    pub fn code(&self, c: char) -> u16 {
        let i = c as usize;
        if i < TABLE_LEN {
            self.codes_table[i]
        } else {
            self.codes_other.get(&c).copied().unwrap_or(0)
        }
    }
}

impl Face {
    fn load(bytes: &[u8], name: &'static str, base: &'static str) -> Result<Face, RenderError> {
        let mut warnings = Vec::new();
        let bytes = crate::slim::slim(bytes);
        let font =
            ParsedFont::from_bytes(&bytes, 0, &mut warnings).ok_or(RenderError::Font(name))?;
        let upem = f32::from(font.pdf_font_metrics.units_per_em.max(1));
        let widths = (0..TABLE_LEN as u32)
            .map(|c| advance(&font, c, upem))
            .collect();
        let has = (0..TABLE_LEN as u32)
            .map(|c| font.lookup_glyph_index(c).is_some_and(|g| g != 0))
            .collect();
        let mut in_base = vec![false; TABLE_LEN];
        for c in base.chars() {
            in_base[c as usize] = true;
        }
        Ok(Face {
            font,
            widths,
            has,
            base,
            in_base,
            upem,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Width of `text` in pt at `size`.
    pub fn width(&self, text: &str, size: f32) -> f32 {
        let units: f32 = text
            .chars()
            .map(|c| match self.widths.get(c as usize) {
                Some(w) => *w,
                None => advance(&self.font, c as u32, self.upem),
            })
            .sum();
        units * size / 1000.0
    }

    /// Whether the face can show `c` (else it prints as .notdef).
    pub fn has(&self, c: char) -> bool {
        match self.has.get(c as usize) {
            Some(h) => *h,
            None => self
                .font
                .lookup_glyph_index(c as u32)
                .is_some_and(|g| g != 0),
        }
    }

    /// Characters of `texts` outside the base repertoire that the face can show: the key
    /// of the subset a document needs.
    pub fn extra_chars<'a>(&self, texts: impl IntoIterator<Item = &'a str>) -> BTreeSet<char> {
        let mut out = BTreeSet::new();
        for t in texts {
            for c in t.chars() {
                if !self.in_base.get(c as usize).copied().unwrap_or(false) && self.has(c) {
                    out.insert(c);
                }
            }
        }
        out
    }

    /// The subset holding the base repertoire and `extra`.
    pub fn subset(&self, extra: &BTreeSet<char>) -> Result<Arc<Subset>, RenderError> {
        let key: String = extra.iter().collect();
        if let Some(s) = self.cache.lock().expect("font cache").get(&key) {
            return Ok(s.clone());
        }
        // Built outside the lock: two threads may build the same subset once each, which is
        // cheaper than serialising every render behind one subsetting.
        let subset = Arc::new(self.build_subset(extra)?);
        let mut cache = self.cache.lock().expect("font cache");
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, subset.clone());
        Ok(subset)
    }

    fn build_subset(&self, extra: &BTreeSet<char>) -> Result<Subset, RenderError> {
        let chars: BTreeSet<char> = self.base.chars().chain(extra.iter().copied()).collect();
        // Original glyph id → the character it shows; characters the face lacks are left
        // out (they print as .notdef, as they would in any PDF writer).
        let mut glyphs: BTreeMap<u16, String> = BTreeMap::new();
        for &c in &chars {
            if let Some(g) = self.font.lookup_glyph_index(c as u32).filter(|g| *g != 0) {
                glyphs.entry(g).or_insert_with(|| c.to_string());
            }
        }
        let sub = printpdf::subset_font(&self.font, &glyphs).map_err(RenderError::Subset)?;
        let mut warnings = Vec::new();
        let font = ParsedFont::from_bytes(&sub.bytes, 0, &mut warnings)
            .ok_or_else(|| RenderError::Subset("the font subset does not parse".to_owned()))?;
        let mut codes_table = vec![0u16; TABLE_LEN];
        let mut codes_other = HashMap::new();
        let mut shown = String::new();
        for &c in &chars {
            let Some(orig) = self.font.lookup_glyph_index(c as u32).filter(|g| *g != 0) else {
                continue;
            };
            let Some((code, _)) = sub.glyph_mapping.get(&orig) else {
                continue;
            };
            // printpdf derives /W and /ToUnicode by looking characters up in the subset's
            // own cmap: the codes written into the content stream must be the same ones.
            if font.lookup_glyph_index(c as u32) != Some(*code) {
                return Err(RenderError::Subset(format!(
                    "subset cmap disagrees for {c:?}"
                )));
            }
            if (c as usize) < TABLE_LEN {
                codes_table[c as usize] = *code;
            } else {
                codes_other.insert(c, *code);
            }
            shown.push(c);
        }
        Ok(Subset {
            font,
            chars: shown,
            codes_table,
            codes_other,
        })
    }
}

fn advance(font: &ParsedFont, c: u32, upem: f32) -> f32 {
    // A character the font lacks prints as .notdef, about 0.6 em wide.
    font.lookup_glyph_index(c).map_or(600.0, |g| {
        f32::from(font.get_horizontal_advance(g)) * 1000.0 / upem
    })
}

pub(crate) struct Fonts {
    pub regular: Face,
    pub bold: Face,
}

impl Fonts {
    pub fn face(&self, w: Weight) -> &Face {
        match w {
            Weight::Regular => &self.regular,
            Weight::Bold => &self.bold,
        }
    }
}

/// The faces, parsed once per process and shared by every render (and thread).
pub(crate) fn fonts() -> Result<&'static Fonts, RenderError> {
    static FONTS: OnceLock<Result<Fonts, &'static str>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            let load = |b, n, base| Face::load(b, n, base).map_err(|_| n);
            Ok(Fonts {
                regular: load(REGULAR_TTF, "DejaVuSans.ttf", BASE_REGULAR)?,
                bold: load(BOLD_TTF, "DejaVuSans-Bold.ttf", BASE_BOLD)?,
            })
        })
        .as_ref()
        .map_err(|name| RenderError::Font(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_codes_agree_with_the_subset_cmap_and_are_cached() {
        let f = fonts().unwrap();
        for w in [Weight::Regular, Weight::Bold] {
            let face = f.face(w);
            let extra = face.extra_chars(["Łódź Şahin Øresund", "\u{4E2D}"]);
            if w == Weight::Regular {
                assert_eq!(extra.iter().collect::<String>(), "ØóŁŞź");
            }
            let s = face.subset(&extra).unwrap();
            for c in face.base.chars().chain(extra.iter().copied()) {
                assert_ne!(s.code(c), 0, "{c:?} missing");
            }
            // A character DejaVu lacks prints as .notdef rather than failing the EVN.
            assert_eq!(s.code('\u{4E2D}'), 0);
            assert!(Arc::ptr_eq(&s, &face.subset(&extra).unwrap()));
        }
    }
}
