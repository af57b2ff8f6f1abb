//! `evn erase`: removes a former customer's traffic data and EVNs on request (GDPR Art. 17),
//! where the law allows it; otherwise says why not and changes nothing (see
//! [`crate::plan::check_erase`] for the rules).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::NaiveDate;

use evn_config::CustomerDirectory;
use evn_keys::Keyring;
use evn_rating::BillingMonth;

use crate::evn_dir;
use crate::fsops;
use crate::plan::{check_erase, MonthState, Refusal};
use crate::retention::Action;
use crate::{LegalHold, PrivacyError};

pub struct EraseOptions {
    pub customer_id: String,
    pub data: PathBuf,
    pub evn: PathBuf,
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
    for month in evn_store::list_months(&opts.data)? {
        let mut found = false;
        for file in evn_store::list_month_files(&opts.data, month)? {
            evn_store::read_file_with(&file, opts.keys.as_ref(), &mut |c| {
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
        let has_files =
            !evn_dir::files_of(&evn_dir::month_dir(&opts.evn, month), &opts.customer_id)?
                .is_empty();
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
        states.push(MonthState {
            month,
            sent: evn_dir::billed(&opts.evn, month)?.sent,
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
            let changes = fsops::rewrite_month(
                &evn_store::month_dir(&opts.data, month),
                &evn_store::list_month_files(&opts.data, month)?,
                &keep,
                opts.keys.as_ref(),
                opts.dry_run,
            )?;
            for (path, rewrite) in changes {
                rows += rewrite.dropped;
                report(&Action::RewriteData { path, rewrite });
            }
        }
        let dir = evn_dir::month_dir(&opts.evn, month);
        let keep = |other: &str| other != id;
        for (path, removed) in evn_dir::filter_manifests(&dir, &keep, opts.dry_run)? {
            report(&Action::EditManifest { path, removed });
        }
        // Only this customer's files: anything else in the folder is not ours to judge.
        let doomed = evn_dir::files_of(&dir, id)?;
        for path in &doomed {
            evn_files += 1;
            report(&Action::DeleteEvnFile { path: path.clone() });
        }
        if !opts.dry_run {
            evn_dir::remove_entries(&dir, &doomed)?;
        }
    }
    Ok(EraseOutcome::Erased { rows, evn_files })
}
