//! The router in memory: the order of the gates (401, 403, 400/404) and the response headers.
//! Over TCP, TLS and with the real binary: `tests/integration/portal.rs`.

use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::response::Response;
use axum::Router;
use tower::ServiceExt;

use crate::{mint_hs256, router, AuthConfig, CustomerId, HmacSecret, ServeOptions};

const SECRET: &[u8] = b"unit-test secret, 32 bytes or more";
const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

struct Fixture {
    _dir: tempfile::TempDir,
    app: Router,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("2026-11");
    std::fs::create_dir(&m).unwrap();
    std::fs::write(m.join("K1001.v1.pdf"), b"%PDF-1.7 K1001 v1").unwrap();
    std::fs::write(m.join("K1001.pdf"), b"%PDF-1.7 K1001 v1").unwrap();
    std::fs::write(m.join("K1002.v1.pdf"), b"%PDF-1.7 K1002 v1").unwrap();
    let entry = |v: u32| {
        serde_json::json!({"version": v, "sha256": SHA,
            "versions": [{"version": v, "sha256": SHA, "created": "2026-12-01"}]})
    };
    std::fs::write(
        m.join("manifest.json"),
        serde_json::json!({"customers": {"K1001": entry(1), "K1002": entry(1)}}).to_string(),
    )
    .unwrap();
    let auth = AuthConfig::new(Some(HmacSecret::new(SECRET).unwrap()), None, None).unwrap();
    let app = router(&ServeOptions::new(dir.path(), auth)).unwrap();
    Fixture { _dir: dir, app }
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
            "versions": [{"version": 1, "created": "2026-12-01", "sha256": SHA,
                          "url": "/customers/K1001/evn/2026-11.pdf?version=1"}]}]})
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
