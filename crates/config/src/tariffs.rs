//! `tariffs.toml`: zones by number prefix, and plans with flatrates, prices and increments.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use toml::Spanned;

use crate::provider::toml_error;
use crate::ConfigError;

/// Zones that law or our tariff model never lets a flatrate cover (DOMAIN.md, Rating).
const NEVER_FLATRATE: [&str; 4] = ["service", "premium", "eu", "world"];

/// The most a minute may cost (German premium-rate numbers are capped at 3 €/min, satellite
/// calls cost around 10): a 24-hour call (`evn_cdr::MAX_CALL_SECONDS`) then costs at most
/// 144,000 €, far inside the stored `Decimal(18,4)`.
const MAX_PER_MINUTE: Decimal = Decimal::from_parts(100, 0, 0, false, 0);

/// Whatever its zones are called, no flatrate covers the numbers of these ranges (DOMAIN.md,
/// Rating: service and premium calls are always charged; German flatrates leave out every
/// special-rate number). A zone's name alone let a plan with `flatrate = ["ausland",
/// "mehrwert"]` swallow hour-long 0900 and US calls unbilled.
const NEVER_FLATRATE_RANGES: [(&str, &str); 6] = [
    ("+49180", "service numbers (0180)"),
    ("+49900", "premium-rate numbers (0900)"),
    ("+49137", "televoting numbers (0137)"),
    ("+49138", "televoting numbers (0138)"),
    ("+49700", "personal numbers (0700)"),
    ("118", "directory enquiries (118xx)"),
];

/// A tariff zone's id as named in `[zones]`, e.g. `mobile`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ZoneId(String);

impl ZoneId {
    pub fn new(id: impl Into<String>) -> Self {
        ZoneId(id.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ZoneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Billing increment: the first `first` seconds are billed as a block, then blocks of `then`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Increment {
    pub first: u32,
    pub then: u32,
}

impl Increment {
    /// The increments the tariff model allows (DOMAIN.md): `60/60`, `60/1`, `1/1`.
    pub const ALLOWED: [&'static str; 3] = ["60/60", "60/1", "1/1"];

    /// Seconds billed for a call of `seconds` (0 stays 0: nothing to bill).
    pub fn billable(self, seconds: i64) -> i64 {
        if seconds <= 0 {
            return 0;
        }
        let (first, then) = (i64::from(self.first), i64::from(self.then));
        if seconds <= first {
            return first;
        }
        let rest = seconds - first;
        first + (rest + then - 1) / then * then
    }
}

impl FromStr for Increment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "60/60" => Ok(Increment {
                first: 60,
                then: 60,
            }),
            "60/1" => Ok(Increment { first: 60, then: 1 }),
            "1/1" => Ok(Increment { first: 1, then: 1 }),
            other => Err(format!(
                "increment {other:?} is not one of {}",
                Increment::ALLOWED.join(", ")
            )),
        }
    }
}

impl fmt::Display for Increment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.first, self.then)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rate {
    /// Net EUR per minute.
    pub per_minute: Decimal,
    pub increment: Increment,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub name: String,
    pub flatrate: BTreeSet<ZoneId>,
    pub rates: BTreeMap<ZoneId, Rate>,
}

/// Zones and plans, validated: every prefix maps to one zone, every plan rates every zone its
/// flatrate does not cover.
#[derive(Debug, Clone)]
pub struct Tariffs {
    /// Fx: up to `longest_prefix + 1` lookups for every CDR ingest rates.
    prefixes: FxHashMap<String, ZoneId>,
    longest_prefix: usize,
    pub zones: BTreeMap<ZoneId, Vec<String>>,
    pub zone_labels: BTreeMap<ZoneId, String>,
    pub plans: BTreeMap<String, Plan>,
    /// `plans` in name order, for [`Tariffs::plan_at`].
    by_ix: Vec<Plan>,
}

/// A plan's position in [`Tariffs::plan_at`]. Customer terms name their plan by it: rating
/// looks the plan up for every CDR, and a lookup by name read the row's plan string, a cache
/// miss (perf, issue #7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlanIx(pub(crate) u32);

