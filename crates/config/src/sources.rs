//! `sources.toml`: what each Kafka topic carries, for switches that do not speak the canonical
//! CDR (Asterisk, FreeSWITCH, Kazoo, carrier CSV), and how their records are read: the switch
//! id they lack, the time zone of their wall-clock times, their number plan, where the customer
//! comes from. Optional: without it every topic carries canonical JSON.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use chrono_tz::Tz;
use serde::Deserialize;
use toml::Spanned;

use evn_cdr::Disposition;

use crate::provider::toml_error;
use crate::ConfigError;

/// Digits-only numbers up to this length are extensions of the switch (internal) by default.
pub const DEFAULT_EXTENSION_MAX_DIGITS: usize = 5;
/// German short codes dialled without prefix: emergency (110, 112), 115 (public authorities),
/// 116xxx (harmonised services of social value), 118xx (directory enquiries).
pub const DEFAULT_SHORT_CODES: [&str; 5] = ["110", "112", "115", "116", "118"];

/// Hours a Kamailio call start waits for its end unless `max_call_hours` says otherwise:
/// longer than any business call, short enough that a lost BYE surfaces the next day.
pub const DEFAULT_MAX_CALL_HOURS: u32 = 24;

/// Master.csv of Asterisk's `cdr_csv`, in the module's order; `uniqueid` and `userfield` only
/// with `loguniqueid=yes` / `loguserfield=yes` in `cdr.conf`.
pub const ASTERISK_CSV_COLUMNS: [&str; 18] = [
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
    "uniqueid",
    "userfield",
];
/// Fields a Master.csv row has at least (without `uniqueid` and `userfield`).
pub const ASTERISK_CSV_MIN_FIELDS: usize = 16;

/// The `example` template of FreeSWITCH's `mod_cdr_csv` (its default), in order.
pub const FREESWITCH_CSV_COLUMNS: [&str; 15] = [
    "caller_id_name",
    "caller_id_number",
    "destination_number",
    "context",
    "start_stamp",
    "answer_stamp",
    "end_stamp",
    "duration",
    "billsec",
    "hangup_cause",
    "uuid",
    "bleg_uuid",
    "accountcode",
    "read_codec",
    "write_codec",
];

/// What a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceFormat {
    CanonicalJson,
    AsteriskCsv,
    FreeswitchJson,
    FreeswitchCsv,
    KazooJson,
    KamailioJson,
    Csv,
}

impl SourceFormat {
    pub const ALL: [SourceFormat; 7] = [
        SourceFormat::CanonicalJson,
        SourceFormat::AsteriskCsv,
        SourceFormat::FreeswitchJson,
        SourceFormat::FreeswitchCsv,
        SourceFormat::KazooJson,
        SourceFormat::KamailioJson,
        SourceFormat::Csv,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceFormat::CanonicalJson => "canonical-json",
            SourceFormat::AsteriskCsv => "asterisk-csv",
            SourceFormat::FreeswitchJson => "freeswitch-json",
            SourceFormat::FreeswitchCsv => "freeswitch-csv",
            SourceFormat::KazooJson => "kazoo-json",
            SourceFormat::KamailioJson => "kamailio-json",
            SourceFormat::Csv => "csv",
        }
    }

    fn is_csv(self) -> bool {
        matches!(
            self,
            SourceFormat::AsteriskCsv | SourceFormat::FreeswitchCsv | SourceFormat::Csv
        )
    }
}

impl fmt::Display for SourceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SourceFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SourceFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown format {s:?} (one of {})",
                    SourceFormat::ALL.map(SourceFormat::as_str).join(", ")
                )
            })
    }
}

/// Where the customer of a call comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomerFrom {
    /// `numbers.csv`: the customer whose line made (or received) the call.
    NumberDirectory,
    /// The record's account code (Asterisk `accountcode`, FreeSWITCH `accountcode`, Kazoo
    /// `custom_channel_vars.account_id`, the mapped `customer_id` column of `csv`).
    Accountcode,
}

/// How a source writes numbers: what the country code, trunk and international prefixes are,
/// and which digit strings are extensions or short codes rather than subscriber numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberPlan {
    /// Without `+`, e.g. `49`.
    pub country_code: String,
    /// Dialled before a national number, e.g. `0` (`030 …`).
    pub trunk_prefix: String,
    /// Dialled before a country code, e.g. `00` (`0033 …`).
    pub international_prefix: String,
    /// Digits-only numbers up to this length (and not a short code) are extensions: internal.
    pub extension_max_digits: usize,
    /// Short codes dialled as they are: exact codes (`110`, `19222`) or a prefix followed by
    /// one `x` per further digit (`116xxx`). Under country code 49 the bare `116` and `118` mean
    /// their German forms, `116` + 3 digits and `118` + 2 or 3 digits.
    pub short_codes: Vec<String>,
}

