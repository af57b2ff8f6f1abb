//! Slims the embedded TrueType fonts before printpdf subsets them: drops the hinting programs
//! (`cvt `, `fpgm`, `prep`: screen hinting, useless in a PDF that is printed or zoomed) and the
//! long licence text from the `name` table (record 13; the copyright notice and the licence URL,
//! records 0 and 14, stay, and `fonts/LICENSE` ships in full). Saves about 10 KB per EVN, which
//! is most of what a short EVN weighs.

/// Tables the PDF never needs.
const DROP: [&[u8; 4]; 6] = [b"cvt ", b"fpgm", b"prep", b"hdmx", b"LTSH", b"VDMX"];
/// `name` records kept: copyright, family, style, id, full name, version, PostScript name,
/// licence URL.
const KEEP_NAMES: [u16; 8] = [0, 1, 2, 3, 4, 5, 6, 14];

/// Returns a valid sfnt without the dropped tables, or the input unchanged if it cannot be
/// read as one (the renderer then embeds the original, only larger).
pub(crate) fn slim(font: &[u8]) -> Vec<u8> {
    try_slim(font).unwrap_or_else(|| font.to_vec())
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn try_slim(font: &[u8]) -> Option<Vec<u8>> {
    let num_tables = usize::from(u16_at(font, 4)?);
    let mut tables: Vec<([u8; 4], Vec<u8>)> = Vec::with_capacity(num_tables);
    for i in 0..num_tables {
        let rec = 12 + 16 * i;
        let tag: [u8; 4] = font.get(rec..rec + 4)?.try_into().ok()?;
        let offset = u32_at(font, rec + 8)? as usize;
        let length = u32_at(font, rec + 12)? as usize;
        let data = font.get(offset..offset + length)?;
        if DROP.iter().any(|d| **d == tag) {
            continue;
        }
        let data = if &tag == b"name" {
            slim_name(data)?
        } else {
            data.to_vec()
        };
        tables.push((tag, data));
    }
    let n = tables.len();
    let entry_selector = (usize::BITS - 1 - n.leading_zeros()) as u16;
    let search_range = (1u16 << entry_selector) * 16;
    let mut out = Vec::with_capacity(font.len());
    out.extend_from_slice(&font[..4]);
    out.extend_from_slice(&(n as u16).to_be_bytes());
    out.extend_from_slice(&search_range.to_be_bytes());
    out.extend_from_slice(&entry_selector.to_be_bytes());
    out.extend_from_slice(&((n as u16) * 16 - search_range).to_be_bytes());
    let mut offset = 12 + 16 * n;
    for (tag, data) in &tables {
        out.extend_from_slice(tag);
        out.extend_from_slice(&checksum(data).to_be_bytes());
        out.extend_from_slice(&(offset as u32).to_be_bytes());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        offset += data.len().next_multiple_of(4);
    }
    for (_, data) in &tables {
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    Some(out)
}

fn checksum(data: &[u8]) -> u32 {
    data.chunks(4).fold(0u32, |sum, c| {
        let mut word = [0u8; 4];
        word[..c.len()].copy_from_slice(c);
        sum.wrapping_add(u32::from_be_bytes(word))
    })
}

/// Rewrites a format-0 `name` table keeping only [`KEEP_NAMES`].
fn slim_name(name: &[u8]) -> Option<Vec<u8>> {
    if u16_at(name, 0)? != 0 {
        return Some(name.to_vec());
    }
    let count = usize::from(u16_at(name, 2)?);
    let storage = usize::from(u16_at(name, 4)?);
    let mut records = Vec::new();
    let mut strings = Vec::new();
    for i in 0..count {
        let rec = 6 + 12 * i;
        let name_id = u16_at(name, rec + 6)?;
        if !KEEP_NAMES.contains(&name_id) {
            continue;
        }
        let len = usize::from(u16_at(name, rec + 8)?);
        let off = usize::from(u16_at(name, rec + 10)?);
        let s = name.get(storage + off..storage + off + len)?;
        records.extend_from_slice(name.get(rec..rec + 8)?);
        records.extend_from_slice(&(len as u16).to_be_bytes());
        records.extend_from_slice(&u16::try_from(strings.len()).ok()?.to_be_bytes());
        strings.extend_from_slice(s);
    }
    let kept = records.len() / 12;
    let mut out = Vec::with_capacity(6 + records.len() + strings.len());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&(kept as u16).to_be_bytes());
    out.extend_from_slice(&((6 + records.len()) as u16).to_be_bytes());
    out.extend_from_slice(&records);
    out.extend_from_slice(&strings);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slimmed_font_still_parses_and_is_smaller() {
        let original = include_bytes!("../fonts/DejaVuSans.ttf");
        let slimmed = slim(original);
        assert!(slimmed.len() + 10_000 < original.len(), "{}", slimmed.len());
        let mut warnings = Vec::new();
        let font = printpdf::ParsedFont::from_bytes(&slimmed, 0, &mut warnings).unwrap();
        assert!(font.lookup_glyph_index('€' as u32).is_some());
        assert!(font.lookup_glyph_index('ß' as u32).is_some());
    }
}