impl Tariffs {
    pub fn plan_ix(&self, name: &str) -> Option<PlanIx> {
        self.by_ix
            .binary_search_by(|p| p.name.as_str().cmp(name))
            .ok()
            .map(|i| PlanIx(i as u32))
    }

    /// The plan at `ix`, which [`Tariffs::plan_ix`] of these tariffs returned.
    pub fn plan_at(&self, ix: PlanIx) -> &Plan {
        &self.by_ix[ix.0 as usize]
    }

    /// The zone of a dialled number: the longest matching prefix wins.
    pub fn zone_of(&self, number: &str) -> Option<&ZoneId> {
        longest_match(&self.prefixes, self.longest_prefix, number)
    }

    /// The German label for a zone (`[zone_labels]`), or the zone id where none is given.
    pub fn label<'a>(&'a self, zone: &'a str) -> &'a str {
        self.zone_labels
            .get(&ZoneId::new(zone))
            .map_or(zone, String::as_str)
    }

    pub(crate) fn parse(path: &Path, text: &str) -> Result<Tariffs, ConfigError> {
        let raw: RawTariffs = toml::from_str(text).map_err(|e| toml_error(path, text, &e))?;
        let err = |span: std::ops::Range<usize>, msg: String| {
            ConfigError::at_offset(path, text, span.start, msg)
        };

        let mut prefixes: FxHashMap<String, ZoneId> = FxHashMap::default();
        let mut zones = BTreeMap::new();
        for (zone, list) in &raw.zones {
            if !valid_id(zone) {
                return Err(err(
                    list.span(),
                    format!("zone name {zone:?} must be letters, digits or `_`"),
                ));
            }
            let mut own = Vec::new();
            for prefix in list.get_ref() {
                let p = prefix.get_ref();
                let digits = p.strip_prefix('+').unwrap_or(p);
                if !digits.bytes().all(|b| b.is_ascii_digit())
                    || (digits.is_empty() && !p.starts_with('+'))
                {
                    return Err(err(
                        prefix.span(),
                        format!(
                            "prefix {p:?} must be `+` and digits (E.164) or digits (short codes)"
                        ),
                    ));
                }
                // CDR numbers are E.164 or short codes, never national (`0180…`): such a prefix
                // would match nothing, and its calls would fall into a shorter prefix's zone
                // (`+49`, perhaps under a flatrate) without a word.
                if !p.starts_with('+') && p.starts_with('0') {
                    let hint = match p.strip_prefix("00") {
                        Some(intl) => format!("+{intl}"),
                        None => format!("+49{}", &p[1..]),
                    };
                    return Err(err(
                        prefix.span(),
                        format!("prefix {p:?} is written nationally, but CDR numbers are E.164: write {hint:?}"),
                    ));
                }
                if let Some(other) = prefixes.insert(p.clone(), ZoneId::new(zone)) {
                    return Err(err(prefix.span(), format!("prefix {p:?} is listed in zones `{other}` and `{zone}`: a prefix belongs to one zone")));
                }
                own.push(p.clone());
            }
            zones.insert(ZoneId::new(zone), own);
        }
        if zones.is_empty() {
            return Err(ConfigError::new(
                path,
                None,
                "`[zones]` is empty: define at least one zone",
            ));
        }
        let longest_prefix = prefixes.keys().map(String::len).max().unwrap_or(0);

        let mut zone_labels = BTreeMap::new();
        for (zone, label) in raw.zone_labels {
            let id = ZoneId::new(zone.clone());
            if !zones.contains_key(&id) {
                return Err(err(
                    label.span(),
                    format!("`[zone_labels]` names zone `{zone}`, which `[zones]` does not define"),
                ));
            }
            zone_labels.insert(id, label.into_inner());
        }

        let mut plans = BTreeMap::new();
        for (name, plan) in raw.plans {
            let plan_span = plan.span();
            let plan = plan.into_inner();
            if !valid_id(&name) {
                return Err(err(
                    plan_span,
                    format!("plan name {name:?} must be letters, digits or `_`"),
                ));
            }
            let mut flatrate = BTreeSet::new();
            for zone in plan.flatrate {
                let id = ZoneId::new(zone.get_ref().clone());
                if !zones.contains_key(&id) {
                    return Err(err(
                        zone.span(),
                        format!("plan `{name}`: flatrate zone `{id}` is not defined in `[zones]`"),
                    ));
                }
                if NEVER_FLATRATE.contains(&id.as_str()) {
                    return Err(err(zone.span(), format!("plan `{name}`: zone `{id}` can never be covered by a flatrate (service, premium and international calls are always charged)")));
                }
                if let Some(p) = zones[&id]
                    .iter()
                    .find(|p| p.starts_with('+') && !p.starts_with("+49"))
                {
                    return Err(err(zone.span(), format!("plan `{name}`: flatrate zone `{id}` holds the international prefix {p:?}: international calls are always charged; move it to a zone outside the flatrate")));
                }
                let zone_of = |n: &str| longest_match(&prefixes, longest_prefix, n);
                // A range's numbers fall into the flatrate zone if the range's own prefix does
                // (no longer prefix catches them all: `premium = ["+499001"]` leaves +499009…
                // to `+49`), or if the zone lists a prefix inside the range.
                if let Some((range, what)) = NEVER_FLATRATE_RANGES.iter().find(|(range, _)| {
                    zone_of(range) == Some(&id) || zones[&id].iter().any(|p| p.starts_with(range))
                }) {
                    return Err(err(zone.span(), format!("plan `{name}`: flatrate zone `{id}` would cover {what}, numbers from {range}, which are always charged: give the whole range a zone of its own outside the flatrate (e.g. `service = [\"+49180\", \"+49137\", \"+49138\", \"+49700\"]`, `premium = [\"+49900\"]`, `directory = [\"118\"]`)")));
                }
                flatrate.insert(id);
            }
            let mut rates = BTreeMap::new();
            for (zone, rate) in plan.rates {
                let id = ZoneId::new(zone.clone());
                if !zones.contains_key(&id) {
                    return Err(err(rate.span(), format!("plan `{name}`: rate for zone `{zone}`, which `[zones]` does not define")));
                }
                let rate_span = rate.span();
                let rate = rate.into_inner();
                let increment = Increment::from_str(rate.increment.get_ref()).map_err(|m| {
                    err(
                        rate.increment.span(),
                        format!("plan `{name}`, zone `{zone}`: {m}"),
                    )
                })?;
                let per_minute = rate.per_minute.get_ref().0;
                if per_minute.is_sign_negative() {
                    return Err(err(
                        rate_span,
                        format!("plan `{name}`, zone `{zone}`: per_minute must not be negative"),
                    ));
                }
                // A typo of magnitude (a missing decimal point) is refused here, not stored:
                // beyond Parquet's Decimal(18,4) a charge wrapped to a wrong, even negative,
                // amount, and beyond `Decimal` ingest panicked at every restart.
                if per_minute > MAX_PER_MINUTE {
                    return Err(err(
                        rate.per_minute.span(),
                        format!("plan `{name}`, zone `{zone}`: per_minute {per_minute} is more than {MAX_PER_MINUTE} € a minute; is a decimal point missing?"),
                    ));
                }
                rates.insert(
                    id,
                    Rate {
                        per_minute,
                        increment,
                    },
                );
            }
            for zone in zones.keys() {
                if !flatrate.contains(zone) && !rates.contains_key(zone) {
                    return Err(err(plan_span.clone(), format!("plan `{name}` has no rate for zone `{zone}`: add `{zone} = {{ per_minute = \"0.0000\", increment = \"60/1\" }}` to `[plans.{name}.rates]` or cover it by the flatrate")));
                }
            }
            plans.insert(
                name.clone(),
                Plan {
                    name,
                    flatrate,
                    rates,
                },
            );
        }
        if plans.is_empty() {
            return Err(ConfigError::new(path, None, "no `[plans.NAME]` defined"));
        }
        let by_ix = plans.values().cloned().collect();
        Ok(Tariffs {
            prefixes,
            longest_prefix,
            zones,
            zone_labels,
            plans,
            by_ix,
        })
    }
}

