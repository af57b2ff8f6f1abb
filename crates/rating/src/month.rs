//! The billing month: the Europe/Berlin calendar month of a call's start.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Europe::Berlin;

/// The calendar day in Berlin of an instant: the date a German document is dated with, whatever
/// the machine's own time zone (containers run in UTC).
pub fn berlin_date(instant: DateTime<Utc>) -> NaiveDate {
    instant.with_timezone(&Berlin).date_naive()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BillingMonth {
    year: i32,
    month: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a month like 2026-11")]
pub struct MonthError(pub String);

impl BillingMonth {
    pub fn new(year: i32, month: u32) -> Option<Self> {
        ((1..=12).contains(&month) && (1970..=9999).contains(&year))
            .then_some(BillingMonth { year, month })
    }

    /// The month in Berlin of an instant: DST and month ends handled by the tz database.
    pub fn of(instant: DateTime<Utc>) -> Self {
        let local = instant.with_timezone(&Berlin);
        BillingMonth {
            year: local.year(),
            month: local.month(),
        }
    }

    /// The month of a Berlin calendar day ([`berlin_date`]): for a caller that has the day
    /// already, the same month as [`BillingMonth::of`] without a second time-zone lookup.
    pub fn of_date(date: NaiveDate) -> Self {
        BillingMonth {
            year: date.year(),
            month: date.month(),
        }
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn month(self) -> u32 {
        self.month
    }

    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).expect("validated month")
    }

    pub fn next(self) -> Self {
        if self.month == 12 {
            BillingMonth {
                year: self.year + 1,
                month: 1,
            }
        } else {
            BillingMonth {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    pub fn prev(self) -> Self {
        if self.month == 1 {
            BillingMonth {
                year: self.year - 1,
                month: 12,
            }
        } else {
            BillingMonth {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    pub fn last_day(self) -> NaiveDate {
        self.next()
            .first_day()
            .pred_opt()
            .expect("not the first day ever")
    }

    /// The UTC instants `[start, end)` of this month in Berlin.
    pub fn utc_range(self) -> (DateTime<Utc>, DateTime<Utc>) {
        let start = |m: BillingMonth| {
            Berlin
                .from_local_datetime(&m.first_day().and_hms_opt(0, 0, 0).expect("midnight"))
                // Midnight is never inside a DST gap in Europe/Berlin (changes happen at 02:00/03:00).
                .earliest()
                .expect("midnight exists in Europe/Berlin")
                .with_timezone(&Utc)
        };
        (start(self), start(self.next()))
    }
}

impl fmt::Display for BillingMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for BillingMonth {
    type Err = MonthError;
    fn from_str(s: &str) -> Result<Self, MonthError> {
        let err = || MonthError(s.to_owned());
        let b = s.as_bytes();
        if b.len() != 7 || b[4] != b'-' || !b[..4].iter().chain(&b[5..]).all(u8::is_ascii_digit) {
            return Err(err());
        }
        let year = s[..4].parse().map_err(|_| err())?;
        let month = s[5..].parse().map_err(|_| err())?;
        BillingMonth::new(year, month).ok_or_else(err)
    }
}
