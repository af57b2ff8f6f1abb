//! The HTTP surface: routes, the four gates of a request (see the crate docs), response headers
//! and the access log.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::io::ReaderStream;
use tower_http::timeout::TimeoutLayer;

use crate::auth::{bearer, AuthConfig, AuthError};
use crate::paths::{parse_file_name, parse_version, CustomerId};
use crate::store::{Content, EvnStore};
use crate::{PortalError, ServeOptions};

/// Read size per chunk of a streamed file: with the download limit this bounds the memory a
/// burst can take (64 downloads × 64 KiB = 4 MiB of buffers).
const CHUNK_BYTES: usize = 64 * 1024;
/// `Retry-After` on a 503 when every download slot stayed busy for the queue timeout.
const RETRY_AFTER_SECS: &str = "2";

struct Portal {
    store: EvnStore,
    auth: AuthConfig,
    downloads: Arc<Semaphore>,
    queue_timeout: Duration,
    hsts: bool,
}

/// What the access log line says about a request, filled in by the handler as it learns it.
#[derive(Debug, Clone, Default)]
struct Access {
    /// The authenticated customer (`sub`), not the one in the path.
    customer: Option<String>,
    month: Option<String>,
    version: Option<u32>,
    /// Why a token was refused (never the token).
    refused: Option<&'static str>,
}

/// The routes of INTERFACES.md §5 over the EVN folder of `opts`. Fails if that folder cannot
/// be opened.
pub fn router(opts: &ServeOptions) -> Result<Router, PortalError> {
    let portal = Arc::new(Portal {
        store: EvnStore::open(&opts.evn_dir)?.with_keys(opts.keys.clone()),
        auth: opts.auth.clone(),
        downloads: Arc::new(Semaphore::new(opts.max_concurrent_downloads.max(1))),
        queue_timeout: opts.queue_timeout,
        hsts: opts.tls.is_some(),
    });
    Ok(Router::new()
        .route("/healthz", get(healthz))
        .route("/customers/{id}/evn", get(list))
        .route("/customers/{id}/evn/{file}", get(download))
        .fallback(|| async { ApiError::NotFound.into_response() })
        .with_state(Arc::clone(&portal))
        // Up to the response head; a streaming body is bounded by the connection age instead.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            opts.request_timeout,
        ))
        .layer(middleware::from_fn_with_state(portal, access_log)))
}

#[derive(Debug)]
enum ApiError {
    Unauthorized(AuthError),
    Forbidden,
    BadRequest(&'static str),
    NotFound,
    Busy,
    Internal,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::Unauthorized(_) => {
                (StatusCode::UNAUTHORIZED, "a valid bearer token is required")
            }
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "this token is for another customer"),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "no such EVN"),
            ApiError::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many downloads at once; retry shortly",
            ),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        };
        let mut res = (status, Json(serde_json::json!({ "error": message }))).into_response();
        let h = res.headers_mut();
        match self {
            // RFC 6750 §3: no error code when no token was sent at all.
            ApiError::Unauthorized(AuthError::Missing) => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="evn""#),
                );
            }
            ApiError::Unauthorized(AuthError::Invalid(_)) => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="evn", error="invalid_token""#),
                );
            }
            ApiError::Busy => {
                h.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECS),
                );
            }
            _ => {}
        }
        res
    }
}

impl From<PortalError> for ApiError {
    fn from(e: PortalError) -> Self {
        tracing::error!(error = %e, "EVN folder unreadable; an operator is needed");
        ApiError::Internal
    }
}

/// Gate 1: the token's customer id.
fn authenticate(
    auth: &AuthConfig,
    headers: &HeaderMap,
    access: &mut Access,
) -> Result<String, ApiError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let result = match (values.next(), values.next()) {
        (None, _) => Err(AuthError::Missing),
        (Some(v), None) => bearer(v.as_bytes()).and_then(|t| auth.verify(t)),
        (Some(_), Some(_)) => Err(AuthError::Invalid("two Authorization headers")),
    };
    match result {
        Ok(sub) => {
            access.customer = Some(sub.clone());
            Ok(sub)
        }
        Err(e) => {
            access.refused = Some(match e {
                AuthError::Missing => "no token",
                AuthError::Invalid(r) => r,
            });
            Err(ApiError::Unauthorized(e))
        }
    }
}

