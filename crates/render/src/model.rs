//! The EVN as a pure layout model: what one customer's itemised bill for one month says,
//! before any page is drawn. No IO, no clock: the billing run passes everything in.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use evn_rating::BillingMonth;
use sha2::{Digest, Sha256};

/// The summary line for calls billed but not itemised.
pub const NOT_ITEMISED: &str = "Nicht einzeln aufgeführte Verbindungen";

/// Bump when the layout changes in a way that should count as a new EVN on re-run.
const LAYOUT_VERSION: &str = "evn-layout-2";

/// Everything printed in the header and the small print of an EVN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub provider_name: String,
    /// Address lines, top to bottom.
    pub provider_address: Vec<String>,
    /// Contact lines (e-mail, phone, web, VAT id), already labelled.
    pub provider_contact: Vec<String>,
    pub customer_id: String,
    pub customer_name: String,
    /// Street, then `postcode city`.
    pub customer_address: Vec<String>,
    pub month: BillingMonth,
    /// "Erstellt am": passed in, so the same input gives the same document.
    pub created: NaiveDate,
    /// The EVN's version number for this customer and month (1, then 2 after late CDRs, …).
    pub version: u32,
    /// The configuration version the bill was made from (TKG § 63: auditable).
    pub config_version: String,
    /// The counselling list version used to hide rows (BNetzA: recorded in every EVN).
    pub counselling_version: String,
}

/// One billed call as the EVN needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvnCall {
    pub calling_number: String,
    /// As stored: already shortened to `…xxx` where the customer asked.
    pub called_number: String,
    pub start_time: DateTime<Utc>,
    pub duration_s: i64,
    /// The German zone label (`Mobilfunk`), or the zone id where none is configured.
    pub zone_label: String,
    /// Four decimals, as rated.
    pub charge: Decimal,
    /// A counselling-service call: never printed, but its charge counts in every sum.
    pub hidden: bool,
    pub shortened: bool,
}

/// One printed connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Running number over the *printed* rows only, so hidden rows leave no gap.
    pub nr: usize,
    pub start_time: DateTime<Utc>,
    pub duration_s: i64,
    pub called_number: String,
    pub zone_label: String,
    pub charge: Decimal,
}

/// The connections of one calling line, with its subtotal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineGroup {
    pub calling_number: String,
    pub rows: Vec<Row>,
    /// Exact (four decimals) sum of the printed rows. Hidden calls are deliberately *not*
    /// attributed to a line: on a business EVN the line is a person, and a subtotal that does
    /// not match its rows would point at whoever called a counselling service.
    pub subtotal: Decimal,
}

/// Count and amount of one tariff zone (printed rows), or of the calls not itemised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSum {
    pub label: String,
    pub count: usize,
    pub amount: Decimal,
}

/// One customer's EVN for one month, ready to lay out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvnDocument {
    pub header: Header,
    /// Sorted by calling number; rows inside by start time.
    pub groups: Vec<LineGroup>,
    /// Sorted by label; printed rows only.
    pub zones: Vec<ZoneSum>,
    /// Billed calls that are not itemised (counselling services, calls after the EVN was
    /// cancelled): for the billing run's own record only. The EVN shows nothing of them, not
    /// even a count or a sum: a line "not itemised: 2" told the reader of a business line's EVN
    /// (the employer) that two counselling calls were made, which TDDDG § 11 forbids.
    pub not_itemised: ZoneSum,
    /// Exact sum of the itemised calls (four decimals), what the EVN prints as its total;
    /// rounded to cents only when printed.
    pub total: Decimal,
    /// Calls billed, hidden ones included (the billing run's record, not printed).
    pub billed: usize,
    /// Some printed number is shortened, or the customer asked for shortening this month.
    pub shortened: bool,
    /// Labels of the zones the customer's flatrate covered this month (not itemised), each
    /// with the days it did, when a plan change within the month made that less than the whole
    /// month (empty: all of it): the notice must not say landline calls are not listed above
    /// landline rows from after the change.
    pub flatrate_zones: Vec<(String, Vec<DayRange>)>,
    /// The days of the month on which the customer asked for shortened numbers, when the
    /// request began, ended or both within it (empty: the whole month or not at all): rows
    /// are shortened by the setting at their start, and the notice names the days.
    pub shortened_periods: Vec<DayRange>,
    /// The customer cancelled the EVN from this day (Europe/Berlin) within the month: calls
    /// from then on are among the not-itemised ones, and a notice says why.
    pub cancelled_from: Option<NaiveDate>,
}

/// Days of a month, first and last included.
pub type DayRange = (NaiveDate, NaiveDate);

