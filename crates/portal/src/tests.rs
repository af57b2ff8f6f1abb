//! The router in memory: the order of the gates (401, 403, 400/404) and the response headers;
//! the CSV, the download page, its cookie and logout (issue 11); the metrics (issue 9).
//! Over TCP, TLS and with the real binary: `tests/integration/portal.rs` and `page.rs`.

use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::response::Response;
use axum::Router;
use tower::ServiceExt;

use crate::{mint_hs256, router, AuthConfig, CustomerId, HmacSecret, PortalMetrics, ServeOptions};

const SECRET: &[u8] = b"unit-test secret, 32 bytes or more";
const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const CSV_SHA: &str = "c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5";
const CSV: &str = "\u{feff}Nr.;Anschluss;Datum\r\n1;030 123456;24.11.2026\r\n";

struct Fixture {
    _dir: tempfile::TempDir,
    app: Router,
    metrics: PortalMetrics,
}

fn fixture() -> Fixture {
    fixture_with(|_| {})
}

/// K1001 and K1002 in November 2026, version 1, PDF and CSV.
fn fixture_with(configure: impl FnOnce(&mut ServeOptions)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("2026-11");
    std::fs::create_dir(&m).unwrap();
    std::fs::write(m.join("K1001.v1.pdf"), b"%PDF-1.7 K1001 v1").unwrap();
    std::fs::write(m.join("K1001.pdf"), b"%PDF-1.7 K1001 v1").unwrap();
    std::fs::write(m.join("K1001.v1.csv"), CSV).unwrap();
    std::fs::write(m.join("K1001.csv"), CSV).unwrap();
    std::fs::write(m.join("K1002.v1.pdf"), b"%PDF-1.7 K1002 v1").unwrap();
    std::fs::write(m.join("K1002.v1.csv"), b"K1002").unwrap();
    let entry = |v: u32| {
        serde_json::json!({"version": v, "sha256": SHA, "csv_sha256": CSV_SHA,
            "versions": [{"version": v, "sha256": SHA, "created": "2026-12-01",
                          "csv_file": format!("K.v{v}.csv"), "csv_sha256": CSV_SHA}]})
    };
    std::fs::write(
        m.join("manifest.json"),
        serde_json::json!({"customers": {"K1001": entry(1), "K1002": entry(1)}}).to_string(),
    )
    .unwrap();
    let auth = AuthConfig::new(Some(HmacSecret::new(SECRET).unwrap()), None, None).unwrap();
    let mut opts = ServeOptions::new(dir.path(), auth);
    configure(&mut opts);
    let metrics = opts.metrics.clone();
    let app = router(&opts).unwrap();
    Fixture {
        _dir: dir,
        app,
        metrics,
    }
}

fn token(customer: &str) -> String {
    mint_hs256(
        &HmacSecret::new(SECRET).unwrap(),
        &CustomerId::parse(customer).unwrap(),
        Duration::from_secs(300),
        SystemTime::now(),
        None,
    )
}

