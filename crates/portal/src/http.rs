//! The HTTP surface: routes, the four gates of a request (see the crate docs), the download
//! page and its session (issue 11), response headers, the access log and the metrics.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::rejection::{FormRejection, PathRejection, QueryRejection};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::io::ReaderStream;
use tower_http::timeout::TimeoutLayer;

use crate::auth::{bearer, AuthConfig, AuthError, Verified};
use crate::metrics::{format_label, PortalMetrics};
use crate::page;
use crate::paths::{parse_file_name, parse_version, CustomerId};
use crate::session;
use crate::store::{Content, EvnStore, Located};
use crate::{PortalError, ServeOptions};

/// The download route's template, as the metrics name it.
const DOWNLOAD_ROUTE: &str = "/customers/{id}/evn/{file}";

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
    metrics: PortalMetrics,
    /// `Content-Security-Policy` of every HTML answer.
    csp: HeaderValue,
    /// `X-Frame-Options: DENY` too, for browsers without `frame-ancestors`, unless framing is
    /// allowed.
    deny_frames: bool,
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
    let frame_ancestors = crate::check_frame_ancestors(&opts.frame_ancestors)?;
    let portal = Arc::new(Portal {
        store: EvnStore::open(&opts.evn_dir)?.with_keys(opts.keys.clone()),
        auth: opts.auth.clone(),
        downloads: Arc::new(Semaphore::new(opts.max_concurrent_downloads.max(1))),
        queue_timeout: opts.queue_timeout,
        hsts: opts.tls.is_some(),
        metrics: opts.metrics.clone(),
        csp: HeaderValue::from_str(&page::content_security_policy(&frame_ancestors))
            .expect("checked sources make a valid header"),
        deny_frames: frame_ancestors == "'none'",
    });
    Ok(Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/portal", get(portal_page))
        .route("/portal/logout", post(logout))
        .route("/portal/abgemeldet", get(logged_out))
        .route("/customers/{id}/evn", get(list))
        .route(DOWNLOAD_ROUTE, get(download))
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
    /// A browser without a valid session: the German "link expired" page, also 401.
    SessionExpired,
    Forbidden,
    BadRequest(&'static str),
    NotFound,
    Busy,
    Internal,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::SessionExpired = self {
            let mut res = html(
                StatusCode::UNAUTHORIZED,
                page::message_page(page::EXPIRED_TITLE, page::EXPIRED_TEXT),
            );
            // RFC 9110 §15.5.2: a 401 names a scheme; the page says what to do.
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="evn""#),
            );
            return res;
        }
        let (status, message) = match self {
            ApiError::Unauthorized(_) => {
                (StatusCode::UNAUTHORIZED, "a valid bearer token is required")
            }
            ApiError::SessionExpired => unreachable!("answered above"),
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

/// Gate 1: the token's customer id, from the `Authorization` header or else the download
/// page's session cookie (the same JWT, verified the same way).
fn authenticate(
    auth: &AuthConfig,
    headers: &HeaderMap,
    access: &mut Access,
) -> Result<String, ApiError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (result, browser) = match (values.next(), values.next()) {
        (None, _) => match session::session_token(headers) {
            Ok(Some(t)) => (auth.verify(&t), true),
            Ok(None) => (Err(AuthError::Missing), wants_html(headers)),
            Err(r) => (Err(AuthError::Invalid(r)), true),
        },
        (Some(v), None) => (bearer(v.as_bytes()).and_then(|t| auth.verify(t)), false),
        (Some(_), Some(_)) => (Err(AuthError::Invalid("two Authorization headers")), false),
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
            Err(if browser {
                ApiError::SessionExpired
            } else {
                ApiError::Unauthorized(e)
            })
        }
    }
}

/// A browser navigating (a download link clicked after the session ended) gets the German page
/// instead of JSON; API clients do not ask for `text/html`.
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// An HTML answer; the access-log layer adds the CSP and framing headers to every one.
fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
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

