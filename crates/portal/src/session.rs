//! The download page's browser session (issue 11): the portal's token, once checked at
//! `/portal?token=…`, is kept in a cookie so that the page and its download links work without
//! the token in any further URL.
//!
//! The cookie carries the JWT itself, not a session of this service's own. Nothing new to trust:
//! every request verifies it exactly like a bearer token (key, algorithm, `exp`, `aud`), so the
//! cookie cannot outlive the token even if a browser ignores its expiry; no session store, and
//! no second shared secret for the replicas to agree on (a deployment with only the identity
//! provider's public key has no secret to sign sessions with at all). What it costs: the token
//! must fit a cookie ([`MAX_COOKIE_TOKEN_BYTES`]).
//!
//! `__Host-` makes browsers insist on `Secure`, `Path=/` and no `Domain`, so a sibling subdomain
//! cannot plant or overwrite the cookie. `SameSite=Strict` keeps it off every cross-site
//! request; logout additionally checks the request's origin and a form token
//! ([`csrf_token`], [`same_origin`]).

use axum::http::{header, HeaderMap, HeaderValue};
use cookie::{Cookie, SameSite};
use sha2::{Digest, Sha256};

pub const COOKIE_NAME: &str = "__Host-evn_session";

/// Browsers keep a cookie of up to 4096 bytes with its name and attributes (RFC 6265 §6.1);
/// what is left for the token, with room for the attributes.
pub const MAX_COOKIE_TOKEN_BYTES: usize = 3800;

/// `Set-Cookie` for the session: a session cookie (no `Max-Age`, no `Expires`), which the
/// browser drops when it closes instead of keeping the itemised calls open on a shared PC for
/// the token's lifetime (the privacy policy promises session cookies). The token's `exp` ends
/// the session on the server in any case.
pub fn set_cookie(token: &str) -> HeaderValue {
    let c = Cookie::build((COOKIE_NAME, token))
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Strict)
        .path("/")
        .build();
    HeaderValue::from_str(&c.to_string()).expect("a verified JWT is a valid cookie value")
}

/// `Set-Cookie` that removes the session (same attributes, or browsers keep the old one).
pub fn clear_cookie() -> HeaderValue {
    let c = Cookie::build((COOKIE_NAME, ""))
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(cookie::time::Duration::ZERO)
        .build();
    HeaderValue::from_str(&c.to_string()).expect("static cookie")
}

/// The session token of the request's `Cookie` headers: `Ok(None)` without one, `Err` when
/// there are two (which the `__Host-` prefix should make impossible; refused, not guessed).
pub fn session_token(headers: &HeaderMap) -> Result<Option<String>, &'static str> {
    let mut found = None;
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for c in Cookie::split_parse(value).flatten() {
            if c.name() == COOKIE_NAME {
                if found.is_some() {
                    return Err("two session cookies");
                }
                found = Some(c.value().to_owned());
            }
        }
    }
    Ok(found.filter(|t| !t.is_empty()))
}

/// The logout form's token: derived from the session token, which a cross-site page can
/// neither read (HttpOnly) nor guess, so it needs no state and changes with every session.
pub fn csrf_token(session_token: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"evn-portal logout\0")
        .chain_update(session_token.as_bytes())
        .finalize();
    base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &digest[..24],
    )
}

/// Compares without an early exit, so the time taken says nothing about where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A state-changing request came from a page of this service: `Sec-Fetch-Site: same-origin`
/// (every current browser sends it), or else an `Origin` whose host is the request's `Host`.
/// Neither header: refused, as a browser always sends one of them with a form POST.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site.as_bytes() == b"same-origin";
    }
    let (Some(origin), Some(host)) = (headers.get(header::ORIGIN), headers.get(header::HOST))
    else {
        return false;
    };
    let (Ok(origin), Ok(host)) = (origin.to_str(), host.to_str()) else {
        return false;
    };
    origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cookie_attributes() {
        let v = set_cookie("a.b.c");
        let s = v.to_str().unwrap();
        assert!(s.starts_with("__Host-evn_session=a.b.c;"), "{s}");
        for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
            assert!(s.contains(attr), "{attr} in {s}");
        }
        assert!(!s.contains("Domain"), "{s}");
        assert!(!s.contains("Max-Age") && !s.contains("Expires"), "{s}");
        let c = clear_cookie();
        let c = c.to_str().unwrap();
        assert!(c.starts_with("__Host-evn_session=;"), "{c}");
        assert!(c.contains("Max-Age=0") && c.contains("Path=/") && c.contains("Secure"));
    }

    #[test]
    fn the_session_cookie_among_others() {
        let check = |pairs: &[(&'static str, &'static str)], expected: Result<Option<&str>, _>| {
            assert_eq!(
                session_token(&headers(pairs)),
                expected.map(|o| o.map(str::to_owned)),
                "{pairs:?}"
            );
        };
        check(&[], Ok(None));
        check(&[("cookie", "a=1; b=2")], Ok(None));
        check(
            &[("cookie", "a=1; __Host-evn_session=x.y.z; b=2")],
            Ok(Some("x.y.z")),
        );
        check(
            &[("cookie", "a=1"), ("cookie", "__Host-evn_session=x.y.z")],
            Ok(Some("x.y.z")),
        );
        // Without the prefix it is someone else's cookie.
        check(&[("cookie", "evn_session=x.y.z")], Ok(None));
        check(&[("cookie", "__Host-evn_session=")], Ok(None));
        check(
            &[("cookie", "__Host-evn_session=a; __Host-evn_session=b")],
            Err("two session cookies"),
        );
    }

    #[test]
    fn csrf_token_is_bound_to_the_session() {
        let a = csrf_token("a.b.c");
        assert_eq!(a, csrf_token("a.b.c"));
        assert_ne!(a, csrf_token("a.b.d"));
        assert_eq!(a.len(), 32);
        assert!(constant_time_eq(
            a.as_bytes(),
            csrf_token("a.b.c").as_bytes()
        ));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn origin_checks() {
        let check = |pairs: &[(&'static str, &'static str)], expected: bool| {
            assert_eq!(same_origin(&headers(pairs)), expected, "{pairs:?}");
        };
        check(&[("sec-fetch-site", "same-origin")], true);
        check(&[("sec-fetch-site", "same-site")], false);
        check(&[("sec-fetch-site", "cross-site")], false);
        check(&[("sec-fetch-site", "none")], false);
        // Fetch metadata decides when present, whatever Origin says.
        check(
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://evn.example"),
                ("host", "evn.example"),
            ],
            false,
        );
        check(
            &[("origin", "https://evn.example"), ("host", "evn.example")],
            true,
        );
        check(
            &[
                ("origin", "http://127.0.0.1:8080"),
                ("host", "127.0.0.1:8080"),
            ],
            true,
        );
        check(
            &[("origin", "https://evil.example"), ("host", "evn.example")],
            false,
        );
        check(
            &[
                ("origin", "https://evn.example.evil"),
                ("host", "evn.example"),
            ],
            false,
        );
        check(&[("origin", "null"), ("host", "evn.example")], false);
        check(&[("host", "evn.example")], false);
        check(&[], false);
    }
}
