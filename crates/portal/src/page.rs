//! The download page (issue 11): German HTML, no external assets, one inline style allowed by
//! its hash in the Content-Security-Policy, a real table for screen readers. Pure: values in,
//! text out.
//!
//! Written by hand rather than with a template engine: the page is small, every value on it is
//! a validated id or month, a number, or a date this module formats, and the one text from a
//! file (a manifest's `created`) goes through [`esc`] like everything else.

use std::fmt::Write;

use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use sha2::{Digest, Sha256};

use crate::paths::{CustomerId, Format, Month};
use crate::store::CustomerVersions;

/// Times on the page are the customer's: German local time.
const ZONE: chrono_tz::Tz = chrono_tz::Europe::Berlin;

const MONTHS: [&str; 12] = [
    "Januar",
    "Februar",
    "März",
    "April",
    "Mai",
    "Juni",
    "Juli",
    "August",
    "September",
    "Oktober",
    "November",
    "Dezember",
];

/// The page's only style. System fonts (nothing to fetch), contrast above WCAG AA, a visible
/// focus ring, links as large touch targets; below 34em the table drops its outer padding
/// and lets the month wrap, so it fits a 390 px phone without scrolling sideways.
pub const CSS: &str = "\
:root{color-scheme:light;--ink:#1a1a1a;--muted:#555;--line:#d6d6d6;--accent:#0b4f8a;--bg:#f6f7f9}\
*{box-sizing:border-box}\
body{margin:0;background:var(--bg);color:var(--ink);font:16px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,\"Noto Sans\",\"DejaVu Sans\",sans-serif}\
main{max-width:52rem;margin:0 auto;padding:1.5rem 1rem 3rem}\
header{display:flex;flex-wrap:wrap;gap:.75rem 1.5rem;align-items:flex-start;justify-content:space-between;margin-bottom:1.25rem}\
h1{font-size:1.5rem;line-height:1.25;margin:0 0 .25rem}\
p{margin:.25rem 0}\
.muted{color:var(--muted)}\
.card{background:#fff;border:1px solid var(--line);border-radius:.5rem;overflow-x:auto}\
table{width:100%;border-collapse:collapse}\
caption{text-align:left;padding:.75rem 1rem;font-weight:600;border-bottom:1px solid var(--line)}\
th,td{padding:.6rem 1rem;text-align:left;vertical-align:middle;border-bottom:1px solid var(--line)}\
tbody tr:last-child>*{border-bottom:0}\
thead th{font-size:.875rem;color:var(--muted);font-weight:600;background:#fafafa}\
tbody th{font-weight:600}\
.old{color:var(--muted);font-weight:400}\
.tag{display:inline-block;margin-left:.35rem;padding:0 .4rem;border-radius:.25rem;background:#e3eef9;color:#0b3d6b;font-size:.8rem}\
.tag.was{background:#eee;color:#444}\
.dl{white-space:nowrap}\
a.btn{display:inline-block;min-width:3.2rem;padding:.4rem .6rem;margin:.1rem .25rem .1rem 0;border:1px solid var(--accent);border-radius:.35rem;color:var(--accent);text-align:center;text-decoration:none;font-weight:600}\
a.btn:hover{background:var(--accent);color:#fff}\
a:focus-visible,button:focus-visible{outline:3px solid #f2a900;outline-offset:2px}\
button{font:inherit;padding:.4rem .9rem;border:1px solid var(--muted);border-radius:.35rem;background:#fff;color:var(--ink);cursor:pointer}\
button:hover{background:#eee}\
.empty{padding:1rem}\
.note{margin-top:1rem;font-size:.9rem;color:var(--muted)}\
.vh{position:absolute;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0,0,0,0);white-space:nowrap;border:0}\
@media (max-width:34em){main{padding:1rem .5rem 2rem}h1{font-size:1.25rem}th,td{padding:.5rem .4rem}caption{padding:.6rem .5rem}td.dl{white-space:normal}a.btn{min-width:2.9rem;padding:.35rem .4rem}.tag{margin-left:0}}";

/// `Content-Security-Policy` of the HTML answers: nothing may load or run but the inline style
/// above (by its hash), forms only post here, and framing only by `frame_ancestors`.
pub fn content_security_policy(frame_ancestors: &str) -> String {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(CSS.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src 'self'; form-action 'self'; \
         base-uri 'none'; frame-ancestors {frame_ancestors}"
    )
}

/// HTML-escapes text for element content and double-quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// `November 2026`.
pub fn month_label(month: &Month) -> String {
    let (year, m) = month.as_str().split_at(4);
    let index: usize = m[1..].parse().expect("a validated month");
    format!("{} {year}", MONTHS[index - 1])
}

/// `01.12.2026` for the manifest's `2026-12-01`; anything else shown as it is (escaped later).
pub fn german_date(iso: &str) -> String {
    NaiveDate::parse_from_str(iso, "%Y-%m-%d")
        .map(|d| d.format("%d.%m.%Y").to_string())
        .unwrap_or_else(|_| iso.to_owned())
}