/// Gates 2 and 3 for the customer: the path must name the token's own customer (else 403,
/// before anything is looked up), and be a well-formed id.
fn authorize(sub: &str, path_id: &str) -> Result<CustomerId, ApiError> {
    if sub != path_id {
        return Err(ApiError::Forbidden);
    }
    CustomerId::parse(path_id).ok_or(ApiError::BadRequest("malformed customer id"))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PortalError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => {
            tracing::error!(error = %e, "EVN lookup task failed");
            Err(ApiError::Internal)
        }
    }
}

fn finish(access: Access, result: Result<Response, ApiError>) -> Response {
    let mut res = result.unwrap_or_else(IntoResponse::into_response);
    res.extensions_mut().insert(access);
    res
}

async fn healthz(State(p): State<Arc<Portal>>) -> Response {
    let p2 = Arc::clone(&p);
    // Ready only while the EVN folder can be opened (a lost volume is worth a restart).
    match blocking(move || p2.store.check()).await {
        Ok(()) => Json(serde_json::json!({ "status": "ok" })).into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "EVN folder unreadable" })),
        )
            .into_response(),
    }
}

#[derive(Serialize)]
struct Listing {
    customer_id: String,
    /// Newest first.
    months: Vec<MonthJson>,
}

#[derive(Serialize)]
struct MonthJson {
    month: String,
    /// The current version: what the month's URL serves.
    version: u32,
    url: String,
    /// Every version issued, oldest first.
    versions: Vec<VersionJson>,
}

#[derive(Serialize)]
struct VersionJson {
    version: u32,
    created: Option<String>,
    sha256: String,
    url: String,
}

async fn list(
    State(p): State<Arc<Portal>>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let mut access = Access::default();
    let result = list_inner(p, &headers, path, &mut access).await;
    finish(access, result)
}

