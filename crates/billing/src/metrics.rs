//! The billing run's Prometheus metrics. Counted when a batch is published (not when rendered),
//! so they count only EVNs that are on disk, like the run's report.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Cheap to clone (shared counters); unregistered metrics still count.
#[derive(Clone, Debug)]
pub struct Metrics {
    rendered: Counter,
    unchanged: Counter,
    pages: Counter,
    rows: Counter,
    render_seconds: Histogram,
    customers_planned: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            rendered: Counter::default(),
            unchanged: Counter::default(),
            pages: Counter::default(),
            rows: Counter::default(),
            // 0.5 ms … 16 s: a one-page EVN takes about a millisecond, 2,000 pages seconds.
            render_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            customers_planned: Gauge::default(),
        }
    }
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "evn_bill_evns_rendered",
            "EVNs written as a new version",
            self.rendered.clone(),
        );
        registry.register(
            "evn_bill_evns_unchanged",
            "EVNs equal to their current version: nothing written",
            self.unchanged.clone(),
        );
        registry.register(
            "evn_bill_pages",
            "Pages of the EVNs written",
            self.pages.clone(),
        );
        registry.register(
            "evn_bill_rows_read",
            "Stored calls read from the month's Parquet files",
            self.rows.clone(),
        );
        registry.register(
            "evn_bill_render_seconds",
            "Time to render one EVN (PDF and CSV)",
            self.render_seconds.clone(),
        );
        registry.register(
            "evn_bill_customers",
            "Customers this run covers (its shard), known after the month is read",
            self.customers_planned.clone(),
        );
    }

    pub(crate) fn planned(&self, customers: usize, rows: usize) {
        self.customers_planned.set(customers as i64);
        self.rows.inc_by(rows as u64);
    }

    pub(crate) fn published(&self, pages: Option<usize>, render_seconds: Option<f64>) {
        match pages {
            Some(p) => {
                self.rendered.inc();
                self.pages.inc_by(p as u64);
            }
            None => {
                self.unchanged.inc();
            }
        }
        if let Some(s) = render_seconds {
            self.render_seconds.observe(s);
        }
    }

    pub fn rendered(&self) -> u64 {
        self.rendered.get()
    }

    pub fn pages(&self) -> u64 {
        self.pages.get()
    }
}