/// `24.11.2026 um 14:35 Uhr`, Berlin time.
pub fn german_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&ZONE)
        .format("%d.%m.%Y um %H:%M Uhr")
        .to_string()
}

/// The download URL of `version` (the plain one for the current version, as the JSON listing).
pub fn download_url(
    customer: &CustomerId,
    month: &Month,
    format: Format,
    version: u32,
    current: bool,
) -> String {
    let base = format!("/customers/{customer}/evn/{month}.{}", format.extension());
    if current {
        base
    } else {
        format!("{base}?version={version}")
    }
}

fn head(out: &mut String, title: &str) {
    write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"de\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n<title>{}</title>\n<style>{CSS}</style>\n\
         </head>\n<body>\n",
        esc(title)
    )
    .expect("write to String");
}

/// The list of a customer's EVNs: one row per month and version, newest first.
pub fn list_page(
    customer: &CustomerId,
    months: &[(Month, CustomerVersions)],
    session_ends: DateTime<Utc>,
    csrf: &str,
) -> String {
    let mut out = String::with_capacity(4096 + months.len() * 900);
    head(&mut out, "Einzelverbindungsnachweise");
    let w = &mut out;
    // `write!` into a String cannot fail.
    let _ = write!(
        w,
        "<main>\n<header>\n<div>\n<h1>Einzelverbindungsnachweise</h1>\n\
         <p>Kundennummer <strong>{c}</strong></p>\n</div>\n\
         <form method=\"post\" action=\"/portal/logout\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
         <button type=\"submit\">Abmelden</button>\n</form>\n</header>\n",
        c = esc(customer.as_str()),
        csrf = esc(csrf),
    );
    if months.is_empty() {
        w.push_str(
            "<div class=\"card\"><p class=\"empty\">Für Ihre Kundennummer liegen noch keine \
             Einzelverbindungsnachweise vor.</p></div>\n",
        );
    } else {
        let _ = write!(
            w,
            "<div class=\"card\">\n<table>\n<caption>Ihre Einzelverbindungsnachweise, \
             neuester Monat zuerst</caption>\n<thead>\n<tr><th scope=\"col\">Monat</th>\
             <th scope=\"col\">Version</th><th scope=\"col\">Erstellt am</th>\
             <th scope=\"col\">Dateien</th></tr>\n</thead>\n<tbody>\n"
        );
        for (month, versions) in months {
            let label = month_label(month);
            for info in versions.versions.iter().rev() {
                let current = info.version == versions.current;
                let (row_class, tag) = if current {
                    ("", "<span class=\"tag\">aktuell</span>")
                } else {
                    (" class=\"old\"", "<span class=\"tag was\">ersetzt</span>")
                };
                let created = match &info.created {
                    Some(d) => format!(
                        "<time datetime=\"{}\">{}</time>",
                        esc(d),
                        esc(&german_date(d))
                    ),
                    None => "<span aria-label=\"unbekannt\">–</span>".to_owned(),
                };
                let _ = write!(
                    w,
                    "<tr><th scope=\"row\"{row_class}>{label}</th><td>{v}{tag}</td><td>{created}</td><td class=\"dl\">",
                    label = esc(&label),
                    v = info.version,
                );
                for format in Format::ALL {
                    if info.sha256_of(format).is_none() {
                        continue;
                    }
                    let name = match format {
                        Format::Pdf => "PDF",
                        Format::Csv => "CSV",
                    };
                    let _ = write!(
                        w,
                        "<a class=\"btn\" href=\"{url}\">{name}<span class=\"vh\"> {label}, Version {v}</span></a>",
                        url = esc(&download_url(customer, month, format, info.version, current)),
                        label = esc(&label),
                        v = info.version,
                    );
                }
                let _ = w.write_str("</td></tr>\n");
            }
        }
        let _ = w.write_str("</tbody>\n</table>\n</div>\n");
    }
    let _ = write!(
        w,
        "<p class=\"note\">PDF zum Ansehen und Drucken, CSV zum Öffnen in einer \
         Tabellenkalkulation (Excel, LibreOffice). Frühere Versionen eines Monats bleiben \
         abrufbar; es gilt die aktuelle.</p>\n\
         <p class=\"note\">Ihre Sitzung endet am {}. Danach öffnen Sie diese Seite bitte erneut \
         über Ihr Kundenkonto.</p>\n</main>\n</body>\n</html>\n",
        esc(&german_time(session_ends))
    );
    out
}

/// A page that only says something: link expired, logged out, refused.
pub fn message_page(title: &str, text: &str) -> String {
    let mut out = String::with_capacity(4096);
    head(&mut out, title);
    let _ = write!(
        out,
        "<main>\n<h1>{}</h1>\n<p>{}</p>\n</main>\n</body>\n</html>\n",
        esc(title),
        esc(text)
    );
    out
}

pub const EXPIRED_TITLE: &str = "Link abgelaufen";
pub const EXPIRED_TEXT: &str = "Ihr Zugang zu den Einzelverbindungsnachweisen ist abgelaufen \
    oder ungültig. Bitte öffnen Sie die Einzelverbindungsnachweise erneut über Ihr Kundenkonto.";