/// " bis zum 09.11.2026 und ab dem 20.11.2026" (or "vom … bis zum …" for days inside the
/// month) for days within `month`; empty when they are the whole month (or none are given).
fn days(periods: &[DayRange], month: BillingMonth) -> String {
    let (first, last) = (month.first_day(), month.last_day());
    let date = crate::format::date;
    let parts: Vec<String> = periods
        .iter()
        .map(|&(a, b)| match (a <= first, b >= last) {
            (true, true) => String::new(),
            (true, false) => format!("bis zum {}", date(b)),
            (false, true) => format!("ab dem {}", date(a)),
            (false, false) => format!("vom {} bis zum {}", date(a), date(b)),
        })
        .collect();
    match parts.as_slice() {
        [] => String::new(),
        [one] if one.is_empty() => String::new(),
        [init @ .., last] => {
            let head = init.join(", ");
            if head.is_empty() {
                format!(" {last}")
            } else {
                format!(" {head} und {last}")
            }
        }
    }
}

impl EvnDocument {
    /// Groups and sums the calls. `shortened_setting`: the customer asked for shortened numbers
    /// at some point in the month; `flatrate_zones`: labels of zones their plan(s) covered.
    pub fn build(
        header: Header,
        mut calls: Vec<EvnCall>,
        shortened_setting: bool,
        flatrate_zones: Vec<String>,
    ) -> EvnDocument {
        // Stable: the caller's order (start time, then switch and CDR id) breaks ties.
        calls.sort_by(|a, b| {
            (a.calling_number.as_str(), a.start_time)
                .cmp(&(b.calling_number.as_str(), b.start_time))
        });
        let mut groups: Vec<LineGroup> = Vec::new();
        let mut zones: BTreeMap<String, ZoneSum> = BTreeMap::new();
        let mut total = Decimal::ZERO;
        let mut shortened = shortened_setting;
        let mut not_itemised = ZoneSum {
            label: NOT_ITEMISED.to_owned(),
            count: 0,
            amount: Decimal::ZERO,
        };
        let mut nr = 0;
        let billed = calls.len();
        for call in calls {
            if !call.hidden
                && groups
                    .last()
                    .is_none_or(|g| g.calling_number != call.calling_number)
            {
                groups.push(LineGroup {
                    calling_number: call.calling_number.clone(),
                    rows: Vec::new(),
                    subtotal: Decimal::ZERO,
                });
            }
            if call.hidden {
                not_itemised.count += 1;
                not_itemised.amount += call.charge;
                continue;
            }
            total += call.charge;
            let group = groups.last_mut().expect("pushed above");
            group.subtotal += call.charge;
            let zone = zones
                .entry(call.zone_label.clone())
                .or_insert_with(|| ZoneSum {
                    label: call.zone_label.clone(),
                    count: 0,
                    amount: Decimal::ZERO,
                });
            zone.count += 1;
            zone.amount += call.charge;
            shortened |= call.shortened;
            nr += 1;
            group.rows.push(Row {
                nr,
                start_time: call.start_time,
                duration_s: call.duration_s,
                called_number: call.called_number,
                zone_label: call.zone_label,
                charge: call.charge,
            });
        }
        EvnDocument {
            header,
            groups,
            zones: zones.into_values().collect(),
            not_itemised,
            total,
            billed,
            shortened,
            flatrate_zones: flatrate_zones
                .into_iter()
                .map(|label| (label, Vec::new()))
                .collect(),
            cancelled_from: None,
            shortened_periods: Vec::new(),
        }
    }

    /// Rows printed in the table.
    pub fn itemised(&self) -> usize {
        self.groups.iter().map(|g| g.rows.len()).sum()
    }