/// The zone of the longest prefix of `number` (at most `longest` bytes) that `prefixes` holds.
fn longest_match<'p>(
    prefixes: &'p FxHashMap<String, ZoneId>,
    longest: usize,
    number: &str,
) -> Option<&'p ZoneId> {
    (0..=longest.min(number.len()))
        .rev()
        .find_map(|len| number.get(..len).and_then(|p| prefixes.get(p)))
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTariffs {
    /// Zone id → number prefixes; the longest matching prefix of the dialled number wins.
    zones: BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
    /// Zone id → German label printed in the EVN (optional; the id is printed otherwise).
    #[serde(default)]
    zone_labels: BTreeMap<String, Spanned<String>>,
    /// Plan name → plan.
    #[serde(default)]
    plans: BTreeMap<String, Spanned<RawPlan>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    /// Zones whose calls the flatrate covers: neither itemised nor stored.
    #[serde(default)]
    flatrate: Vec<Spanned<String>>,
    /// Zone → price; every zone not in `flatrate` needs one.
    #[serde(default)]
    rates: BTreeMap<String, Spanned<RawRate>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    /// Net EUR per minute as a decimal string, e.g. "0.1490".
    per_minute: Spanned<StrDecimal>,
    /// "60/60", "60/1" or "1/1".
    increment: Spanned<String>,
}