async fn list_inner(
    p: Arc<Portal>,
    headers: &HeaderMap,
    path: Result<Path<String>, PathRejection>,
    access: &mut Access,
) -> Result<Response, ApiError> {
    let sub = authenticate(&p.auth, headers, access)?;
    let Path(id) = path.map_err(|_| ApiError::BadRequest("malformed path"))?;
    let customer = authorize(&sub, &id)?;
    let c = customer.clone();
    let p2 = Arc::clone(&p);
    let months = blocking(move || p2.store.months(&c)).await?;
    let months = months
        .into_iter()
        .map(|(month, v)| {
            let base = format!("/customers/{customer}/evn/{month}.pdf");
            MonthJson {
                month: month.to_string(),
                version: v.current,
                url: base.clone(),
                versions: v
                    .versions
                    .into_iter()
                    .map(|i| VersionJson {
                        url: format!("{base}?version={}", i.version),
                        version: i.version,
                        created: i.created,
                        sha256: i.sha256,
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(Json(Listing {
        customer_id: customer.to_string(),
        months,
    })
    .into_response())
}

async fn download(
    State(p): State<Arc<Portal>>,
    method: Method,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let mut access = Access::default();
    let result = download_inner(p, method, &headers, path, query, &mut access).await;
    finish(access, result)
}

async fn download_inner(
    p: Arc<Portal>,
    method: Method,
    headers: &HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    access: &mut Access,
) -> Result<Response, ApiError> {
    let sub = authenticate(&p.auth, headers, access)?;
    let Path((id, file)) = path.map_err(|_| ApiError::BadRequest("malformed path"))?;
    let customer = authorize(&sub, &id)?;
    let (month, format) = parse_file_name(&file).ok_or(ApiError::NotFound)?;
    access.month = Some(month.to_string());
    let Query(pairs) = query.map_err(|_| ApiError::BadRequest("malformed query"))?;
    let mut versions = pairs.iter().filter(|(k, _)| k == "version");
    let version = match (versions.next(), versions.next()) {
        (None, _) => None,
        (Some((_, v)), None) => Some(parse_version(v).ok_or(ApiError::BadRequest(
            "version must be a positive whole number",
        ))?),
        (Some(_), Some(_)) => return Err(ApiError::BadRequest("version given twice")),
    };
    access.version = version;

    let (c, m, p2) = (customer.clone(), month.clone(), Arc::clone(&p));
    let located = blocking(move || p2.store.locate(&c, &m, format, version))
        .await?
        .ok_or(ApiError::NotFound)?;
    access.version = Some(located.version);

    let etag =
        HeaderValue::from_str(&format!("\"{}\"", located.sha256)).expect("hex is a valid header");
    if if_none_match(headers, &located.sha256) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let disposition = format!(
        "attachment; filename=\"{}\"",
        format.download_name(&customer, &month, version)
    );
    let response_headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        ),
        (header::CONTENT_LENGTH, HeaderValue::from(located.len)),
        (
            header::CONTENT_DISPOSITION,
            HeaderValue::from_str(&disposition).expect("validated values make a valid header"),
        ),
        (header::ETAG, etag),
        (header::ACCEPT_RANGES, HeaderValue::from_static("none")),
    ];
    if method == Method::HEAD {
        // Headers only: no download slot, the file is closed right here.
        return Ok((response_headers, Body::empty()).into_response());
    }
    let permit = tokio::time::timeout(p.queue_timeout, Arc::clone(&p.downloads).acquire_owned())
        .await
        .map_err(|_| ApiError::Busy)?
        .expect("the semaphore is never closed");
    let reader = Download {
        source: match located.content {
            Content::File(f) => Source::File(tokio::fs::File::from_std(f)),
            Content::Decrypted(bytes) => Source::Memory(std::io::Cursor::new(bytes)),
        },
        _permit: permit,
    };
    let body = Body::from_stream(ReaderStream::with_capacity(reader, CHUNK_BYTES));
    Ok((response_headers, body).into_response())
}

/// `If-None-Match` lists the current entity tag (or `*`): the client has these bytes already.
fn if_none_match(headers: &HeaderMap, sha256: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.trim_start_matches("W/").trim_matches('"') == sha256)
}

/// A file being streamed; holds its download slot until the body is finished or dropped (the
/// client went away), whichever comes first.
struct Download {
    source: Source,
    _permit: OwnedSemaphorePermit,
}

enum Source {
    File(tokio::fs::File),
    Memory(std::io::Cursor<Vec<u8>>),
}

impl AsyncRead for Download {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match &mut self.source {
            Source::File(f) => Pin::new(f).poll_read(cx, buf),
            Source::Memory(c) => Pin::new(c).poll_read(cx, buf),
        }
    }
}

/// Response headers every answer gets, and one log line per request. The query string is never
/// logged (a later download page may carry a token there), nor any header.
async fn access_log(State(p): State<Arc<Portal>>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path: String = req.uri().path().chars().take(200).collect();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string());
    let start = Instant::now();
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("private, no-store"));
    if p.hsts {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    let status = res.status();
    let bytes = if method == Method::HEAD || status == StatusCode::NOT_MODIFIED {
        0
    } else {
        res.headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let access = res
        .extensions()
        .get::<Access>()
        .cloned()
        .unwrap_or_default();
    tracing::info!(
        target: "evn_portal::access",
        method = %method,
        path = ?path,
        status = status.as_u16(),
        customer = access.customer.as_deref().unwrap_or("-"),
        month = access.month.as_deref().unwrap_or("-"),
        version = access.version.unwrap_or(0),
        bytes,
        ms = start.elapsed().as_millis() as u64,
        refused = access.refused.unwrap_or("-"),
        peer = peer.as_deref().unwrap_or("-"),
    );
    res
}
