//! `evn erase`: removes a former customer's traffic data and EVNs on request (GDPR Art. 17),
//! where the law allows it; otherwise says why not and changes nothing (see
//! [`crate::plan::check_erase`] for the rules).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;

use evn_config::CustomerDirectory;
use evn_keys::Keyring;
use evn_rating::BillingMonth;
use evn_store::Location;

use crate::plan::{check_erase, MonthState, Refusal};
use crate::retention::Action;
use crate::{data_dir, evn_dir};
use crate::{LegalHold, PrivacyError};

pub struct EraseOptions {
    pub customer_id: String,
    /// A local folder or an object store (`s3://…`).
    pub data: Location,
    pub evn: Location,
    /// The date in Europe/Berlin the objection period is measured against.
    pub today: NaiveDate,
    pub dry_run: bool,
    pub keys: Option<Arc<Keyring>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EraseOutcome {
    /// Nothing changed; every reason is listed.
    Refused(Vec<Refusal>),
    Erased {
        rows: usize,
        evn_files: usize,
    },
}

/// Where a customer has data: per month, whether rows, whether EVN files or manifest entries.
fn footprint(opts: &EraseOptions) -> Result<BTreeMap<BillingMonth, bool>, PrivacyError> {
    let mut months = BTreeMap::new();
    for month in opts.data.list_months()? {
        let mut found = false;
        for file in opts.data.list_month_files(month)? {
            opts.data
                .read_file_with(&file, opts.keys.as_ref(), &mut |c| {
                    found |= c.call.customer_id == opts.customer_id;
                })?;
        }
        if found {
            months.insert(month, true);
        }
    }
    for month in evn_dir::evn_months(&opts.evn)? {
        let listed = evn_dir::billed(&opts.evn, month)?
            .customers
            .contains(&opts.customer_id);
        let has_files = !evn_dir::files_of(&opts.evn, month, &opts.customer_id)?.is_empty();
        if listed || has_files {
            months.entry(month).or_insert(false);
        }
    }
    Ok(months)
}

pub fn erase(
    customers: &CustomerDirectory,
    holds: &[LegalHold],
    opts: &EraseOptions,
    report: &mut dyn FnMut(&Action),
) -> Result<EraseOutcome, PrivacyError> {
    let id = opts.customer_id.as_str();
    let footprint = footprint(opts)?;
    let mut states = Vec::new();
    for &month in footprint.keys() {
        // The objection period runs from this customer's own latest bill.
        states.push(MonthState {
            month,
            sent: evn_dir::billed(&opts.evn, month)?.sent_to(id),
            sent_later: Default::default(),
        });
    }
    let listed = !customers.rows(id).is_empty();
    let refusals = check_erase(id, listed, holds, &states, opts.today);
    if !refusals.is_empty() {
        return Ok(EraseOutcome::Refused(refusals));
    }
    let (mut rows, mut evn_files) = (0, 0);
    for (&month, &has_rows) in &footprint {
        if has_rows {
            let keep = |c: &evn_store::StoredCall| c.call.customer_id != id;
            let changes = data_dir::rewrite_month(
                &opts.data,
                month,
                &keep,
                opts.keys.as_ref(),
                opts.dry_run,
            )?;
            for (path, rewrite) in changes {
                rows += rewrite.dropped;
                report(&Action::RewriteData { path, rewrite });
            }
        }
        let keep = |other: &str| other != id;
        for (path, removed) in evn_dir::filter_manifests(&opts.evn, month, &keep, opts.dry_run)? {
            report(&Action::EditManifest { path, removed });
        }
        // Only this customer's files: anything else in the folder is not ours to judge.
        let doomed = evn_dir::files_of(&opts.evn, month, id)?;
        for e in &doomed {
            evn_files += 1;
            report(&Action::DeleteEvnFile {
                path: e.shown.clone(),
            });
        }
        if !opts.dry_run {
            evn_dir::remove_entries(&opts.evn, month, &doomed)?;
        }
    }
    Ok(EraseOutcome::Erased { rows, evn_files })
}