/// A decimal that only deserializes from a string: a float price is a configuration error,
/// because `0.1` in TOML is a binary float and not the amount the operator meant.
struct StrDecimal(Decimal);

impl<'de> Deserialize<'de> for StrDecimal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = StrDecimal;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a decimal amount as a string, e.g. \"0.1490\" (floats are not allowed for money)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StrDecimal, E> {
                Decimal::from_str_exact(v.trim())
                    .map(StrDecimal)
                    .map_err(|_| {
                        E::custom(format!("{v:?} is not a decimal amount such as \"0.1490\""))
                    })
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[zones]
emergency = ["110", "112"]
freephone = ["+49800"]
mobile    = ["+4915", "+4916", "+4917"]
landline  = ["+49"]
world     = ["+"]
special   = ["+49180", "+49900", "+49137", "+49138", "+49700", "118"]

[zone_labels]
mobile = "Mobilfunk"

[plans.office_flat]
flatrate = ["landline"]
[plans.office_flat.rates]
emergency = { per_minute = "0.0000", increment = "1/1" }
freephone = { per_minute = "0.0000", increment = "1/1" }
mobile    = { per_minute = "0.1490", increment = "60/1" }
world     = { per_minute = "0.9900", increment = "60/60" }
special   = { per_minute = "1.9900", increment = "60/60" }
"#;

    fn parse(text: &str) -> Result<Tariffs, ConfigError> {
        Tariffs::parse(Path::new("tariffs.toml"), text)
    }

    fn check_err(text: &str, expected: &str) {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains(expected), "{e}");
    }

    #[test]
    fn longest_prefix_wins() {
        let t = parse(BASE).unwrap();
        let zone = |n: &str| t.zone_of(n).map(|z| z.as_str().to_owned());
        assert_eq!(zone("+4915112345678").as_deref(), Some("mobile"));
        assert_eq!(zone("+4930901820").as_deref(), Some("landline"));
        assert_eq!(zone("+498001110111").as_deref(), Some("freephone"));
        assert_eq!(zone("+33123456789").as_deref(), Some("world"));
        assert_eq!(zone("110").as_deref(), Some("emergency"));
        assert_eq!(zone("999"), None);
        assert_eq!(t.label("mobile"), "Mobilfunk");
        assert_eq!(t.label("landline"), "landline");
    }

    #[test]
    fn increments() {
        let i = |s: &str| Increment::from_str(s).unwrap();
        assert_eq!(i("60/60").billable(1), 60);
        assert_eq!(i("60/60").billable(61), 120);
        assert_eq!(i("60/1").billable(59), 60);
        assert_eq!(i("60/1").billable(61), 61);
        assert_eq!(i("1/1").billable(61), 61);
        assert_eq!(i("60/60").billable(0), 0);
        assert!(Increment::from_str("30/30").is_err());
    }

    #[test]
    fn float_price_is_an_error_with_line() {
        let text = BASE.replace(r#"per_minute = "0.1490""#, "per_minute = 0.149");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line, Some(18), "{e}");
        assert!(e.message.contains("floats are not allowed"), "{e}");
    }

    #[test]
    fn semantic_errors() {
        check_err(
            &BASE.replace(
                r#"world     = { per_minute = "0.9900", increment = "60/60" }"#,
                "",
            ),
            "no rate for zone `world`",
        );
        check_err(&BASE.replace("\"60/60\"", "\"30/30\""), "is not one of");
        check_err(
            &BASE.replace(
                r#"per_minute = "0.1490""#,
                r#"per_minute = "1490000000000000000000""#,
            ),
            "tariffs.toml:18:",
        );
        check_err(
            &BASE.replace(r#"per_minute = "0.1490""#, r#"per_minute = "100.0001""#),
            "per_minute 100.0001 is more than 100 € a minute; is a decimal point missing?",
        );
        assert!(parse(&BASE.replace(r#"per_minute = "0.1490""#, r#"per_minute = "100""#)).is_ok());
        check_err(
            &BASE.replace(r#"flatrate = ["landline"]"#, r#"flatrate = ["world"]"#),
            "can never be covered",
        );
        // Whatever the zones are called: what they hold decides.
        check_err(
            &BASE
                .replace(r#"world     = ["+"]"#, r#"ausland   = ["+"]"#)
                .replace("world     = {", "ausland   = {")
                .replace(
                    r#"flatrate = ["landline"]"#,
                    r#"flatrate = ["landline", "ausland"]"#,
                ),
            "flatrate zone `ausland` holds the international prefix \"+\"",
        );
        check_err(
            &BASE.replace(r#""+49900", "#, ""),
            "flatrate zone `landline` would cover premium-rate numbers (0900), numbers from +49900",
        );
        // Part of a range in a charged zone leaves the rest to the flatrate.
        check_err(
            &BASE.replace(r#""+49900", "#, r#""+499001", "+499003", "#),
            "flatrate zone `landline` would cover premium-rate numbers (0900)",
        );
        // A flatrate zone listing a prefix inside a range.
        check_err(
            &BASE.replace(
                r#"landline  = ["+49"]"#,
                r#"landline  = ["+49", "+4970012"]"#,
            ),
            "would cover personal numbers (0700), numbers from +49700",
        );
        check_err(
            &BASE
                .replace(r#"special   = ["#, r#"mehrwert  = ["#)
                .replace("special   = {", "mehrwert  = {")
                .replace(
                    r#"flatrate = ["landline"]"#,
                    r#"flatrate = ["landline", "mehrwert"]"#,
                ),
            "flatrate zone `mehrwert` would cover service numbers (0180)",
        );
        check_err(
            &BASE
                .replace(r#", "118"]"#, "]")
                .replace(r#"landline  = ["+49"]"#, r#"landline  = ["+49", "11"]"#),
            "would cover directory enquiries (118xx)",
        );
        check_err(
            &BASE.replace(r#"flatrate = ["landline"]"#, r#"flatrate = ["moon"]"#),
            "not defined",
        );
        check_err(
            &BASE.replace(r#"landline  = ["+49"]"#, r#"landline  = ["+49", "+4915"]"#),
            "belongs to one zone",
        );
        check_err(
            &BASE.replace(r#""0.1490""#, r#""-0.1""#),
            "must not be negative",
        );
        check_err(
            &BASE.replace(r#""0.1490""#, r#""zwei""#),
            "not a decimal amount",
        );
        check_err(&format!("bogus = 1\n{BASE}"), "unknown field");
        check_err(
            &BASE.replace(r#"landline  = ["+49"]"#, r#"landline  = ["+49", "0180"]"#),
            r#"written nationally, but CDR numbers are E.164: write "+49180""#,
        );
        check_err(
            &BASE.replace(r#"landline  = ["+49"]"#, r#"landline  = ["+49", "0033"]"#),
            r#"write "+33""#,
        );
    }
}
