//! The portal download service behind `evn serve` (INTERFACES.md §5): customers fetch their own
//! EVNs over HTTPS, and nobody else's.
//!
//! A request goes through four gates, in this order, and only the last touches the disk:
//! 1. **Authentication** ([`auth`]): a bearer JWT (HS256 with `EVN_PORTAL_SECRET`, or RS256/ES256
//!    with a public key and then always a required `aud`, `iss` if configured), `exp` required
//!    and at most [`auth::MAX_LIFETIME`] ahead → otherwise 401.
//! 2. **Authorisation**: the token's `sub` must equal the customer id in the path, byte for
//!    byte → otherwise 403, decided before any file is looked at, so a 403 says nothing about
//!    whether that customer or month exists.
//! 3. **Validation** ([`paths`]): customer id, month and version against strict patterns → 400
//!    or 404. File names are built from the validated values only.
//! 4. **Lookup** ([`store`]): the month's manifests say which versions exist; the file is opened
//!    without following symlinks and must be a regular file.
//!
//! The same gates hold for the download page (issue 11, [`page`], [`session`]): its session
//! cookie carries the portal's token and is verified like a bearer token on every request.
//!
//! [`router`] is the whole HTTP surface (tests drive it in memory); [`bind`] + [`Server::run`]
//! serve it over TCP, plain or TLS 1.2+, with graceful shutdown. Metrics ([`PortalMetrics`])
//! and [`watch_health`] are for the separate `--metrics-listen` port (`evn-metrics`).

pub mod auth;
mod http;
pub mod metrics;
pub mod page;
pub mod paths;
pub mod revoke;
mod server;
pub mod session;
pub mod store;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use auth::{mint_hs256, parse_ttl, AuthConfig, HmacSecret, PublicKey};
pub use http::router;
pub use metrics::PortalMetrics;
pub use paths::{CustomerId, Format, Month};
pub use revoke::Revocations;
pub use server::{bind, Server};

/// Downloads streamed at once; more wait up to [`DEFAULT_QUEUE_TIMEOUT`] for a slot.
pub const DEFAULT_MAX_CONCURRENT_DOWNLOADS: usize = 64;
/// How long a download waits for a slot before it is answered 503 with `Retry-After`.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);
/// From the request head to the response head (not the body: that streams as fast as the
/// client reads).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A client must send its request head (and finish the TLS handshake) within this time.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection is asked to close after this long, then given [`DEFAULT_SHUTDOWN_GRACE`]: a
/// client that stops reading cannot hold a download slot for ever.
pub const DEFAULT_MAX_CONNECTION_AGE: Duration = Duration::from_secs(600);
/// How long in-flight responses may run on after shutdown was asked for (SIGTERM).
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// Who may show the download page in a frame (CSP `frame-ancestors`): nobody, unless the
/// operator names the portal's origin.
pub const DEFAULT_FRAME_ANCESTORS: &str = "'none'";
/// How often [`watch_health`] looks at the EVN folder.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// Certificate chain and private key, both PEM.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Everything `evn serve` is configured with. Built by [`ServeOptions::new`] with the
/// `DEFAULT_*` values; the binary overrides what its flags say.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The billing run's output folder: `EVN_DIR/YYYY-MM/<customer>.v<N>.pdf` + manifests.
    pub evn_dir: PathBuf,
    pub auth: AuthConfig,
    /// `None`: plain HTTP (behind an ingress that terminates TLS).
    pub tls: Option<TlsFiles>,
    pub max_concurrent_downloads: usize,
    pub queue_timeout: Duration,
    pub request_timeout: Duration,
    pub header_read_timeout: Duration,
    pub max_connection_age: Duration,
    pub shutdown_grace: Duration,
    /// Data keys to open EVNs sealed at rest (`EVN_DATA_KEY_FILE`).
    pub keys: Option<std::sync::Arc<evn_keys::Keyring>>,
    /// CSP `frame-ancestors` of the download page: `'none'`, `'self'` or origins such as
    /// `https://portal.example.de`, separated by spaces. Framed, the session cookie
    /// (`SameSite=Strict`) is only sent when the framing page is on the same site.
    pub frame_ancestors: String,
    /// Counted whether or not anything serves them.
    pub metrics: PortalMetrics,
}