pub const LOGGED_OUT_TITLE: &str = "Abgemeldet";
pub const LOGGED_OUT_TEXT: &str = "Sie haben sich abgemeldet. Um Ihre \
    Einzelverbindungsnachweise wieder abzurufen, öffnen Sie sie erneut über Ihr Kundenkonto.";
pub const REFUSED_TITLE: &str = "Abmeldung nicht möglich";
pub const REFUSED_TEXT: &str = "Diese Anfrage kam nicht von der Seite Ihrer \
    Einzelverbindungsnachweise. Bitte melden Sie sich dort über „Abmelden“ ab.";
pub const UNAVAILABLE_TITLE: &str = "Vorübergehend nicht verfügbar";
pub const UNAVAILABLE_TEXT: &str = "Ihre Einzelverbindungsnachweise können gerade nicht \
    angezeigt werden. Bitte versuchen Sie es in einigen Minuten erneut.";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::VersionInfo;

    #[test]
    fn german_formats() {
        assert_eq!(month_label(&Month::parse("2026-03").unwrap()), "März 2026");
        assert_eq!(
            month_label(&Month::parse("2026-12").unwrap()),
            "Dezember 2026"
        );
        assert_eq!(german_date("2026-12-01"), "01.12.2026");
        assert_eq!(german_date("<b>"), "<b>");
        // 23:30 UTC on 31 October is already November in Berlin (CET, +1).
        let t: DateTime<Utc> = "2026-10-31T23:30:00Z".parse().unwrap();
        assert_eq!(german_time(t), "01.11.2026 um 00:30 Uhr");
        let summer: DateTime<Utc> = "2026-07-01T12:00:00Z".parse().unwrap();
        assert_eq!(german_time(summer), "01.07.2026 um 14:00 Uhr");
    }

    #[test]
    fn escaping() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn the_csp_allows_exactly_the_inline_style() {
        let csp = content_security_policy("'none'");
        // The hash of the exact bytes between <style> and </style>.
        let page = message_page("T", "x");
        let style = page
            .split("<style>")
            .nth(1)
            .unwrap()
            .split("</style>")
            .next()
            .unwrap();
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(style));
        assert!(csp.contains(&format!("style-src 'sha256-{hash}'")), "{csp}");
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        assert!(csp.ends_with("frame-ancestors 'none'"), "{csp}");
        assert!(!page.contains("<script"), "no script anywhere");
    }

    fn v(version: u32, created: Option<&str>, csv: bool) -> VersionInfo {
        VersionInfo {
            version,
            sha256: "a".repeat(64),
            csv_sha256: csv.then(|| "b".repeat(64)),
            created: created.map(str::to_owned),
        }
    }

    #[test]
    fn list_page_has_a_row_per_version_with_its_links() {
        let c = CustomerId::parse("K1001").unwrap();
        let months = vec![
            (
                Month::parse("2026-11").unwrap(),
                CustomerVersions {
                    current: 2,
                    versions: vec![
                        v(1, Some("2026-12-01"), false),
                        v(2, Some("2026-12-03"), true),
                    ],
                },
            ),
            (
                Month::parse("2026-10").unwrap(),
                CustomerVersions {
                    current: 1,
                    versions: vec![v(1, Some("<script>"), true)],
                },
            ),
        ];
        let ends: DateTime<Utc> = "2026-12-05T13:00:00Z".parse().unwrap();
        let html = list_page(&c, &months, ends, "tok\"en");
        assert!(
            html.starts_with("<!DOCTYPE html>\n<html lang=\"de\">"),
            "{html}"
        );
        for needle in [
            "<th scope=\"col\">Monat</th>",
            "<th scope=\"row\">November 2026</th><td>2<span class=\"tag\">aktuell</span></td><td><time datetime=\"2026-12-03\">03.12.2026</time></td>",
            "href=\"/customers/K1001/evn/2026-11.pdf\">PDF<span class=\"vh\"> November 2026, Version 2</span>",
            "href=\"/customers/K1001/evn/2026-11.csv\">CSV",
            "href=\"/customers/K1001/evn/2026-11.pdf?version=1\">PDF",
            "href=\"/customers/K1001/evn/2026-10.csv\">CSV",
            "<time datetime=\"&lt;script&gt;\">&lt;script&gt;</time>",
            "name=\"csrf\" value=\"tok&quot;en\"",
            "endet am 05.12.2026 um 14:00 Uhr",
        ] {
            assert!(html.contains(needle), "{needle} in\n{html}");
        }
        // Version 1 of November predates CSVs: no CSV link for it.
        assert!(!html.contains("2026-11.csv?version=1"), "{html}");
        // Newest first: November v2, November v1, October v1.
        let nov2 = html.find("2026-11.pdf\"").unwrap();
        let nov1 = html.find("2026-11.pdf?version=1").unwrap();
        let oct = html.find("2026-10.pdf").unwrap();
        assert!(nov2 < nov1 && nov1 < oct);
        let empty = list_page(&c, &[], ends, "x");
        assert!(empty.contains("noch keine"), "{empty}");
        assert!(!empty.contains("<table"), "{empty}");
    }
}