    /// SHA-256 over everything the customer reads except the creation date, the version number
    /// and the config/list versions in the small print. The billing run compares it to decide
    /// whether a re-run made a new EVN: an unrelated config change (another customer added)
    /// must not turn every EVN into "version 2" of the same content.
    pub fn content_digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let mut put = |s: &str| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        let hd = &self.header;
        put(LAYOUT_VERSION);
        put(&hd.provider_name);
        hd.provider_address.iter().for_each(|l| put(l));
        put("|");
        hd.provider_contact.iter().for_each(|l| put(l));
        put("|");
        put(&hd.customer_id);
        put(&hd.customer_name);
        hd.customer_address.iter().for_each(|l| put(l));
        put("|");
        put(&hd.month.to_string());
        for g in &self.groups {
            put(&g.calling_number);
            put(&g.subtotal.normalize().to_string());
            for r in &g.rows {
                put(&format!(
                    "{}|{}|{}|{}|{}|{}",
                    r.nr,
                    r.start_time.timestamp_micros(),
                    r.duration_s,
                    r.called_number,
                    r.zone_label,
                    r.charge.normalize()
                ));
            }
        }
        put("|");
        for z in &self.zones {
            put(&format!("{}|{}|{}", z.label, z.count, z.amount.normalize()));
        }
        // Not the hidden calls: a late counselling call must not make a new version, which
        // would tell by its mere existence that one was made.
        put(&self.total.normalize().to_string());
        self.notices().iter().for_each(|n| put(n));
        h.finalize().into()
    }

    /// The notices under the summary, in print order.
    pub fn notices(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.itemised() == 0 {
            // One wording whether or not anything was billed: "nothing chargeable" next to a
            // non-zero total would tell that every call went to a counselling service.
            out.push(
                "Im Abrechnungszeitraum sind keine Verbindungen angefallen, die einzeln \
                 aufzuführen sind."
                    .to_owned(),
            );
        }
        let month = self.header.month;
        if self.shortened {
            let when = days(&self.shortened_periods, month);
            out.push(format!(
                "Auf Ihren Wunsch sind die Zielrufnummern{when} um die letzten drei Ziffern \
                 gekürzt (z. B. 0151 12345xxx); Kurzwahlnummern öffentlicher Dienste wie 110 \
                 oder 116117 bleiben vollständig."
            ));
        }
        if !self.flatrate_zones.is_empty() {
            out.push(format!(
                "Verbindungen, die mit Ihrem Pauschaltarif (Flatrate) abgegolten sind ({}), \
                 werden nicht einzeln aufgeführt.",
                self.flatrate_zones
                    .iter()
                    .map(|(label, periods)| format!("{label}{}", days(periods, month)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some(day) = self.cancelled_from {
            out.push(format!(
                "Sie haben den Einzelverbindungsnachweis zum {} abbestellt: Verbindungen ab \
                 diesem Tag werden nicht aufgeführt; ihre Entgelte sind im Rechnungsbetrag \
                 enthalten.",
                crate::format::date(day)
            ));
        }
        // Printed on every EVN, not only when a row was hidden: a notice that appeared only
        // then would itself reveal that a counselling service was called (TDDDG § 11).
        out.push(
            "Verbindungen zu Anschlüssen von Personen, Behörden und Organisationen in sozialen \
             oder kirchlichen Bereichen, die grundsätzlich anonym bleibenden Anrufern ganz oder \
             überwiegend telefonische Beratung in seelischen oder sozialen Notlagen anbieten, \
             werden nicht aufgeführt, auch nicht in Anzahl und Summen dieses Nachweises; ihre \
             Entgelte sind im Rechnungsbetrag enthalten."
                .to_owned(),
        );
        if let Some(day) = self.repeated_hour_day() {
            out.push(format!(
                "Uhrzeiten sind deutsche Zeit. Am {day} wurde die Stunde von 2 bis 3 Uhr bei der \
                 Umstellung auf die Normalzeit zweimal durchlaufen: „A“ kennzeichnet Uhrzeiten \
                 im ersten Durchlauf (Sommerzeit, MESZ), „B“ im zweiten (Normalzeit, MEZ)."
            ));
        }
        if self.rounding_shows() {
            out.push(
                "Die Beträge je Verbindung sind auf volle Cent gerundet; Summen werden aus den \
                 genauen Beträgen (vier Nachkommastellen) gebildet und können daher von der \
                 Summe der gerundeten Einzelbeträge abweichen."
                    .to_owned(),
            );
        }
        if self.itemised() > 0 {
            // Start and duration are measured from different moments (DOMAIN: durations run
            // from the answer); said, so that nobody adds them up to an end time and doubts
            // the bill by the ringing seconds.
            out.push(
                "Die Uhrzeit ist der Beginn des Verbindungsaufbaus, die Dauer die Gesprächsdauer \
                 ab der Annahme des Anrufs."
                    .to_owned(),
            );
        }
        out.push("Alle Beträge sind Nettobeträge in Euro.".to_owned());
        out
    }

    /// The date (`25.10.2026`) of the repeated autumn hour if a listed call started in it,
    /// so that the A and B after its times ([`crate::format::Local::time`]) are explained
    /// where they appear, and only there.
    fn repeated_hour_day(&self) -> Option<String> {
        self.groups
            .iter()
            .flat_map(|g| &g.rows)
            .map(|r| crate::format::Local::of(r.start_time))
            .find(|l| l.repeated_hour().is_some())
            .map(|l| l.date())
    }

    /// Whether a printed sum differs from the sum of the printed amounts it covers: charges
    /// keep four decimals and are summed exactly (DOMAIN.md), so a reader adding up the cents
    /// can be a cent or more off, and is told why rather than left to doubt the bill. Printed
    /// only then, so that an EVN whose sums add up reads (and hashes) as before.
    fn rounding_shows(&self) -> bool {
        let cents = crate::format::cents;
        let groups = self
            .groups
            .iter()
            .any(|g| cents(g.subtotal) != g.rows.iter().map(|r| cents(r.charge)).sum::<Decimal>());
        let zones = self.zones.iter().any(|z| {
            let printed: Decimal = self
                .groups
                .iter()
                .flat_map(|g| &g.rows)
                .filter(|r| r.zone_label == z.label)
                .map(|r| cents(r.charge))
                .sum();
            cents(z.amount) != printed
        });
        let parts = self.zones.iter().map(|z| cents(z.amount)).sum::<Decimal>();
        groups || zones || cents(self.total) != parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn header() -> Header {
        Header {
            provider_name: "Mango Office GmbH".into(),
            provider_address: vec!["Musterstraße 1".into(), "10117 Berlin".into()],
            provider_contact: vec!["service@example.de".into()],
            customer_id: "K1001".into(),
            customer_name: "Müller & Söhne GmbH".into(),
            customer_address: vec!["Hauptstraße 5".into(), "10115 Berlin".into()],
            month: "2026-11".parse().unwrap(),
            created: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            version: 1,
            config_version: "sha256:abc".into(),
            counselling_version: "2026-Q4+sha256:def".into(),
        }
    }

    fn call(line: u8, minute: i64, cents4: i64, hidden: bool, zone: u8) -> EvnCall {
        EvnCall {
            calling_number: format!("+493090182{line}"),
            called_number: "+4915112345678".into(),
            start_time: DateTime::from_timestamp(1_795_000_000 + minute * 60, 0).unwrap(),
            duration_s: 61,
            zone_label: ["Mobilfunk", "Ausland EU", "Servicerufnummer"][zone as usize].into(),
            charge: Decimal::new(cents4, 4),
            hidden,
            shortened: false,
        }
    }

    #[test]
    fn hidden_rows_count_but_leave_no_gap() {
        let doc = EvnDocument::build(
            header(),
            vec![
                call(1, 2, 1_0000, false, 0),
                call(1, 1, 5000, true, 0),
                call(0, 3, 3333, false, 1),
            ],
            false,
            vec![],
        );
        assert_eq!(doc.billed, 3);
        assert_eq!(doc.itemised(), 2);
        let nrs: Vec<usize> = doc
            .groups
            .iter()
            .flat_map(|g| g.rows.iter().map(|r| r.nr))
            .collect();
        assert_eq!(nrs, [1, 2]);
        assert_eq!(doc.groups[0].calling_number, "+4930901820");
        assert_eq!(doc.groups[1].subtotal, Decimal::new(1_0000, 4));
        assert_eq!(doc.not_itemised.count, 1);
        assert_eq!(doc.not_itemised.amount, Decimal::new(5000, 4));
        // The EVN's total is the itemised calls' only: the hidden one shows nowhere.
        assert_eq!(doc.total, Decimal::new(1_3333, 4));
    }

    /// A counselling call, whenever it arrives, changes nothing the EVN says: no row, count,
    /// sum or notice, and not its digest (a new version would itself tell that one was made).
    #[test]
    fn a_hidden_call_changes_nothing_the_evn_says() {
        let visible = vec![call(0, 1, 1000, false, 0), call(1, 2, 2000, false, 1)];
        let mut with_hidden = visible.clone();
        with_hidden.push(call(0, 3, 5000, true, 0));
        let build = |calls| EvnDocument::build(header(), calls, false, vec![]);
        let (a, b) = (build(visible), build(with_hidden));
        assert_eq!(a.content_digest(), b.content_digest());
        assert_eq!(
            (&a.groups, &a.zones, a.total),
            (&b.groups, &b.zones, b.total)
        );
        assert_eq!(a.notices(), b.notices());
        assert_eq!(
            (b.billed, b.not_itemised.count),
            (3, 1),
            "kept for the billing record"
        );
    }

    #[test]
    fn empty_month_says_so() {
        let doc = EvnDocument::build(header(), vec![], false, vec!["Festnetz national".into()]);
        let n = doc.notices();
        assert!(n[0].contains("keine Verbindungen angefallen, die einzeln"));
        assert!(n.iter().any(|s| s.contains("(Festnetz national)")));
        // No rows, so nothing to say about their times.
        assert!(!n.iter().any(|s| s.contains("Verbindungsaufbaus")));
        let one = EvnDocument::build(header(), vec![call(0, 1, 100, false, 0)], false, vec![]);
        assert!(one
            .notices()
            .iter()
            .any(|s| s.contains("Beginn des Verbindungsaufbaus") && s.contains("ab der Annahme")));
    }

    /// 3 × 0,1820 € print as 0,18 € each, and their exact sum 0,5460 € as 0,55 €: the EVN says
    /// why. When printed amounts add up, it says nothing (and hashes as before).
    #[test]
    fn rounding_notice_only_when_printed_amounts_do_not_add_up() {
        let notice = |calls: Vec<EvnCall>| {
            EvnDocument::build(header(), calls, false, vec![])
                .notices()
                .iter()
                .any(|n| n.contains("auf volle Cent gerundet"))
        };
        assert!(notice(vec![
            call(0, 1, 1820, false, 0),
            call(0, 2, 1820, false, 0),
            call(0, 3, 1820, false, 0),
        ]));
        assert!(!notice(vec![
            call(0, 1, 1800, false, 0),
            call(0, 2, 3300, false, 0)
        ]));
        // Off only across lines: each line's subtotal adds up, the zone and total do not.
        assert!(notice(vec![
            call(0, 1, 1250, false, 0),
            call(1, 2, 1250, false, 0)
        ]));
        // A hidden call is in no sum of the EVN: 0,1050 prints as 0,11 and totals 0,11.
        assert!(!notice(vec![
            call(0, 1, 1050, false, 0),
            call(0, 2, 1050, true, 0)
        ]));
        assert!(!notice(vec![]));
    }

    /// Calls in the repeated autumn hour print as `02:30:00 A` / `B`, and the EVN explains
    /// the letters; a counselling call in that hour, which is not listed, must not make the
    /// notice appear (it would tell that some call was made then).
    #[test]
    fn repeated_hour_notice_only_for_listed_calls_in_it() {
        let at = |utc: &str, hidden: bool| EvnCall {
            start_time: utc.parse().unwrap(),
            ..call(0, 0, 1000, hidden, 0)
        };
        let notice = |calls: Vec<EvnCall>| {
            EvnDocument::build(header(), calls, false, vec![])
                .notices()
                .into_iter()
                .find(|n| n.contains("zweimal durchlaufen"))
        };
        let n = notice(vec![
            at("2026-10-25T00:30:00Z", false),
            at("2026-10-25T01:10:00Z", false),
        ])
        .expect("the notice");
        assert!(
            n.contains("Am 25.10.2026") && n.contains("„A“") && n.contains("MEZ"),
            "{n}"
        );
        assert!(notice(vec![at("2026-10-25T01:10:00Z", false)]).is_some());
        assert_eq!(notice(vec![at("2026-10-25T02:30:00Z", false)]), None);
        assert_eq!(
            notice(vec![
                at("2026-10-25T00:30:00Z", true),
                at("2026-10-25T05:00:00Z", false)
            ]),
            None
        );
    }

    proptest! {
        #[test]
        fn rows_add_up_to_subtotals_and_total(
            calls in prop::collection::vec(
                (0u8..3, 0i64..10_000, 0i64..100_000_000, any::<bool>(), 0u8..3),
                0..200,
            )
        ) {
            let calls: Vec<EvnCall> = calls
                .into_iter()
                .map(|(l, m, c, h, z)| call(l, m, c, h, z))
                .collect();
            let hidden: Decimal = calls.iter().filter(|c| c.hidden).map(|c| c.charge).sum();
            let exact: Decimal = calls.iter().map(|c| c.charge).sum();
            let doc = EvnDocument::build(header(), calls, false, vec![]);
            let mut subtotals = Decimal::ZERO;
            for g in &doc.groups {
                let rows: Decimal = g.rows.iter().map(|r| r.charge).sum();
                prop_assert!(!g.rows.is_empty());
                prop_assert_eq!(rows, g.subtotal);
                subtotals += g.subtotal;
            }
            prop_assert_eq!(doc.not_itemised.amount, hidden);
            prop_assert_eq!(subtotals, doc.total);
            prop_assert_eq!(doc.zones.iter().map(|z| z.amount).sum::<Decimal>(), doc.total);
            prop_assert_eq!(
                doc.zones.iter().map(|z| z.count).sum::<usize>() + doc.not_itemised.count,
                doc.billed
            );
            prop_assert_eq!(exact - hidden, doc.total);
        }
    }
}
