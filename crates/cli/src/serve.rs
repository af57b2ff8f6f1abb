//! `evn serve` and `evn token`: flags and environment → `evn-portal`, banner, exit codes.

use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::{shutdown_signal, usage, Failure};

/// The HS256 key of portal tokens (INTERFACES.md §4), at least 32 bytes.
pub const SECRET_ENV: &str = "EVN_PORTAL_SECRET";

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The billing run's output folder (`evn bill --out`), or its object store URL.
    #[arg(long)]
    evn: PathBuf,
    /// Address to listen on; port 0 picks a free one (the banner says which).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// PEM certificate chain: serve HTTPS (TLS 1.2 and 1.3). Without it, plain HTTP for use
    /// behind an ingress that terminates TLS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM public key of a token issuer: RSA for RS256, P-256 EC for ES256. Accepted besides or
    /// instead of HS256 tokens signed with EVN_PORTAL_SECRET.
    #[arg(long, env = "EVN_PORTAL_PUBLIC_KEY_FILE")]
    jwt_public_key: Option<PathBuf>,
    /// Require this `aud` claim in every token. Required with --jwt-public-key: the identity
    /// provider signs its other applications' tokens with the same key. Without a public key,
    /// optional (`aud` is then not checked).
    #[arg(long, env = "EVN_PORTAL_AUDIENCE")]
    jwt_audience: Option<String>,
    /// Require this `iss` claim in tokens verified with --jwt-public-key (the identity
    /// provider's issuer URL). HS256 tokens of `evn token` carry no issuer and are not asked.
    #[arg(long, env = "EVN_PORTAL_ISSUER")]
    jwt_issuer: Option<String>,
    /// Revoked tokens: lines `customer_id,revoked_at` (RFC 3339; `*` for every customer).
    /// Tokens of that customer issued at or before that moment are refused, before their
    /// expiry. Read again within seconds of a change; no restart needed.
    #[arg(long, env = "EVN_PORTAL_REVOKED_FILE")]
    revoked: Option<PathBuf>,
    /// Downloads streamed at once; more wait for a slot (see --queue-timeout-secs).
    #[arg(long, default_value_t = evn_portal::DEFAULT_MAX_CONCURRENT_DOWNLOADS)]
    max_concurrent_downloads: usize,
    /// How long a download waits for a slot before it is answered 503 with Retry-After.
    #[arg(long, default_value_t = evn_portal::DEFAULT_QUEUE_TIMEOUT.as_secs())]
    queue_timeout_secs: u64,
    /// Longest time from a request to its response head.
    #[arg(long, default_value_t = evn_portal::DEFAULT_REQUEST_TIMEOUT.as_secs())]
    request_timeout_secs: u64,
    /// A connection is closed after this long (a stalled client cannot hold a slot for ever).
    #[arg(long, default_value_t = evn_portal::DEFAULT_MAX_CONNECTION_AGE.as_secs())]
    max_connection_secs: u64,
    /// Serve Prometheus metrics (`/metrics`), liveness (`/healthz`) and readiness (`/readyz`)
    /// on this address, plain HTTP, apart from the customers' listener (e.g. 0.0.0.0:9100).
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Who may show the download page /portal in a frame (CSP frame-ancestors): 'none', 'self'
    /// or origins such as https://portal.example.de, separated by spaces.
    #[arg(long, default_value = evn_portal::DEFAULT_FRAME_ANCESTORS)]
    frame_ancestors: String,
}

#[derive(clap::Args)]
pub struct TokenArgs {
    /// The customer id the token is for (its `sub`).
    #[arg(long)]
    customer: String,
    /// Lifetime: a whole number and s, m, h or d (30s, 15m, 1h, 7d; at most 30d).
    #[arg(long, default_value = "1h")]
    ttl: String,
    /// `aud` claim, for a service started with --jwt-audience.
    #[arg(long, env = "EVN_PORTAL_AUDIENCE")]
    audience: Option<String>,
}

fn portal(e: evn_portal::PortalError) -> Failure {
    Failure {
        code: e.exit_code() as u8,
        error: e.into(),
    }
}

