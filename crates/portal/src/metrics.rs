//! `evn serve`'s Prometheus metrics (issue 9), served on `--metrics-listen` by `evn-metrics`.
//! Counted where the access log line is written, so the two cannot drift; bytes as they are
//! handed to the connection, so an aborted download counts what was really sent.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::paths::Format;

/// The route template (`/customers/{id}/evn/{file}`), never the raw path: a bounded set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FormatStatus {
    format: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FormatLabel {
    format: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

fn duration_histogram() -> Histogram {
    // 0.5 ms … 16 s: a cached manifest answers in well under a millisecond, a cold one on a
    // network volume in hundreds; beyond that the request timeout (30 s) is near.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Cheap to clone (every metric is shared behind an `Arc`). Unregistered metrics still count,
/// so the service needs no `if metrics` anywhere.
#[derive(Clone, Debug)]
pub struct PortalMetrics {
    requests: Family<RouteStatus, Counter>,
    duration: Family<RouteLabel, Histogram, fn() -> Histogram>,
    downloads: Family<FormatStatus, Counter>,
    bytes: Family<FormatLabel, Counter>,
    in_flight: Gauge,
    refused: Family<ReasonLabel, Counter>,
}

impl Default for PortalMetrics {
    fn default() -> Self {
        PortalMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            downloads: Family::default(),
            bytes: Family::default(),
            in_flight: Gauge::default(),
            refused: Family::default(),
        }
    }
}

/// The `format` label of a download request, from its path alone (also for the 401 and 403
/// answers given before the path is looked at).
pub(crate) fn format_label(path: &str) -> &'static str {
    if path.ends_with(".pdf") {
        "pdf"
    } else if path.ends_with(".csv") {
        "csv"
    } else {
        "other"
    }
}

impl PortalMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "evn_portal_requests",
            "HTTP requests answered, by route template and status code",
            self.requests.clone(),
        );
        registry.register(
            "evn_portal_request_duration_seconds",
            "Time from a request to its response head (a download's body streams after)",
            self.duration.clone(),
        );
        registry.register(
            "evn_portal_downloads",
            "EVN download requests (GET and HEAD) by format (pdf, csv) and status code",
            self.downloads.clone(),
        );
        registry.register(
            "evn_portal_download_bytes",
            "EVN bytes handed to the connection, by format",
            self.bytes.clone(),
        );
        registry.register(
            "evn_portal_downloads_in_flight",
            "Downloads holding a slot (see --max-concurrent-downloads)",
            self.in_flight.clone(),
        );
        registry.register(
            "evn_portal_tokens_refused",
            "Bearer tokens and session cookies refused, by reason",
            self.refused.clone(),
        );
    }

    pub(crate) fn answered(&self, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RouteStatus {
                route: route.to_owned(),
                status: status.to_string(),
            })
            .inc();
        self.duration
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    pub(crate) fn download(&self, format: &str, status: u16) {
        self.downloads
            .get_or_create(&FormatStatus {
                format: format.to_owned(),
                status: status.to_string(),
            })
            .inc();
    }

    pub(crate) fn refused(&self, reason: &'static str) {
        self.refused
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The counter a streaming download adds its bytes to.
    pub(crate) fn bytes_counter(&self, format: Format) -> Counter {
        self.bytes
            .get_or_create(&FormatLabel {
                format: format.extension().to_owned(),
            })
            .clone()
    }

    pub(crate) fn in_flight(&self) -> Gauge {
        self.in_flight.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_house_style() {
        let m = PortalMetrics::default();
        let mut registry = Registry::default();
        m.register(&mut registry);
        m.answered("/customers/{id}/evn/{file}", 200, 0.002);
        m.download("csv", 200);
        m.bytes_counter(Format::Csv).inc_by(1234);
        m.refused("expired");
        let text = evn_metrics::encode(&registry);
        for line in [
            "evn_portal_requests_total{route=\"/customers/{id}/evn/{file}\",status=\"200\"} 1",
            "evn_portal_downloads_total{format=\"csv\",status=\"200\"} 1",
            "evn_portal_download_bytes_total{format=\"csv\"} 1234",
            "evn_portal_tokens_refused_total{reason=\"expired\"} 1",
            "evn_portal_request_duration_seconds_count{route=\"/customers/{id}/evn/{file}\"} 1",
            "evn_portal_downloads_in_flight 0",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert_eq!(format_label("/customers/K1/evn/2026-11.pdf"), "pdf");
        assert_eq!(format_label("/customers/K1/evn/2026-11.csv"), "csv");
        assert_eq!(format_label("/customers/K1/evn/x"), "other");
    }
}
