//! Prometheus metrics and health endpoints for the long-running commands (`ingest`, `serve`).
//!
//! Each command registers its own metrics in a [`Registry`]; this crate only exposes them, with
//! liveness and readiness, over plain HTTP (`--metrics-listen`), the way a Prometheus scrape and
//! a Kubernetes probe expect them. Metric names follow STYLE.md: `evn_<what>_<unit>_total`
//! (prometheus-client appends `_total` to counters itself).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub use prometheus_client;
use prometheus_client::registry::Registry;

/// The content type of the OpenMetrics text exposition, which Prometheus negotiates.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Liveness and readiness as the owning loop reports them.
///
/// Alive: the loop has beaten within `stall_after` (a wedged loop gets the pod restarted).
/// Ready: the loop says it can do its work (for ingest: the broker answers).
#[derive(Debug)]
pub struct Health {
    ready: AtomicBool,
    /// Unix milliseconds of the last heartbeat; 0 before the first one.
    beat_ms: AtomicU64,
    stall_after: Duration,
}

impl Health {
    pub fn new(stall_after: Duration) -> Self {
        Health {
            ready: AtomicBool::new(false),
            beat_ms: AtomicU64::new(0),
            stall_after,
        }
    }

    pub fn set_ready(&self, ready: bool) {
        let was = self.ready.swap(ready, Ordering::Relaxed);
        if was != ready {
            tracing::info!(ready, "readiness changed");
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn beat(&self) {
        self.beat_ms.store(now_ms(), Ordering::Relaxed);
    }

    pub fn is_alive(&self) -> bool {
        let beat = self.beat_ms.load(Ordering::Relaxed);
        beat == 0 || now_ms().saturating_sub(beat) <= self.stall_after.as_millis() as u64
    }
}

impl Default for Health {
    /// A loop that has not beaten for two minutes is stuck, not busy: every loop here ticks at
    /// least once a second.
    fn default() -> Self {
        Health::new(Duration::from_secs(120))
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Clone)]
struct Shared {
    registry: Arc<Registry>,
    health: Arc<Health>,
}

/// `GET /metrics`, `GET /healthz` (liveness), `GET /readyz` (readiness).
pub fn router(registry: Arc<Registry>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Shared { registry, health })
}

/// The registry in the OpenMetrics text format.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)
        .expect("writing to a String cannot fail");
    text
}

async fn metrics(State(s): State<Shared>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], encode(&s.registry)).into_response()
}

async fn healthz(State(s): State<Shared>) -> Response {
    if s.health.is_alive() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "stalled\n").into_response()
    }
}

async fn readyz(State(s): State<Shared>) -> Response {
    if s.health.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// Serves [`router`] on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(registry, health))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn counters_are_exposed_with_the_total_suffix() {
        let mut registry = Registry::default();
        let c = Counter::<u64>::default();
        registry.register("evn_test_records", "records seen", c.clone());
        c.inc_by(3);
        let text = encode(&registry);
        assert!(text.contains("evn_test_records_total 3"), "{text}");
    }

    #[test]
    fn a_loop_that_stops_beating_is_not_alive() {
        let h = Health::new(Duration::from_millis(0));
        assert!(h.is_alive(), "alive before the first beat");
        h.beat_ms.store(now_ms() - 10, Ordering::Relaxed);
        assert!(!h.is_alive());
        h.beat();
        assert!(Health::default().is_alive());
        assert!(!h.is_ready());
        h.set_ready(true);
        assert!(h.is_ready());
    }
}