/// `EVN_PORTAL_SECRET` if set; too short is a configuration error.
fn secret() -> Result<Option<evn_portal::HmacSecret>, Failure> {
    match std::env::var_os(SECRET_ENV) {
        Some(v) if !v.is_empty() => evn_portal::HmacSecret::new(v.as_bytes())
            .map(Some)
            .map_err(portal),
        _ => Ok(None),
    }
}

pub async fn serve(args: ServeArgs) -> Result<(), Failure> {
    let public_key = args
        .jwt_public_key
        .as_deref()
        .map(evn_portal::PublicKey::read)
        .transpose()
        .map_err(portal)?;
    let mut auth =
        evn_portal::AuthConfig::new(secret()?, public_key, args.jwt_audience).map_err(portal)?;
    if let Some(issuer) = args.jwt_issuer {
        auth = auth.with_issuer(issuer).map_err(portal)?;
    }
    if let Some(path) = &args.revoked {
        // Missing or unreadable at startup: a configuration error like a bad key file.
        let revocations = evn_portal::Revocations::load(path).map_err(usage)?;
        let list = revocations.current();
        tracing::info!(path = %path.display(), customers = list.len(), "revocation list read");
        auth = auth.with_revocations(Arc::new(revocations));
    }
    if args.max_concurrent_downloads == 0 {
        return Err(usage(anyhow::anyhow!(
            "--max-concurrent-downloads must be at least 1"
        )));
    }
    let mut opts = evn_portal::ServeOptions::new(args.evn, auth);
    opts.keys = crate::data_keys()?;
    opts.tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(evn_portal::TlsFiles { cert, key }),
        // clap's `requires` makes the two come together.
        _ => None,
    };
    opts.max_concurrent_downloads = args.max_concurrent_downloads;
    opts.queue_timeout = Duration::from_secs(args.queue_timeout_secs);
    opts.request_timeout = Duration::from_secs(args.request_timeout_secs.max(1));
    opts.max_connection_age = Duration::from_secs(args.max_connection_secs.max(1));
    opts.frame_ancestors = args.frame_ancestors;
    let server = evn_portal::bind(args.listen, &opts).await.map_err(portal)?;
    if let Some(addr) = args.metrics_listen {
        // As ingest does it: a port of its own, so the customers' listener shows no metrics,
        // and a scrape never waits behind the download limit.
        let mut registry = evn_metrics::prometheus_client::registry::Registry::default();
        opts.metrics.register(&mut registry);
        let health = Arc::new(evn_metrics::Health::default());
        tokio::spawn(evn_portal::watch_health(
            opts.evn_dir.clone(),
            Arc::clone(&health),
        ));
        crate::spawn_metrics("serve", addr, Arc::new(registry), health).await?;
    }
    if !server.is_tls() {
        tracing::warn!(
            "serving plain HTTP: only for use behind an ingress that terminates TLS; give --tls-cert and --tls-key otherwise"
        );
    }
    // Tests and supervisors read the address from this line (stdout is line-buffered).
    crate::stdout::announce(format_args!("evn serve listening on {}", server.url()));
    server.run(shutdown_signal()).await;
    Ok(())
}

pub fn token(args: TokenArgs) -> Result<(), Failure> {
    let customer = evn_portal::CustomerId::parse(&args.customer).ok_or_else(|| {
        portal(evn_portal::PortalError::CustomerId {
            input: args.customer.clone(),
        })
    })?;
    let ttl = evn_portal::parse_ttl(&args.ttl).map_err(portal)?;
    let secret = secret()?.ok_or_else(|| {
        usage(anyhow::anyhow!(
            "{SECRET_ENV} is not set: tokens are signed with it (at least 32 bytes, e.g. `openssl rand -hex 32`)"
        ))
    })?;
    outln!(
        "{}",
        evn_portal::mint_hs256(
            &secret,
            &customer,
            ttl,
            SystemTime::now(),
            args.audience.as_deref()
        )
    )?;
    Ok(())
}