/// Ready while the EVN folder can be opened: a pod that lost its volume gets no traffic.
async fn readyz(State(p): State<Arc<Portal>>) -> Response {
    let p2 = Arc::clone(&p);
    match blocking(move || p2.store.check()).await {
        Ok(()) => Json(serde_json::json!({ "status": "ready" })).into_response(),
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
    /// The current version's CSV (issue 11); absent if it was billed before CSVs existed.
    #[serde(skip_serializing_if = "Option::is_none")]
    csv_url: Option<String>,
    /// Every version issued, oldest first.
    versions: Vec<VersionJson>,
}

#[derive(Serialize)]
struct VersionJson {
    version: u32,
    created: Option<String>,
    sha256: String,
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    csv_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    csv_url: Option<String>,
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
            let csv_base = format!("/customers/{customer}/evn/{month}.csv");
            MonthJson {
                month: month.to_string(),
                version: v.current,
                url: base.clone(),
                csv_url: v
                    .get(v.current)
                    .and_then(|i| i.csv_sha256.as_ref())
                    .map(|_| csv_base.clone()),
                versions: v
                    .versions
                    .into_iter()
                    .map(|i| VersionJson {
                        url: format!("{base}?version={}", i.version),
                        csv_url: i
                            .csv_sha256
                            .as_ref()
                            .map(|_| format!("{csv_base}?version={}", i.version)),
                        version: i.version,
                        created: i.created,
                        sha256: i.sha256,
                        csv_sha256: i.csv_sha256,
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
    // What a 304 or a HEAD needs is the manifest's digest, not the bytes.
    let wants_body = method != Method::HEAD;
    let mut cached_tags = HeaderMap::new();
    for tag in headers.get_all(header::IF_NONE_MATCH) {
        cached_tags.append(header::IF_NONE_MATCH, tag.clone());
    }
    let (located, body) = blocking(move || {
        let Some(located) = p2.store.locate(&c, &m, format, version)? else {
            return Ok((None, None));
        };
        if !wants_body || if_none_match(&cached_tags, &located.sha256) {
            return Ok((Some(located), None));
        }
        let name = format!("{}/{}", m.as_str(), format.file_name(&c, located.version));
        read_small(located, name)
    })
    .await?;
    let located = located.ok_or(ApiError::NotFound)?;
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
    let in_flight = p.metrics.in_flight();
    in_flight.inc();
    let reader = Download {
        source: match (body, located.content) {
            (Some(bytes), _) | (None, Content::Decrypted(bytes)) => {
                Source::Memory(std::io::Cursor::new(bytes))
            }
            (None, Content::File(f)) => Source::File(tokio::fs::File::from_std(f)),
        },
        bytes: p.metrics.bytes_counter(format),
        in_flight,
        _permit: permit,
    };
    let body = Body::from_stream(ReaderStream::with_capacity(reader, CHUNK_BYTES));
    Ok((response_headers, body).into_response())
}

// ---------------------------------------------------------------------------------------------
// The download page (issue 11)

/// `GET /portal?token=<JWT>`: checks the token, keeps it in the session cookie and redirects to
/// `/portal`, so the token leaves the address bar and the history. `GET /portal` with the
/// cookie: the page. Anything else: the German "link expired" page (401).
async fn portal_page(
    State(p): State<Arc<Portal>>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let mut access = Access::default();
    let result = portal_inner(p, &headers, query, &mut access).await;
    finish(access, result)
}

fn refuse(access: &mut Access, reason: &'static str) -> ApiError {
    access.refused = Some(reason);
    ApiError::SessionExpired
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn portal_inner(
    p: Arc<Portal>,
    headers: &HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    access: &mut Access,
) -> Result<Response, ApiError> {
    let Query(pairs) = query.map_err(|_| refuse(access, "malformed query"))?;
    let mut tokens = pairs.iter().filter(|(k, _)| k == "token");
    match (tokens.next(), tokens.next()) {
        (Some((_, token)), None) => return sign_in(&p, token, access),
        (Some(_), Some(_)) => return Err(refuse(access, "token given twice")),
        (None, _) => {}
    }
    let token = match session::session_token(headers) {
        Ok(Some(t)) => t,
        Ok(None) => return Err(refuse(access, "no session")),
        Err(r) => return Err(refuse(access, r)),
    };
    let verified = p.auth.verify_claims(&token).map_err(|e| match e {
        AuthError::Missing => refuse(access, "no session"),
        AuthError::Invalid(r) => refuse(access, r),
    })?;
    access.customer = Some(verified.sub.clone());
    let customer =
        CustomerId::parse(&verified.sub).ok_or_else(|| refuse(access, "malformed sub"))?;
    let c = customer.clone();
    let p2 = Arc::clone(&p);
    let months = match blocking(move || p2.store.months(&c)).await {
        Ok(m) => m,
        Err(_) => {
            return Ok(html(
                StatusCode::SERVICE_UNAVAILABLE,
                page::message_page(page::UNAVAILABLE_TITLE, page::UNAVAILABLE_TEXT),
            ))
        }
    };
    let ends = chrono::DateTime::from_timestamp(i64::try_from(verified.exp).unwrap_or(0), 0)
        .unwrap_or_default();
    Ok(html(
        StatusCode::OK,
        page::list_page(&customer, &months, ends, &session::csrf_token(&token)),
    ))
}

/// The token from the portal's link becomes the session cookie, valid exactly as long.
fn sign_in(p: &Portal, token: &str, access: &mut Access) -> Result<Response, ApiError> {
    let Verified { sub, exp } = p.auth.verify_claims(token).map_err(|e| match e {
        AuthError::Missing => refuse(access, "no token"),
        AuthError::Invalid(r) => refuse(access, r),
    })?;
    access.customer = Some(sub);
    if token.len() > session::MAX_COOKIE_TOKEN_BYTES {
        tracing::warn!(
            bytes = token.len(),
            max = session::MAX_COOKIE_TOKEN_BYTES,
            "token too long for the session cookie; have the portal issue shorter tokens"
        );
        return Err(refuse(access, "too long for a cookie"));
    }
    // Within the clock leeway a token is still accepted, but a session that starts expired
    // is no session: that link has expired for the browser.
    if exp <= now_secs() {
        return Err(refuse(access, "expired"));
    }
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, HeaderValue::from_static("/portal")),
            (header::SET_COOKIE, session::set_cookie(token)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response())
}

/// `POST /portal/logout`: only from this service's own page (fetch metadata or `Origin`, and
/// the form token bound to the session), then the cookie is removed.
async fn logout(
    State(_p): State<Arc<Portal>>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let mut access = Access::default();
    let refused = |access: &mut Access, reason| {
        access.refused = Some(reason);
        html(
            StatusCode::FORBIDDEN,
            page::message_page(page::REFUSED_TITLE, page::REFUSED_TEXT),
        )
    };
    let res = 'answer: {
        if !session::same_origin(&headers) {
            break 'answer refused(&mut access, "cross-site logout");
        }
        // Without a (single) session cookie there is nothing to end (expired and dropped by
        // the browser): just clear and go on.
        if let Ok(Some(token)) = session::session_token(&headers) {
            let expected = session::csrf_token(&token);
            let given = form
                .as_ref()
                .ok()
                .and_then(|Form(pairs)| pairs.iter().find(|(k, _)| k == "csrf"))
                .map_or("", |(_, v)| v.as_str());
            if !session::constant_time_eq(given.as_bytes(), expected.as_bytes()) {
                break 'answer refused(&mut access, "logout without its form token");
            }
        }
        (
            StatusCode::SEE_OTHER,
            [
                (
                    header::LOCATION,
                    HeaderValue::from_static("/portal/abgemeldet"),
                ),
                (header::SET_COOKIE, session::clear_cookie()),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
        )
            .into_response()
    };
    finish(access, Ok(res))
}

async fn logged_out() -> Response {
    html(
        StatusCode::OK,
        page::message_page(page::LOGGED_OUT_TITLE, page::LOGGED_OUT_TEXT),
    )
}

/// A plain file of at most [`CHUNK_BYTES`] (a 3-page EVN is ~34 KB) is read whole here, in the
/// lookup's blocking task, and streamed from memory: streamed as a `tokio::fs::File` it would
/// take two more trips through the blocking pool (the read and the read that sees its end),
/// whose thread hand-offs made the latency tail on a busy 2-core machine. The buffer is the
/// one chunk the stream would have held anyway. Larger files stream in chunks as before;
/// sealed ones arrive decrypted in memory already.
fn read_small(
    mut located: Located,
    name: String,
) -> Result<(Option<Located>, Option<Vec<u8>>), PortalError> {
    use std::io::Read;
    let io = |cause| PortalError::Io {
        path: name.clone().into(),
        cause,
    };
    let Content::File(file) = &mut located.content else {
        return Ok((Some(located), None));
    };
    if located.len > CHUNK_BYTES as u64 {
        return Ok((Some(located), None));
    }
    let mut bytes = Vec::with_capacity(located.len as usize);
    file.by_ref()
        .take(located.len)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 != located.len {
        // Numbered files are never rewritten in place: a short one is damaged storage.
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "shorter than when it was opened",
        )));
    }
    Ok((Some(located), Some(bytes)))
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
    /// `evn_portal_download_bytes_total` of the file's format.
    bytes: Counter,
    in_flight: Gauge,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Download {
    fn drop(&mut self) {
        self.in_flight.dec();
    }
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
        let before = buf.filled().len();
        let result = match &mut self.source {
            Source::File(f) => Pin::new(f).poll_read(cx, buf),
            Source::Memory(c) => Pin::new(c).poll_read(cx, buf),
        };
        let n = buf.filled().len() - before;
        if n > 0 {
            self.bytes.inc_by(n as u64);
        }
        result
    }
}

/// Response headers every answer gets, one log line and the metrics per request. The query
/// string is never logged (`/portal?token=` carries a token there), nor any header, nor the
/// client's address: beside the customer and the month it would tie an IP address to a named
/// customer, which the privacy policy ("Serverdaten") promises not to do.
async fn access_log(State(p): State<Arc<Portal>>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path: String = req.uri().path().chars().take(200).collect();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_owned();
    let start = Instant::now();
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("private, no-store"));
    // `/portal?token=…` must never leave in a Referer, nor anything else of this service.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    let is_html = h
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if is_html {
        h.insert(header::CONTENT_SECURITY_POLICY, p.csp.clone());
        if p.deny_frames {
            h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        }
    }
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
    let elapsed = start.elapsed();
    p.metrics
        .answered(&route, status.as_u16(), elapsed.as_secs_f64());
    if route == DOWNLOAD_ROUTE {
        p.metrics.download(format_label(&path), status.as_u16());
    }
    if let Some(reason) = access.refused {
        p.metrics.refused(reason);
    }
    tracing::info!(
        target: "evn_portal::access",
        method = %method,
        path = ?path,
        status = status.as_u16(),
        customer = access.customer.as_deref().unwrap_or("-"),
        month = access.month.as_deref().unwrap_or("-"),
        version = access.version.unwrap_or(0),
        bytes,
        ms = elapsed.as_millis() as u64,
        refused = access.refused.unwrap_or("-"),
    );
    res
}