/// How a `csv` source writes times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeFormat {
    /// Wall-clock time in the source's time zone, with this `strftime` pattern.
    Wall(String),
    /// A `strftime` pattern with a UTC offset (`%z`, `%:z`, `%#z`, `%+`): each value is an
    /// instant by its own offset, whatever `timezone` says.
    WithOffset(String),
    /// RFC 3339 with an offset.
    Rfc3339,
    /// Seconds since 1970 (UTC), a fraction allowed.
    EpochSeconds,
    EpochMillis,
    EpochMicros,
}

/// Canonical fields of a `csv` source and the column (0-based) each is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvMapping {
    pub cdr_id: usize,
    pub calling_number: usize,
    pub called_number: usize,
    pub start_time: usize,
    pub answer_time: Option<usize>,
    pub end_time: Option<usize>,
    /// Billed seconds: with `answer_time` it gives the end when `end_time` is missing; without
    /// `answer_time`, an answered row's answer is `end_time` − billsec.
    pub billsec: Option<usize>,
    pub disposition: Option<usize>,
    pub customer_id: Option<usize>,
    pub time_format: TimeFormat,
    /// Source value → disposition; values not listed fall back to the built-in recognition
    /// (Asterisk names, Q.850 causes, SIP codes).
    pub dispositions: HashMap<String, Disposition>,
}

/// One topic's source, validated.
#[derive(Debug, Clone)]
pub struct Source {
    pub topic: String,
    pub format: SourceFormat,
    /// Canonical `switch_id` of every record (the formats other than canonical JSON lack one).
    pub switch_id: String,
    /// Zone of times written without an offset; None only where the format has none.
    pub timezone: Option<Tz>,
    pub plan: NumberPlan,
    pub customer: CustomerFrom,
    /// Asterisk `dcontext` / FreeSWITCH `context` values of calls arriving from outside.
    pub inbound_contexts: Vec<String>,
    /// CSV formats: the record's columns, in order.
    pub columns: Vec<String>,
    /// CSV formats: whether `columns` came from the configuration (a row must then have
    /// exactly that many fields) or is the format's default.
    pub columns_configured: bool,
    pub delimiter: u8,
    pub csv: Option<CsvMapping>,
    /// `kamailio-json`: how long an answered call may wait for its BYE before its start is
    /// dead-lettered `unpaired_start`, in hours of the records' own time.
    pub max_call_hours: u32,
    /// Line of the `[[source]]` in `sources.toml`, for messages.
    pub line: usize,
}

impl Source {
    /// Index of a named column.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
}

/// Every configured source by topic. Topics not listed carry canonical JSON.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    by_topic: BTreeMap<String, Source>,
}

impl Sources {
    pub fn get(&self, topic: &str) -> Option<&Source> {
        self.by_topic.get(topic)
    }

    /// The format of a topic (canonical JSON when not listed).
    pub fn format_of(&self, topic: &str) -> SourceFormat {
        self.get(topic)
            .map_or(SourceFormat::CanonicalJson, |s| s.format)
    }

