//! Sample EVNs for tests, the render benchmark (`examples/render_bench.rs`) and looking at
//! the layout (`examples/samples.rs`). Not part of the API the billing run uses.

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use crate::{EvnCall, EvnDocument, Header};

pub fn header() -> Header {
    Header {
        provider_name: "Mango Office GmbH".into(),
        provider_address: vec!["Musterstraße 1".into(), "10117 Berlin".into()],
        provider_contact: vec![
            "service@example.de".into(),
            "Tel. 030 1234567-0".into(),
            "USt-IdNr. DE123456789".into(),
        ],
        customer_id: "K1002".into(),
        customer_name: "Bäckerei Größler e.K.".into(),
        customer_address: vec!["Schloßallee 12".into(), "80331 München".into()],
        month: "2026-11".parse().unwrap(),
        created: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
        version: 1,
        config_version: "sha256:0123456789abcdef01234567".into(),
        counselling_version: "2026-Q4+sha256:0a1b2c3d4e5f".into(),
    }
}

fn call(line: &str, start: &str, dur: i64, number: &str, zone: &str, charge: &str) -> EvnCall {
    EvnCall {
        calling_number: line.into(),
        called_number: number.into(),
        start_time: DateTime::<Utc>::from_str(start).unwrap(),
        duration_s: dur,
        zone_label: zone.into(),
        charge: Decimal::from_str(charge).unwrap(),
        hidden: false,
        shortened: number.ends_with('x'),
    }
}

/// A small, realistic month: two lines, a shortened number, a DST-night call, a hidden
/// counselling call, a month-boundary call.
pub fn small_doc() -> EvnDocument {
    let mut hidden = call(
        "+4989123456",
        "2026-11-10T08:00:00Z",
        600,
        "+49307654321",
        "Festnetz national",
        "0.2900",
    );
    hidden.hidden = true;
    EvnDocument::build(
        header(),
        vec![
            call(
                "+4989123456",
                "2026-10-31T23:00:00Z",
                122,
                "+4915112345678",
                "Mobilfunk",
                "0.3030",
            ),
            call(
                "+4989123456",
                "2026-11-24T13:05:09Z",
                3725,
                "+33123456789",
                "Ausland EU",
                "18.0017",
            ),
            hidden,
            call(
                "+4989123457",
                "2026-11-02T07:59:01Z",
                61,
                "+4917612345xxx",
                "Mobilfunk",
                "0.1815",
            ),
            call(
                "+4989123457",
                "2026-11-30T22:59:59Z",
                1,
                "+491801234567",
                "Servicerufnummer",
                "0.1400",
            ),
            call(
                "+4989123457",
                "2026-11-15T10:00:00Z",
                30,
                "110",
                "Notruf",
                "0.0000",
            ),
        ],
        false,
        vec!["Festnetz national".into()],
    )
}

pub fn big_doc(rows: usize) -> EvnDocument {
    let zones = [
        "Mobilfunk",
        "Ausland EU",
        "Servicerufnummer",
        "Premiumdienst",
    ];
    let calls = (0..rows)
        .map(|i| {
            let start = DateTime::from_timestamp(1_793_487_600 + i as i64 * 450, 0).unwrap();
            EvnCall {
                calling_number: format!("+49301234{}", 50 + i % 3),
                called_number: format!("+4915{:09}", 100_000_000 + i * 7919 % 899_999_999),
                start_time: start,
                duration_s: (i as i64 * 37) % 4000,
                zone_label: zones[i % zones.len()].into(),
                charge: Decimal::new((i as i64 * 1237) % 50_000, 4),
                hidden: i % 97 == 0,
                shortened: false,
            }
        })
        .collect();
    EvnDocument::build(header(), calls, false, vec![])
}

/// Everything long at once: a long provider and customer name, long zone labels, foreign
/// and unsplit numbers, five-digit row numbers and large amounts, and characters outside
/// the font's base repertoire (`ł`, `ő`, `Ş`).
pub fn stress_doc() -> EvnDocument {
    let mut h = header();
    h.provider_name =
        "Überregionale Telekommunikationsdienstleistungsgesellschaft mbH & Co. KG".into();
    h.customer_name =
        "Großhandelsgesellschaft für Büro- und Kommunikationstechnik Łukasz Şahin Hőgyes GmbH"
            .into();
    h.customer_id = "K-2026-000000123456789".into();
    let long_zone = "Ausland Welt (Satellit, Inmarsat, Iridium und Seefunk)";
    let calls = (0..10_050)
        .map(|i| EvnCall {
            calling_number: if i < 10_000 {
                "+4922345678901".into()
            } else {
                "+861381234567".into()
            },
            called_number: match i % 4 {
                0 => "+8821612345678901".into(),
                1 => "+492234123456".into(),
                2 => "+3512123456xxx".into(),
                _ => "11833".into(),
            },
            start_time: DateTime::from_timestamp(1_793_487_600 + i * 250, 0).unwrap(),
            duration_s: 90_000 + i,
            zone_label: if i % 2 == 0 {
                long_zone.into()
            } else {
                "Mobilfunk".into()
            },
            charge: Decimal::new(999_999_999 + i, 4),
            hidden: false,
            shortened: i % 4 == 2,
        })
        .collect();
    EvnDocument::build(
        h,
        calls,
        true,
        vec!["Festnetz national".into(), "Mobilfunk".into()],
    )
}