async fn call(app: &Router, method: Method, uri: &str, auth: Option<&str>) -> Response {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = auth {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    app.clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

async fn body(res: Response) -> Vec<u8> {
    axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn own_evn_with_its_headers() {
    let f = fixture();
    let res = call(
        &f.app,
        Method::GET,
        "/customers/K1001/evn/2026-11.pdf",
        Some(&token("K1001")),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers();
    assert_eq!(h[header::CONTENT_TYPE], "application/pdf");
    assert_eq!(
        h[header::CONTENT_DISPOSITION],
        "attachment; filename=\"EVN_K1001_2026-11.pdf\""
    );
    assert_eq!(h[header::CACHE_CONTROL], "private, no-store");
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(h[header::ETAG], format!("\"{SHA}\"").as_str());
    assert_eq!(h[header::CONTENT_LENGTH], "17");
    assert_eq!(body(res).await, b"%PDF-1.7 K1001 v1");
}

#[tokio::test]
async fn gates_in_order() {
    let f = fixture();
    let k1 = token("K1001");
    let check = |uri: &'static str, auth: Option<String>, expected: StatusCode| {
        let app = f.app.clone();
        async move {
            let res = call(&app, Method::GET, uri, auth.as_deref()).await;
            assert_eq!(res.status(), expected, "{uri}");
            res
        }
    };
    // 401 comes first, whatever the path names.
    let res = check(
        "/customers/K1001/evn/2026-11.pdf",
        None,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        res.headers()[header::WWW_AUTHENTICATE],
        "Bearer realm=\"evn\""
    );
    let res = check(
        "/customers/K1001/evn",
        Some("x.y.z".into()),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        res.headers()[header::WWW_AUTHENTICATE],
        "Bearer realm=\"evn\", error=\"invalid_token\""
    );
    check(
        "/customers/..%2F..%2Fetc/evn/2026-11.pdf",
        None,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // 403 for any other customer id, existing or not, well-formed or not: same answer.
    for uri in [
        "/customers/K1002/evn/2026-11.pdf",
        "/customers/K1002/evn/2031-01.pdf",
        "/customers/K9999/evn/2026-11.pdf",
        "/customers/K1002/evn",
        "/customers/K1001%2F..%2FK1002/evn/2026-11.pdf",
        "/customers/..%2FK1001/evn/2026-11.pdf",
        "/customers/K1001%00/evn/2026-11.pdf",
    ] {
        let res = check(uri, Some(k1.clone()), StatusCode::FORBIDDEN).await;
        assert_eq!(
            body(res).await,
            br#"{"error":"this token is for another customer"}"#,
            "{uri}"
        );
    }
    // Own id: what does not name an EVN is 404, a malformed version 400.
    for uri in [
        "/customers/K1001/evn/2026-12.pdf",
        "/customers/K1001/evn/2026-11.pdf?version=2",
        "/customers/K1001/evn/..%2F2026-11%2FK1002.v1.pdf",
        "/customers/K1001/evn/2026-11.pdf%00",
        "/customers/K1001/evn/%2E%2E",
        "/customers/K1001/evn/2026-13.pdf",
        "/customers/K1001/evn/manifest.json",
        "/customers/K1001/evn/2026-11/K1001.v1.pdf",
        "/customers/K1001/evn/../../2026-11/K1001.pdf",
    ] {
        check(uri, Some(k1.clone()), StatusCode::NOT_FOUND).await;
    }
    for uri in [
        "/customers/K1001/evn/2026-11.pdf?version=0",
        "/customers/K1001/evn/2026-11.pdf?version=01",
        "/customers/K1001/evn/2026-11.pdf?version=1&version=1",
        "/customers/K1001/evn/2026-11.pdf?version=%2E%2E",
    ] {
        check(uri, Some(k1.clone()), StatusCode::BAD_REQUEST).await;
    }
    check(
        "/customers/K1001/evn/2026-11.pdf?version=1",
        Some(k1.clone()),
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn a_sub_that_is_not_a_valid_id_is_refused_before_the_disk() {
    let f = fixture();
    // A token signed with the right key whose `sub` tries a path: equal to the path segment,
    // so past the 403 gate, and stopped by the id pattern.
    let t = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": "../2026-11", "exp": jsonwebtoken::get_current_timestamp() + 60}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let res = call(&f.app, Method::GET, "/customers/..%2F2026-11/evn", Some(&t)).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn head_conditional_and_listing() {
    let f = fixture();
    let k1 = token("K1001");
    let res = call(
        &f.app,
        Method::HEAD,
        "/customers/K1001/evn/2026-11.pdf",
        Some(&k1),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_LENGTH], "17");
    assert!(body(res).await.is_empty());

    let req = Request::get("/customers/K1001/evn/2026-11.pdf")
        .header(header::AUTHORIZATION, format!("Bearer {k1}"))
        .header(header::IF_NONE_MATCH, format!("\"other\", \"{SHA}\""))
        .body(Body::empty())
        .unwrap();
    let res = f.app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    assert!(body(res).await.is_empty());

    let res = call(&f.app, Method::GET, "/customers/K1001/evn", Some(&k1)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CACHE_CONTROL], "private, no-store");
    let json: serde_json::Value = serde_json::from_slice(&body(res).await).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"customer_id": "K1001", "months": [{
            "month": "2026-11", "version": 1, "url": "/customers/K1001/evn/2026-11.pdf",
            "csv_url": "/customers/K1001/evn/2026-11.csv",
            "versions": [{"version": 1, "created": "2026-12-01", "sha256": SHA,
                          "url": "/customers/K1001/evn/2026-11.pdf?version=1",
                          "csv_sha256": CSV_SHA,
                          "csv_url": "/customers/K1001/evn/2026-11.csv?version=1"}]}]})
    );
}

#[tokio::test]
async fn healthz_needs_no_token_and_unknown_paths_are_404() {
    let f = fixture();
    assert_eq!(
        call(&f.app, Method::GET, "/healthz", None).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        call(&f.app, Method::GET, "/", None).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&f.app, Method::GET, "/2026-11/K1001.pdf", None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

// ---------------------------------------------------------------------------------------------
// Issue 11: the CSV, the download page, its session cookie, logout.

fn expired_token(customer: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": customer, "exp": jsonwebtoken::get_current_timestamp() - 3600}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

async fn send(app: &Router, req: axum::http::request::Builder) -> Response {
    app.clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

fn cookie(token: &str) -> String {
    format!("other=1; __Host-evn_session={token}")
}

async fn text(res: Response) -> String {
    String::from_utf8(body(res).await).unwrap()
}

#[tokio::test]
async fn csv_is_served_under_the_same_rules_as_the_pdf() {
    let f = fixture();
    let k1 = token("K1001");
    for uri in [
        "/customers/K1001/evn/2026-11.csv",
        "/customers/K1001/evn/2026-11.csv?version=1",
    ] {
        let res = call(&f.app, Method::GET, uri, Some(&k1)).await;
        assert_eq!(res.status(), StatusCode::OK, "{uri}");
        let h = res.headers();
        assert_eq!(h[header::CONTENT_TYPE], "text/csv; charset=utf-8");
        assert_eq!(h[header::ETAG], format!("\"{CSV_SHA}\"").as_str());
        assert_eq!(h[header::CACHE_CONTROL], "private, no-store");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let name = if uri.contains("version") {
            "EVN_K1001_2026-11_v1.csv"
        } else {
            "EVN_K1001_2026-11.csv"
        };
        assert_eq!(
            h[header::CONTENT_DISPOSITION],
            format!("attachment; filename=\"{name}\"").as_str()
        );
        assert_eq!(text(res).await, CSV);
    }
    let expect = |uri: &'static str, auth: Option<String>, status: StatusCode| {
        let app = f.app.clone();
        async move {
            let res = call(&app, Method::GET, uri, auth.as_deref()).await;
            assert_eq!(res.status(), status, "{uri}");
        }
    };
    expect(
        "/customers/K1001/evn/2026-11.csv",
        None,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    expect(
        "/customers/K1002/evn/2026-11.csv",
        Some(k1.clone()),
        StatusCode::FORBIDDEN,
    )
    .await;
    expect(
        "/customers/K1002/evn/2031-01.csv",
        Some(k1.clone()),
        StatusCode::FORBIDDEN,
    )
    .await;
    expect(
        "/customers/K1001/evn/2026-12.csv",
        Some(k1.clone()),
        StatusCode::NOT_FOUND,
    )
    .await;
    expect(
        "/customers/K1001/evn/2026-11.csv?version=2",
        Some(k1.clone()),
        StatusCode::NOT_FOUND,
    )
    .await;
    expect(
        "/customers/K1001/evn/2026-11.CSV",
        Some(k1.clone()),
        StatusCode::NOT_FOUND,
    )
    .await;
    expect(
        "/customers/K1001/evn/2026-11.csv?version=0",
        Some(k1.clone()),
        StatusCode::BAD_REQUEST,
    )
    .await;
    let head = call(
        &f.app,
        Method::HEAD,
        "/customers/K1001/evn/2026-11.csv",
        Some(&k1),
    )
    .await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        head.headers()[header::CONTENT_LENGTH],
        CSV.len().to_string().as_str()
    );
}

#[tokio::test]
async fn token_link_sets_the_cookie_and_redirects_without_the_token() {
    let f = fixture();
    let t = token("K1001");
    let res = send(&f.app, Request::get(format!("/portal?token={t}"))).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let h = res.headers();
    assert_eq!(h[header::LOCATION], "/portal");
    assert_eq!(h[header::CACHE_CONTROL], "no-store");
    assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
    let set = h[header::SET_COOKIE].to_str().unwrap();
    assert!(
        set.starts_with(&format!("__Host-evn_session={t};")),
        "{set}"
    );
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{attr}: {set}");
    }
    // A session cookie: gone when the browser closes (the privacy policy's promise), not kept
    // on disk for the token's lifetime; the token's `exp` still ends it on the server.
    assert!(
        !set.contains("Max-Age") && !set.contains("Expires"),
        "{set}"
    );
}

#[tokio::test]
async fn the_page_lists_months_with_both_links_under_a_strict_policy() {
    let f = fixture();
    let t = token("K1001");
    let res = send(
        &f.app,
        Request::get("/portal").header(header::COOKIE, cookie(&t)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers().clone();
    assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(h[header::CACHE_CONTROL], "no-store");
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
    assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
    let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.starts_with("default-src 'none'; style-src 'sha256-"),
        "{csp}"
    );
    assert!(csp.contains("form-action 'self'") && csp.ends_with("frame-ancestors 'none'"));
    let html = text(res).await;
    for needle in [
        "<html lang=\"de\">",
        "Kundennummer <strong>K1001</strong>",
        "<th scope=\"row\">November 2026</th>",
        "href=\"/customers/K1001/evn/2026-11.pdf\"",
        "href=\"/customers/K1001/evn/2026-11.csv\"",
        "<time datetime=\"2026-12-01\">01.12.2026</time>",
        &format!("name=\"csrf\" value=\"{}\"", crate::session::csrf_token(&t)),
    ] {
        assert!(html.contains(needle), "{needle} in\n{html}");
    }
    assert!(!html.contains("K1002"), "{html}");
    assert!(!html.contains(&t), "the token is not on the page");
    // Every link on the page downloads with the cookie alone.
    for link in [
        "/customers/K1001/evn/2026-11.pdf",
        "/customers/K1001/evn/2026-11.csv",
    ] {
        let res = send(
            &f.app,
            Request::get(link).header(header::COOKIE, cookie(&t)),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK, "{link}");
        // A download is not HTML: no page policy on it.
        assert!(res.headers().get(header::CONTENT_SECURITY_POLICY).is_none());
    }
    let res = send(
        &f.app,
        Request::get("/customers/K1001/evn").header(header::COOKIE, cookie(&t)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_cookie_obeys_every_rule_of_a_bearer_token() {
    let f = fixture();
    let k1 = token("K1001");
    let with_cookie = |uri: &'static str, c: String| {
        let app = f.app.clone();
        async move { send(&app, Request::get(uri).header(header::COOKIE, c)).await }
    };
    // Another customer's id: 403 before any lookup, existing or not.
    for uri in [
        "/customers/K1002/evn/2026-11.pdf",
        "/customers/K1002/evn/2026-11.csv",
        "/customers/K9999/evn/2026-11.csv",
        "/customers/K1002/evn",
    ] {
        let res = with_cookie(uri, cookie(&k1)).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{uri}");
    }
    let res = with_cookie("/customers/K1001/evn/..%2F2026-11.pdf", cookie(&k1)).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // Expired, forged or doubled cookies: the German page, 401.
    let forged = format!("{}x", &k1[..k1.len() - 1]);
    for c in [
        cookie(&expired_token("K1001")),
        cookie(&forged),
        format!("__Host-evn_session={k1}; __Host-evn_session={k1}"),
    ] {
        let res = with_cookie("/customers/K1001/evn/2026-11.pdf", c.clone()).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{c}");
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(text(res).await.contains("Link abgelaufen"));
        let res = with_cookie("/portal", c.clone()).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{c}");
    }
    // The bearer header wins over a cookie: an API client's token is what counts.
    let res = send(
        &f.app,
        Request::get("/customers/K1001/evn/2026-11.pdf")
            .header(header::AUTHORIZATION, format!("Bearer {}", token("K1002")))
            .header(header::COOKIE, cookie(&k1)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // No credential at all: JSON for an API client, the page for a browser.
    let res = call(
        &f.app,
        Method::GET,
        "/customers/K1001/evn/2026-11.pdf",
        None,
    )
    .await;
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
    let res = send(
        &f.app,
        Request::get("/customers/K1001/evn/2026-11.pdf").header(header::ACCEPT, "text/html,*/*"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
}

#[tokio::test]
async fn expired_or_bad_links_and_no_session_get_the_german_page() {
    let f = fixture();
    let t = token("K1001");
    for uri in [
        format!("/portal?token={}", expired_token("K1001")),
        "/portal?token=x.y.z".to_owned(),
        format!("/portal?token={t}&token={t}"),
        "/portal".to_owned(),
        "/portal?token=".to_owned(),
    ] {
        let res = send(&f.app, Request::get(&uri)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{uri}");
        let h = res.headers();
        assert!(h.get(header::SET_COOKIE).is_none(), "{uri}");
        assert!(h.get(header::CONTENT_SECURITY_POLICY).is_some(), "{uri}");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        let html = text(res).await;
        assert!(
            html.contains("<html lang=\"de\">") && html.contains("abgelaufen"),
            "{html}"
        );
    }
}

fn logout_req(c: Option<String>, csrf: Option<&str>, site: Option<&'static str>) -> Request<Body> {
    let mut req = Request::post("/portal/logout")
        .header(header::HOST, "evn.example")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = c {
        req = req.header(header::COOKIE, c);
    }
    if let Some(site) = site {
        req = req.header("sec-fetch-site", site);
    }
    let body = csrf.map(|v| format!("csrf={v}")).unwrap_or_default();
    req.body(Body::from(body)).unwrap()
}

#[tokio::test]
async fn logout_clears_the_cookie_only_from_the_own_page() {
    let f = fixture();
    let t = token("K1001");
    let csrf = crate::session::csrf_token(&t);
    let run = |req: Request<Body>| {
        let app = f.app.clone();
        async move { app.oneshot(req).await.unwrap() }
    };
    let res = run(logout_req(
        Some(cookie(&t)),
        Some(&csrf),
        Some("same-origin"),
    ))
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[header::LOCATION], "/portal/abgemeldet");
    let set = res.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(
        set.starts_with("__Host-evn_session=;") && set.contains("Max-Age=0"),
        "{set}"
    );
    // Origin instead of fetch metadata (older browsers).
    let mut req = logout_req(Some(cookie(&t)), Some(&csrf), None);
    req.headers_mut()
        .insert(header::ORIGIN, "https://evn.example".parse().unwrap());
    assert_eq!(run(req).await.status(), StatusCode::SEE_OTHER);
    // CSRF: another site's form, a missing or wrong form token, no origin information.
    for (req, why) in [
        (
            logout_req(Some(cookie(&t)), Some(&csrf), Some("cross-site")),
            "cross-site",
        ),
        (
            logout_req(Some(cookie(&t)), Some(&csrf), Some("same-site")),
            "same-site",
        ),
        (
            logout_req(Some(cookie(&t)), None, Some("same-origin")),
            "no form token",
        ),
        (
            logout_req(Some(cookie(&t)), Some("AAAA"), Some("same-origin")),
            "wrong form token",
        ),
        (
            logout_req(
                Some(cookie(&t)),
                Some(&crate::session::csrf_token(&token("K1002"))),
                Some("same-origin"),
            ),
            "another session's form token",
        ),
        (
            logout_req(Some(cookie(&t)), Some(&csrf), None),
            "no origin at all",
        ),
    ] {
        let res = run(req).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{why}");
        assert!(res.headers().get(header::SET_COOKIE).is_none(), "{why}");
        assert!(text(res).await.contains("Abmeldung nicht möglich"), "{why}");
    }
    let mut evil = logout_req(Some(cookie(&t)), Some(&csrf), None);
    evil.headers_mut()
        .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    assert_eq!(run(evil).await.status(), StatusCode::FORBIDDEN);
    // Logout is a POST; a link or an image cannot trigger it.
    let res = send(
        &f.app,
        Request::get("/portal/logout").header(header::COOKIE, cookie(&t)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    let res = send(&f.app, Request::get("/portal/abgemeldet")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(text(res).await.contains("Sie haben sich abgemeldet"));
}

#[tokio::test]
async fn framing_is_configurable_and_checked() {
    let f = fixture_with(|o| o.frame_ancestors = "'self'   https://portal.example.de".into());
    let res = send(&f.app, Request::get("/portal")).await;
    let csp = res.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(
        csp.ends_with("frame-ancestors 'self' https://portal.example.de"),
        "{csp}"
    );
    assert!(res.headers().get(header::X_FRAME_OPTIONS).is_none());
    for bad in [
        "",
        "*",
        "'none' 'self'",
        "https://a; script-src *",
        "https://a,b",
        "'unsafe-inline'",
        "javascript:",
    ] {
        assert!(crate::check_frame_ancestors(bad).is_err(), "{bad:?}");
    }
}

#[tokio::test]
async fn readyz_and_metrics_move_with_requests() {
    let f = fixture();
    let mut registry = prometheus_client::registry::Registry::default();
    f.metrics.register(&mut registry);
    let res = call(&f.app, Method::GET, "/readyz", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let k1 = token("K1001");
    for uri in [
        "/customers/K1001/evn/2026-11.pdf",
        "/customers/K1001/evn/2026-11.csv",
    ] {
        let res = call(&f.app, Method::GET, uri, Some(&k1)).await;
        body(res).await;
    }
    call(
        &f.app,
        Method::GET,
        "/customers/K1002/evn/2026-11.csv",
        Some(&k1),
    )
    .await;
    call(
        &f.app,
        Method::GET,
        "/customers/K1001/evn/2026-11.csv",
        Some("x.y.z"),
    )
    .await;
    let text = evn_metrics::encode(&registry);
    for line in [
        "evn_portal_downloads_total{format=\"pdf\",status=\"200\"} 1",
        "evn_portal_downloads_total{format=\"csv\",status=\"200\"} 1",
        "evn_portal_downloads_total{format=\"csv\",status=\"403\"} 1",
        "evn_portal_downloads_total{format=\"csv\",status=\"401\"} 1",
        "evn_portal_download_bytes_total{format=\"pdf\"} 17",
        &format!(
            "evn_portal_download_bytes_total{{format=\"csv\"}} {}",
            CSV.len()
        ),
        "evn_portal_requests_total{route=\"/readyz\",status=\"200\"} 1",
        "evn_portal_requests_total{route=\"/customers/{id}/evn/{file}\",status=\"200\"} 2",
        "evn_portal_tokens_refused_total{reason=\"malformed\"} 1",
        "evn_portal_downloads_in_flight 0",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
}