    /// Topics in name order.
    pub fn topics(&self) -> Vec<&str> {
        self.by_topic.keys().map(String::as_str).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Source> {
        self.by_topic.values()
    }

    pub fn len(&self) -> usize {
        self.by_topic.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_topic.is_empty()
    }

    /// Builds sources from validated values (tests).
    pub fn from_sources(sources: Vec<Source>) -> Self {
        Sources {
            by_topic: sources.into_iter().map(|s| (s.topic.clone(), s)).collect(),
        }
    }

    /// Parses and validates `sources.toml` text (`path` names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Sources, ConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(path, text, &e))?;
        let mut by_topic = BTreeMap::new();
        for spanned in raw.source {
            let offset = spanned.span().start;
            let line = crate::error::line_col(text, offset).0;
            let err = |msg: String| ConfigError::at_offset(path, text, offset, msg);
            let source = spanned.into_inner().validate(line).map_err(err)?;
            if let Some(first) = by_topic.get(&source.topic).map(|s: &Source| s.line) {
                return Err(err(format!(
                    "topic {:?} is configured twice (lines {first} and {line}): keep one",
                    source.topic
                )));
            }
            by_topic.insert(source.topic.clone(), source);
        }
        Ok(Sources { by_topic })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    /// One entry per topic.
    #[serde(default)]
    source: Vec<Spanned<RawSource>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    /// The Kafka topic.
    topic: String,
    /// canonical-json | asterisk-csv | freeswitch-json | freeswitch-csv | kazoo-json | kamailio-json | csv
    format: String,
    /// The canonical `switch_id` of this source's records.
    switch_id: Option<String>,
    /// IANA zone of wall-clock times, e.g. `Europe/Berlin`.
    timezone: Option<String>,
    /// Country code without `+`, e.g. `49`.
    country_code: Option<String>,
    /// National trunk prefix, e.g. `0`.
    trunk_prefix: Option<String>,
    /// International prefix, e.g. `00`.
    international_prefix: Option<String>,
    /// `number-directory` (default) or `accountcode`.
    customer: Option<String>,
    /// Digits-only numbers up to this many digits are extensions (default 5).
    extension_max_digits: Option<usize>,
    /// Short-code prefixes dialled without prefix (default for 49: 110, 112, 115, 116, 118).
    short_codes: Option<Vec<String>>,
    /// Contexts of calls arriving from outside (Asterisk `dcontext`, FreeSWITCH `context`).
    #[serde(default)]
    inbound_contexts: Vec<String>,
    /// CSV formats: the columns of a record, in order (`cdr_custom` mappings, `mod_cdr_csv`
    /// templates, carrier files).
    columns: Option<Vec<String>>,
    /// CSV formats: field separator, one character (default `,`).
    delimiter: Option<String>,
    /// `csv`: canonical field → column name.
    fields: Option<RawFields>,
    /// `csv`: `%Y-%m-%d %H:%M:%S` (wall clock, any strftime pattern), `rfc3339`, `epoch`,
    /// `epoch_ms`, `epoch_us`.
    time_format: Option<String>,
    /// `csv`: source value → answered | busy | no_answer | failed.
    #[serde(default)]
    dispositions: BTreeMap<String, String>,
    /// `kamailio-json`: hours an answered INVITE waits for its BYE (default 24).
    max_call_hours: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFields {
    cdr_id: String,
    calling_number: String,
    called_number: String,
    start_time: String,
    answer_time: Option<String>,
    end_time: Option<String>,
    billsec: Option<String>,
    disposition: Option<String>,
    customer_id: Option<String>,
}

/// Whether a `strftime` pattern reads a UTC offset; `%%z` is a literal, not an offset.
fn has_offset(pattern: &str) -> bool {
    let p = pattern.replace("%%", "");
    ["%z", "%:z", "%::z", "%:::z", "%#z", "%+"]
        .iter()
        .any(|o| p.contains(o))
}

fn check_digits(name: &str, value: &str, allow_empty: bool) -> Result<(), String> {
    if (value.is_empty() && !allow_empty) || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{name}` must be digits, found {value:?}"));
    }
    Ok(())
}

impl RawSource {
    fn validate(self, line: usize) -> Result<Source, String> {
        let topic = self.topic.trim().to_owned();
        if topic.is_empty() {
            return Err("`topic` must not be empty".into());
        }
        let format: SourceFormat = self.format.parse()?;
        let ctx = |m: String| format!("source {topic:?}: {m}");
        if format == SourceFormat::CanonicalJson {
            // Canonical records carry switch, customer and numbers themselves.
            if self.switch_id.is_some()
                || self.customer.is_some()
                || self.columns.is_some()
                || self.fields.is_some()
            {
                return Err(ctx("canonical-json records carry their own switch_id, customer and numbers: keep only `topic` and `format`".into()));
            }
        }
        let switch_id = match (format, self.switch_id) {
            (SourceFormat::CanonicalJson, _) => String::new(),
            (_, Some(s)) if !s.trim().is_empty() && s.len() <= evn_cdr::MAX_ID_LEN => s,
            (_, Some(s)) => {
                return Err(ctx(format!(
                    "`switch_id` {s:?} must be 1 to {} characters",
                    evn_cdr::MAX_ID_LEN
                )))
            }
            (_, None) => {
                return Err(ctx(format!(
                    "`switch_id` is required for {format}: the records do not name their switch"
                )))
            }
        };
        let timezone = match &self.timezone {
            Some(tz) => Some(tz.parse::<Tz>().map_err(|_| {
                ctx(format!(
                    "`timezone` {tz:?} is not an IANA time zone such as \"Europe/Berlin\""
                ))
            })?),
            None => None,
        };
        let wall_clock = format.is_csv()
            && !matches!(
                self.time_format.as_deref(),
                Some("rfc3339" | "epoch" | "epoch_ms" | "epoch_us")
            )
            && !self.time_format.as_deref().is_some_and(has_offset);
        if wall_clock && timezone.is_none() {
            return Err(ctx(format!("`timezone` is required: {format} writes times without an offset (use \"UTC\" if the switch logs in UTC)")));
        }
        let country_code = self.country_code.unwrap_or_else(|| "49".into());
        check_digits("country_code", &country_code, false).map_err(ctx)?;
        if country_code.starts_with('0') || country_code.len() > 3 {
            return Err(ctx(format!(
                "`country_code` {country_code:?} is 1 to 3 digits without a leading 0 (e.g. \"49\")"
            )));
        }
        let trunk_prefix = self.trunk_prefix.unwrap_or_else(|| "0".into());
        check_digits("trunk_prefix", &trunk_prefix, true).map_err(ctx)?;
        let international_prefix = self.international_prefix.unwrap_or_else(|| "00".into());
        check_digits("international_prefix", &international_prefix, false).map_err(ctx)?;
        if !trunk_prefix.is_empty() && trunk_prefix == international_prefix {
            return Err(ctx(
                "`trunk_prefix` and `international_prefix` must differ".into()
            ));
        }
        let short_codes = match self.short_codes {
            Some(codes) => {
                for c in &codes {
                    let head = c.trim_end_matches('x');
                    if head.is_empty() || !head.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(ctx(format!(
                            "`short_codes` entries are digits, optionally followed by one `x` per further digit (\"116xxx\"), found {c:?}"
                        )));
                    }
                }
                codes
            }
            None if country_code == "49" => DEFAULT_SHORT_CODES.map(String::from).to_vec(),
            None => Vec::new(),
        };
        let plan = NumberPlan {
            country_code,
            trunk_prefix,
            international_prefix,
            extension_max_digits: self
                .extension_max_digits
                .unwrap_or(DEFAULT_EXTENSION_MAX_DIGITS),
            short_codes,
        };
        let customer = match self.customer.as_deref() {
            None | Some("number-directory") => CustomerFrom::NumberDirectory,
            Some("accountcode") => CustomerFrom::Accountcode,
            Some(other) => {
                return Err(ctx(format!(
                    "`customer` {other:?} is \"number-directory\" or \"accountcode\""
                )))
            }
        };
        let delimiter = match self.delimiter.as_deref() {
            None => b',',
            Some("\\t") | Some("\t") => b'\t',
            Some(d) if d.len() == 1 && d.is_ascii() => d.as_bytes()[0],
            Some(d) => {
                return Err(ctx(format!(
                    "`delimiter` {d:?} must be one ASCII character"
                )))
            }
        };
        if !format.is_csv() && (self.columns.is_some() || self.delimiter.is_some()) {
            return Err(ctx(format!(
                "`columns` and `delimiter` apply to CSV formats, not {format}"
            )));
        }
        if format != SourceFormat::Csv
            && (self.fields.is_some()
                || self.time_format.is_some()
                || !self.dispositions.is_empty())
        {
            return Err(ctx(format!(
                "`fields`, `time_format` and `dispositions` apply to format \"csv\", not {format}"
            )));
        }
        // Only these formats name a dialplan context; elsewhere the list would be silently
        // ignored and inbound calls billed as outbound.
        let has_context = matches!(
            format,
            SourceFormat::AsteriskCsv | SourceFormat::FreeswitchJson | SourceFormat::FreeswitchCsv
        );
        if !self.inbound_contexts.is_empty() && !has_context {
            let hint = match format {
                SourceFormat::KazooJson => ": Kazoo legs from the PSTN (resource_type \"offnet-origination\") are skipped as inbound without it",
                SourceFormat::Csv => ": filter inbound rows out before sending them, or place calls with customer = \"number-directory\"",
                _ => "",
            };
            return Err(ctx(format!(
                "`inbound_contexts` applies to asterisk-csv, freeswitch-json and freeswitch-csv, whose records name a dialplan context; {format} records have none, so it would be ignored{hint}"
            )));
        }
        let max_call_hours = match (format, self.max_call_hours) {
            (SourceFormat::KamailioJson, None) => DEFAULT_MAX_CALL_HOURS,
            (SourceFormat::KamailioJson, Some(h)) if (1..=24 * 14).contains(&h) => h,
            (SourceFormat::KamailioJson, Some(h)) => {
                return Err(ctx(format!(
                    "`max_call_hours` {h} must be 1 to 336 (two weeks)"
                )))
            }
            (_, Some(_)) => {
                return Err(ctx(format!(
                    "`max_call_hours` applies to format \"kamailio-json\", not {format}"
                )))
            }
            (_, None) => DEFAULT_MAX_CALL_HOURS,
        };
        let columns_configured = self.columns.is_some();
        let columns: Vec<String> = match (format, self.columns) {
            (_, Some(cols)) => cols.into_iter().map(|c| c.trim().to_owned()).collect(),
            (SourceFormat::AsteriskCsv, None) => ASTERISK_CSV_COLUMNS.map(String::from).to_vec(),
            (SourceFormat::FreeswitchCsv, None) => {
                FREESWITCH_CSV_COLUMNS.map(String::from).to_vec()
            }
            (SourceFormat::Csv, None) => {
                return Err(ctx("`columns` is required for format \"csv\": the names of the record's columns in order".into()))
            }
            _ => Vec::new(),
        };
        let has = |name: &str| columns.iter().any(|c| c == name);
        let require = |names: &[&str]| -> Result<(), String> {
            for n in names {
                if !has(n) {
                    return Err(ctx(format!("`columns` lacks {n:?}, which {format} needs")));
                }
            }
            Ok(())
        };
        match format {
            SourceFormat::AsteriskCsv => {
                require(&["src", "dst", "start", "answer", "end", "disposition"])?;
                if customer == CustomerFrom::Accountcode {
                    require(&["accountcode"])?;
                }
            }
            SourceFormat::FreeswitchCsv => {
                require(&[
                    "caller_id_number",
                    "destination_number",
                    "hangup_cause",
                    "uuid",
                ])?;
                for t in ["start", "end"] {
                    if !["stamp", "epoch", "uepoch"]
                        .iter()
                        .any(|k| has(&format!("{t}_{k}")))
                    {
                        return Err(ctx(format!(
                            "`columns` lacks {t}_stamp, {t}_epoch or {t}_uepoch"
                        )));
                    }
                }
                if customer == CustomerFrom::Accountcode {
                    require(&["accountcode"])?;
                }
            }
            _ => {}
        }
        let csv = if format == SourceFormat::Csv {
            let fields = self.fields.ok_or_else(|| {
                ctx("`fields` is required for format \"csv\": which column holds cdr_id, calling_number, called_number, start_time …".into())
            })?;
            let col = |field: &str, name: &str| -> Result<usize, String> {
                columns.iter().position(|c| c == name).ok_or_else(|| {
                    ctx(format!(
                        "fields.{field} names column {name:?}, which is not in `columns`"
                    ))
                })
            };
            let opt = |field: &str, name: Option<&String>| name.map(|n| col(field, n)).transpose();
            let time_format = match self.time_format.as_deref() {
                None => TimeFormat::Wall("%Y-%m-%d %H:%M:%S".into()),
                Some("rfc3339") => TimeFormat::Rfc3339,
                Some("epoch") => TimeFormat::EpochSeconds,
                Some("epoch_ms") => TimeFormat::EpochMillis,
                Some("epoch_us") => TimeFormat::EpochMicros,
                Some(p) if p.contains('%') => {
                    // chrono reports an unknown specifier (`%Q`) only when a time is parsed:
                    // every record would be dead-lettered `bad_timestamp` instead of this error.
                    use chrono::format::{Item, StrftimeItems};
                    if StrftimeItems::new(p).any(|i| matches!(i, Item::Error)) {
                        return Err(ctx(format!("`time_format` {p:?} is not a valid strftime pattern (e.g. \"%d.%m.%Y %H:%M:%S\"; see chrono's strftime)")));
                    }
                    // chrono skips a zone name when parsing: `CET`/`CEST` would be dropped
                    // and the time silently read in `timezone`.
                    if p.replace("%%", "").contains("%Z") {
                        return Err(ctx(format!("`time_format` {p:?} uses %Z, a time zone name, which cannot be read reliably: use a numeric offset (%z, e.g. +0100) or no zone and `timezone`")));
                    }
                    if has_offset(p) {
                        TimeFormat::WithOffset(p.to_owned())
                    } else {
                        TimeFormat::Wall(p.to_owned())
                    }
                }
                Some(p) => return Err(ctx(format!("`time_format` {p:?} is a strftime pattern (\"%Y-%m-%d %H:%M:%S\"), rfc3339, epoch, epoch_ms or epoch_us"))),
            };
            let mut dispositions = HashMap::new();
            for (value, d) in self.dispositions {
                let d = match d.as_str() {
                    "answered" => Disposition::Answered,
                    "busy" => Disposition::Busy,
                    "no_answer" => Disposition::NoAnswer,
                    "failed" => Disposition::Failed,
                    other => return Err(ctx(format!("dispositions.{value:?} = {other:?}: one of answered, busy, no_answer, failed"))),
                };
                dispositions.insert(value, d);
            }
            let mapping = CsvMapping {
                cdr_id: col("cdr_id", &fields.cdr_id)?,
                calling_number: col("calling_number", &fields.calling_number)?,
                called_number: col("called_number", &fields.called_number)?,
                start_time: col("start_time", &fields.start_time)?,
                answer_time: opt("answer_time", fields.answer_time.as_ref())?,
                end_time: opt("end_time", fields.end_time.as_ref())?,
                billsec: opt("billsec", fields.billsec.as_ref())?,
                disposition: opt("disposition", fields.disposition.as_ref())?,
                customer_id: opt("customer_id", fields.customer_id.as_ref())?,
                time_format,
                dispositions,
            };
            if mapping.end_time.is_none()
                && (mapping.billsec.is_none() || mapping.answer_time.is_none())
            {
                return Err(ctx(
                    "`fields` needs end_time, or answer_time and billsec".into()
                ));
            }
            // Without either, an answered row has no answer time and every answered call
            // would be dead-lettered `inconsistent_answer`: refused here, not per record.
            if mapping.answer_time.is_none() && mapping.billsec.is_none() {
                return Err(ctx("`fields` has neither answer_time nor billsec, so an answered call would have no answer time: map answer_time, or billsec (seconds billed from the answer; the answer is then end_time − billsec)".into()));
            }
            if mapping.disposition.is_none() && mapping.answer_time.is_none() {
                return Err(ctx("`fields` needs disposition or answer_time: otherwise nothing says whether a call was answered".into()));
            }
            if customer == CustomerFrom::Accountcode && mapping.customer_id.is_none() {
                return Err(ctx(
                    "customer = \"accountcode\" needs fields.customer_id".into()
                ));
            }
            Some(mapping)
        } else {
            None
        };
        Ok(Source {
            topic,
            format,
            switch_id,
            timezone,
            plan,
            customer,
            inbound_contexts: self.inbound_contexts,
            columns,
            columns_configured,
            delimiter,
            csv,
            max_call_hours,
            line,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Sources, ConfigError> {
        Sources::parse(Path::new("sources.toml"), text)
    }

    #[test]
    fn the_interface_example_parses_with_defaults() {
        let s = parse(
            r#"
[[source]]
topic = "cdrs-fra1"
format = "asterisk-csv"
switch_id = "fra1"
timezone = "Europe/Berlin"
country_code = "49"
trunk_prefix = "0"
international_prefix = "00"
customer = "number-directory"
"#,
        )
        .unwrap();
        let src = s.get("cdrs-fra1").unwrap();
        assert_eq!(src.format, SourceFormat::AsteriskCsv);
        assert_eq!(src.timezone, Some(chrono_tz::Europe::Berlin));
        assert_eq!(src.columns.len(), 18);
        assert_eq!(src.column("uniqueid"), Some(16));
        assert_eq!(src.plan.short_codes.len(), 5);
        let with = |codes: &str| {
            parse(&format!(
                "[[source]]\ntopic = \"t\"\nformat = \"kazoo-json\"\nswitch_id = \"k\"\nshort_codes = {codes}\n"
            ))
        };
        let s = with(r#"["110", "116xxx", "19222"]"#).unwrap();
        assert_eq!(s.get("t").unwrap().plan.short_codes[1], "116xxx");
        for bad in [r#"["x"]"#, r#"["11x6"]"#, r#"["*31"]"#, r#"[""]"#] {
            let e = with(bad).unwrap_err();
            assert!(e.message.contains("`short_codes` entries"), "{bad}: {e}");
        }
        assert_eq!(s.format_of("cdrs"), SourceFormat::CanonicalJson);
    }

    #[test]
    fn a_csv_source_maps_fields_to_columns() {
        let s = parse(
            r#"
[[source]]
topic = "carrier"
format = "csv"
switch_id = "carrier1"
timezone = "UTC"
columns = ["id", "a", "b", "start", "answer", "end", "status"]
time_format = "%d.%m.%Y %H:%M:%S"
dispositions = { "OK" = "answered", "BUSY" = "busy" }
[source.fields]
cdr_id = "id"
calling_number = "a"
called_number = "b"
start_time = "start"
answer_time = "answer"
end_time = "end"
disposition = "status"
"#,
        )
        .unwrap();
        let m = s.get("carrier").unwrap().csv.as_ref().unwrap();
        assert_eq!((m.cdr_id, m.called_number, m.disposition), (0, 2, Some(6)));
        assert_eq!(m.time_format, TimeFormat::Wall("%d.%m.%Y %H:%M:%S".into()));
        assert_eq!(m.dispositions["OK"], Disposition::Answered);
    }

    #[test]
    fn a_csv_mapping_must_yield_an_answer_time() {
        let csv = |fields: &str| {
            parse(&format!("[[source]]\ntopic = \"c\"\nformat = \"csv\"\nswitch_id = \"k\"\ntimezone = \"UTC\"\ncolumns = [\"id\", \"a\", \"b\", \"s\", \"an\", \"e\", \"bs\", \"st\"]\n[source.fields]\ncdr_id = \"id\"\ncalling_number = \"a\"\ncalled_number = \"b\"\nstart_time = \"s\"\ndisposition = \"st\"\n{fields}"))
        };
        // Audit s15 item 6: end and billsec without an answer column give the answer.
        let m = csv("end_time = \"e\"\nbillsec = \"bs\"\n").unwrap();
        let m = m.get("c").unwrap().csv.as_ref().unwrap();
        assert_eq!(
            (m.answer_time, m.end_time, m.billsec),
            (None, Some(5), Some(6))
        );
        assert!(csv("answer_time = \"an\"\nend_time = \"e\"\n").is_ok());
        assert!(csv("answer_time = \"an\"\nbillsec = \"bs\"\n").is_ok());
        // Only an end: nothing gives an answered call its answer time.
        let e = csv("end_time = \"e\"\n").unwrap_err();
        assert!(
            e.message.contains("neither answer_time nor billsec")
                && e.message.contains("map answer_time, or billsec"),
            "{e}"
        );
    }

    #[test]
    fn inbound_contexts_only_for_formats_with_a_context() {
        let with = |format: &str, extra: &str| {
            parse(&format!("[[source]]\ntopic = \"t\"\nformat = \"{format}\"\nswitch_id = \"k\"\ntimezone = \"UTC\"\ninbound_contexts = [\"from-carrier\"]\n{extra}"))
        };
        for format in ["asterisk-csv", "freeswitch-json", "freeswitch-csv"] {
            assert!(with(format, "").is_ok(), "{format}");
        }
        let csv = "columns = [\"id\", \"a\", \"b\", \"s\", \"e\"]\n[source.fields]\ncdr_id = \"id\"\ncalling_number = \"a\"\ncalled_number = \"b\"\nstart_time = \"s\"\nend_time = \"e\"\nanswer_time = \"e\"\n";
        for (format, extra) in [("kazoo-json", ""), ("kamailio-json", ""), ("csv", csv)] {
            let e = with(format, extra).unwrap_err();
            assert!(
                e.message.contains("`inbound_contexts` applies to")
                    && e.message.contains("would be ignored"),
                "{format}: {e}"
            );
        }
    }

    #[test]
    fn a_time_format_with_an_offset_needs_no_zone_and_zone_names_are_refused() {
        let csv = |tz: &str, tf: &str| {
            parse(&format!("[[source]]\ntopic = \"c\"\nformat = \"csv\"\nswitch_id = \"k\"\n{tz}columns = [\"id\", \"a\", \"b\", \"s\", \"e\"]\ntime_format = \"{tf}\"\n[source.fields]\ncdr_id = \"id\"\ncalling_number = \"a\"\ncalled_number = \"b\"\nstart_time = \"s\"\nend_time = \"e\"\nanswer_time = \"e\"\n"))
        };
        for tf in ["%Y-%m-%d %H:%M:%S%z", "%d.%m.%Y %H:%M:%S %:z", "%+"] {
            let s = csv("", tf).unwrap();
            assert_eq!(
                s.get("c").unwrap().csv.as_ref().unwrap().time_format,
                TimeFormat::WithOffset(tf.into())
            );
        }
        assert_eq!(
            csv("timezone = \"UTC\"\n", "%H:%M 100%%z")
                .unwrap()
                .get("c")
                .unwrap()
                .csv
                .as_ref()
                .unwrap()
                .time_format,
            TimeFormat::Wall("%H:%M 100%%z".into())
        );
        let e = csv("timezone = \"Europe/Berlin\"\n", "%Y-%m-%d %H:%M:%S %Z").unwrap_err();
        assert!(e.message.contains("uses %Z"), "{e}");
    }

    #[test]
    fn errors_name_the_line_and_the_fix() {
        let e = parse("[[source]]\ntopic = \"a\"\nformat = \"canonical-json\"\n\n[[source]]\ntopic = \"b\"\nformat = \"asterisk-csv\"\nswitch_id = \"x\"\n").unwrap_err();
        assert_eq!(e.line, Some(5));
        assert!(e.message.contains("`timezone` is required"), "{e}");
        let e = parse("[[source]]\ntopic = \"b\"\nformat = \"kamailio\"\n").unwrap_err();
        assert!(e.message.contains("unknown format"), "{e}");
        let e = parse("[[source]]\ntopic = \"b\"\nformat = \"kazoo-json\"\n").unwrap_err();
        assert!(e.message.contains("`switch_id` is required"), "{e}");
        let e = parse("[[source]]\ntopic = \"b\"\nformat = \"kazoo-json\"\nswitch_id = \"k\"\ntimezone = \"Berlin\"\n").unwrap_err();
        assert!(e.message.contains("IANA"), "{e}");
        let e = parse("[[source]]\ntopic = \"b\"\nformat = \"kazoo-json\"\nswitch_id = \"k\"\n[[source]]\ntopic = \"b\"\nformat = \"kazoo-json\"\nswitch_id = \"k\"\n").unwrap_err();
        assert!(e.message.contains("configured twice"), "{e}");
        let e = parse(
            "[[source]]\ntopic = \"b\"\nformat = \"kazoo-json\"\nswitch_id = \"k\"\nswitchid = 1\n",
        )
        .unwrap_err();
        assert!(e.message.contains("unknown field"), "{e}");
        let e = parse("[[source]]\ntopic = \"b\"\nformat = \"asterisk-csv\"\nswitch_id = \"k\"\ntimezone = \"UTC\"\ncolumns = [\"src\", \"dst\"]\n").unwrap_err();
        assert!(e.message.contains("lacks \"start\""), "{e}");
        let e = parse("[[source]]\ntopic = \"c\"\nformat = \"csv\"\nswitch_id = \"k\"\ntimezone = \"UTC\"\ncolumns = [\"id\"]\n[source.fields]\ncdr_id = \"id\"\ncalling_number = \"a\"\ncalled_number = \"b\"\nstart_time = \"s\"\n").unwrap_err();
        assert!(e.message.contains("not in `columns`"), "{e}");
        let e = parse("[[source]]\ntopic = \"b\"\nformat = \"kazoo-json\"\nswitch_id = \"k\"\ncountry_code = \"+49\"\n").unwrap_err();
        assert!(e.message.contains("country_code"), "{e}");
        let e = parse("[[source]]\ntopic = \"b\"\nformat = \"kazoo-json\"\nswitch_id = \"k\"\nmax_call_hours = 4\n").unwrap_err();
        assert!(
            e.message.contains("applies to format \"kamailio-json\""),
            "{e}"
        );
        let e = parse("[[source]]\ntopic = \"b\"\nformat = \"kamailio-json\"\nswitch_id = \"k\"\nmax_call_hours = 0\n").unwrap_err();
        assert!(e.message.contains("1 to 336"), "{e}");
        let csv = "[[source]]\ntopic = \"c\"\nformat = \"csv\"\nswitch_id = \"k\"\ntimezone = \"UTC\"\ncolumns = [\"id\", \"a\", \"b\", \"s\"]\ntime_format = \"%Q\"\n[source.fields]\ncdr_id = \"id\"\ncalling_number = \"a\"\ncalled_number = \"b\"\nstart_time = \"s\"\n";
        let e = parse(csv).unwrap_err();
        assert!(e.message.contains("not a valid strftime pattern"), "{e}");
        let e = parse(&csv.replace("%Q", "%d.%m.%Y %H:%M:%S")).unwrap_err();
        assert!(!e.message.contains("time_format"), "{e}");
    }

    #[test]
    fn kamailio_waits_a_day_for_a_call_end_unless_told() {
        let s =
            parse("[[source]]\ntopic = \"k\"\nformat = \"kamailio-json\"\nswitch_id = \"kam1\"\n")
                .unwrap();
        let k = s.get("k").unwrap();
        assert_eq!(
            (k.format, k.max_call_hours, k.timezone),
            (SourceFormat::KamailioJson, 24, None)
        );
        let s = parse("[[source]]\ntopic = \"k\"\nformat = \"kamailio-json\"\nswitch_id = \"kam1\"\nmax_call_hours = 72\n")
            .unwrap();
        assert_eq!(s.get("k").unwrap().max_call_hours, 72);
    }
}