impl ServeOptions {
    pub fn new(evn_dir: impl Into<PathBuf>, auth: AuthConfig) -> Self {
        ServeOptions {
            evn_dir: evn_dir.into(),
            auth,
            tls: None,
            max_concurrent_downloads: DEFAULT_MAX_CONCURRENT_DOWNLOADS,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connection_age: DEFAULT_MAX_CONNECTION_AGE,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            keys: None,
            frame_ancestors: DEFAULT_FRAME_ANCESTORS.to_owned(),
            metrics: PortalMetrics::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error("EVN_PORTAL_SECRET is {len} bytes long; use at least {min} random bytes (e.g. `openssl rand -hex 32`)")]
    SecretTooShort { len: usize, min: usize },
    #[error("no token key configured: set EVN_PORTAL_SECRET (HS256) or give a public key file (RS256/ES256)")]
    NoKey,
    #[error("a token public key (--jwt-public-key) needs an audience (--jwt-audience or EVN_PORTAL_AUDIENCE): the identity provider signs tokens for its other applications with the same key, and only `aud` tells this portal's apart")]
    AudienceRequired,
    #[error("--jwt-issuer needs --jwt-public-key: it is checked on the identity provider's tokens, and tokens signed with EVN_PORTAL_SECRET name no issuer")]
    IssuerWithoutPublicKey,
    #[error("{flag} is empty; give the value the identity provider puts in the token, or leave the option out")]
    EmptyClaim { flag: &'static str },
    #[error("{path}: not a usable public key: {detail}; expected a PEM RSA (RS256) or P-256 EC (ES256) public key")]
    PublicKey { path: PathBuf, detail: String },
    #[error("--ttl {input:?}: {detail}")]
    Ttl { input: String, detail: String },
    #[error("customer id {input:?} must be 1 to {max} letters, digits, `_` or `-`", max = paths::MAX_CUSTOMER_ID_LEN)]
    CustomerId { input: String },
    #[error("EVN folder {path}: {cause}; point --evn at the billing run's --out folder")]
    EvnDir {
        path: PathBuf,
        /// Not `source`: the message already says it, and the binary prints the chain.
        cause: std::io::Error,
    },
    #[error("{path}: {detail}")]
    Tls { path: PathBuf, detail: String },
    #[error("cannot listen on {addr}: {cause}")]
    Bind {
        addr: SocketAddr,
        /// Not `source`: the message already says it, and the binary prints the chain.
        cause: std::io::Error,
    },
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        /// Not `source`: the message already says it, and the binary prints the chain.
        cause: std::io::Error,
    },
    #[error("{path}, line {line}: {detail}; each line is `customer_id,revoked_at` (or `*,revoked_at`), e.g. K1001,2026-11-27T10:00:00Z")]
    Revocations {
        path: PathBuf,
        line: usize,
        detail: String,
    },
    #[error("{path}: damaged manifest: {detail}; re-run the billing run for that month or restore the file")]
    Manifest { path: PathBuf, detail: String },
    #[error("--frame-ancestors {input:?}: {detail}; give 'none', 'self' or origins like https://portal.example.de, separated by spaces")]
    FrameAncestors { input: String, detail: &'static str },
}

impl PortalError {
    /// 2 for what the operator configured wrongly, 1 for what went wrong at run time.
    pub fn exit_code(&self) -> i32 {
        match self {
            PortalError::SecretTooShort { .. }
            | PortalError::NoKey
            | PortalError::PublicKey { .. }
            | PortalError::AudienceRequired
            | PortalError::IssuerWithoutPublicKey
            | PortalError::EmptyClaim { .. }
            | PortalError::Ttl { .. }
            | PortalError::CustomerId { .. }
            | PortalError::EvnDir { .. }
            | PortalError::Tls { .. }
            | PortalError::FrameAncestors { .. }
            | PortalError::Revocations { .. } => 2,
            PortalError::Bind { .. } | PortalError::Io { .. } | PortalError::Manifest { .. } => 1,
        }
    }
}

/// The sources of CSP `frame-ancestors`, normalised to single spaces: `'none'` (alone),
/// `'self'`, or `scheme://host[:port]` / `https:` sources. Refused: anything that could end the
/// directive or the header (`;`, `,`, quotes, control characters) and `*`, which would undo it.
pub fn check_frame_ancestors(input: &str) -> Result<String, PortalError> {
    let err = |detail| PortalError::FrameAncestors {
        input: input.to_owned(),
        detail,
    };
    let sources: Vec<&str> = input.split_ascii_whitespace().collect();
    if sources.is_empty() {
        return Err(err("empty"));
    }
    for s in &sources {
        match *s {
            "'none'" if sources.len() == 1 => {}
            "'none'" => return Err(err("'none' cannot be combined with other sources")),
            "'self'" => {}
            "*" => return Err(err("* would let any site frame the page")),
            _ => {
                let ok =
                    s.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b':' | b'/' | b'.' | b'-' | b'*')
                    }) && (s.starts_with("https://") || s.starts_with("http://") || *s == "https:");
                if !ok {
                    return Err(err("not a source expression"));
                }
            }
        }
    }
    Ok(sources.join(" "))
}

/// Keeps `health` current for `--metrics-listen`: alive while this loop runs, ready while the
/// EVN folder opens (checked every [`HEALTH_INTERVAL`]; a check that hangs, as on a dead
/// network volume, counts as not ready). Runs until dropped.
pub async fn watch_health(evn_dir: PathBuf, health: std::sync::Arc<evn_metrics::Health>) {
    loop {
        health.beat();
        let dir = evn_dir.clone();
        // Opened afresh each time: the root's own mount may be what went away.
        let check = tokio::task::spawn_blocking(move || store::EvnStore::open(&dir)?.check());
        let ready = matches!(
            tokio::time::timeout(HEALTH_INTERVAL, check).await,
            Ok(Ok(Ok(())))
        );
        health.set_ready(ready);
        tokio::time::sleep(HEALTH_INTERVAL).await;
    }
}
