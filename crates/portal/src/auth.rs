//! Bearer tokens: who is asking. HS256 with the shared `EVN_PORTAL_SECRET`, RS256 or ES256 with
//! the portal's public key; `exp` and `sub` required, `exp` at most [`MAX_LIFETIME`] ahead.
//! Verification is `jsonwebtoken`'s; this module decides which key, algorithm, audience and
//! issuer a token may have.
//!
//! A public key is an identity provider's, and the provider signs tokens for every application
//! it serves with it: only `aud` (and `iss`, where the provider has several tenants or keys)
//! tells a token for this portal from one for the CRM. So a public key is accepted only
//! together with an audience ([`PortalError::AudienceRequired`]).

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::paths::CustomerId;
use crate::PortalError;

/// HS256 is only as strong as its key: 32 bytes is the hash size (RFC 7518 §3.2).
pub const MIN_SECRET_BYTES: usize = 32;
/// Clock skew tolerated on `exp` and `nbf`: small, a token is meant to be short-lived.
pub const LEEWAY_SECS: u64 = 30;
/// Longer headers are refused unparsed; real tokens are a few hundred bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// `evn token --ttl` at most: a minted token cannot be revoked, only expire.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// A token whose `exp` lies further ahead than this is refused, whoever signed it: a stolen
/// token cannot be revoked, so one valid for years would be a permanent key. [`MAX_TTL`] (what
/// `evn token` mints at most) plus a day, so a 30-day token from a host whose clock runs ahead
/// of this one still verifies; identity providers issue minutes to hours.
pub const MAX_LIFETIME: Duration = Duration::from_secs(MAX_TTL.as_secs() + 24 * 3600);

/// The HS256 key. Never printed.
#[derive(Clone)]
pub struct HmacSecret(Vec<u8>);

impl HmacSecret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<HmacSecret, PortalError> {
        let bytes = bytes.into();
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(PortalError::SecretTooShort {
                len: bytes.len(),
                min: MIN_SECRET_BYTES,
            });
        }
        Ok(HmacSecret(bytes))
    }
}

impl fmt::Debug for HmacSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HmacSecret({} bytes)", self.0.len())
    }
}

/// A public key of the token issuer; its kind fixes the one algorithm it verifies, so an
/// RSA key can never be used as an HMAC secret (algorithm confusion).
#[derive(Clone)]
pub enum PublicKey {
    /// RS256.
    Rsa(DecodingKey),
    /// ES256 (P-256).
    Ec(DecodingKey),
}

impl PublicKey {
    pub fn from_pem(path: &Path, pem: &[u8]) -> Result<PublicKey, PortalError> {
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(PublicKey::Rsa(key));
        }
        DecodingKey::from_ec_pem(pem)
            .map(PublicKey::Ec)
            .map_err(|e| PortalError::PublicKey {
                path: path.to_owned(),
                detail: e.to_string(),
            })
    }

    pub fn read(path: &Path) -> Result<PublicKey, PortalError> {
        let pem = std::fs::read(path).map_err(|e| PortalError::PublicKey {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        PublicKey::from_pem(path, &pem)
    }

    fn algorithm(&self) -> Algorithm {
        match self {
            PublicKey::Rsa(_) => Algorithm::RS256,
            PublicKey::Ec(_) => Algorithm::ES256,
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({:?})", self.algorithm())
    }
}

/// Which tokens the service accepts.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    secret: Option<HmacSecret>,
    public_key: Option<PublicKey>,
    audience: Option<String>,
    /// Checked on public-key tokens only: `iss` names the identity provider, and the HS256
    /// tokens of `evn token` have none.
    issuer: Option<String>,
    /// `--revoked`: tokens refused before their `exp` ([`crate::revoke`]).
    revocations: Option<std::sync::Arc<crate::Revocations>>,
}

/// Why a request is not authenticated. Both are a 401; the reason goes to the debug log only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token that does not verify; a short reason for the log.
    Invalid(&'static str),
}

#[derive(Deserialize)]
struct VerifiedClaims {
    /// Optional here so that a token without it is reported as a missing claim by the
    /// validation, not as malformed JSON.
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    exp: Option<u64>,
    /// When it was issued: a revocation refuses the tokens issued before it.
    #[serde(default)]
    iat: Option<u64>,
}

/// A token that verified: whose it is and until when it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The customer id (`sub`).
    pub sub: String,
    /// `exp`, Unix seconds: a session cookie made from the token expires with it.
    pub exp: u64,
}

#[derive(Serialize)]
struct MintedClaims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

impl AuthConfig {
    /// At least one key. With `audience`, every token must carry that `aud`; without, `aud` is
    /// not looked at, which is allowed only with the HS256 secret alone (that key is this
    /// service's own, an identity provider's public key is not).
    pub fn new(
        secret: Option<HmacSecret>,
        public_key: Option<PublicKey>,
        audience: Option<String>,
    ) -> Result<AuthConfig, PortalError> {
        if secret.is_none() && public_key.is_none() {
            return Err(PortalError::NoKey);
        }
        if audience.as_deref() == Some("") {
            return Err(PortalError::EmptyClaim {
                flag: "--jwt-audience",
            });
        }
        if public_key.is_some() && audience.is_none() {
            return Err(PortalError::AudienceRequired);
        }
        Ok(AuthConfig {
            secret,
            public_key,
            audience,
            issuer: None,
            revocations: None,
        })
    }

    /// Also refuse the tokens that `revocations` names, whoever signed them.
    pub fn with_revocations(mut self, revocations: std::sync::Arc<crate::Revocations>) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// Public-key tokens must also carry this `iss`. Needs a public key: HS256 tokens of
    /// `evn token` name no issuer, so the option would check nothing there.
    pub fn with_issuer(mut self, issuer: String) -> Result<AuthConfig, PortalError> {
        if issuer.is_empty() {
            return Err(PortalError::EmptyClaim {
                flag: "--jwt-issuer",
            });
        }
        if self.public_key.is_none() {
            return Err(PortalError::IssuerWithoutPublicKey);
        }
        self.issuer = Some(issuer);
        Ok(self)
    }

    pub fn audience(&self) -> Option<&str> {
        self.audience.as_deref()
    }

    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// The customer id (`sub`) of a valid token.
    pub fn verify(&self, token: &str) -> Result<String, AuthError> {
        self.verify_claims(token).map(|v| v.sub)
    }

    /// The customer id and expiry of a valid token.
    pub fn verify_claims(&self, token: &str) -> Result<Verified, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Invalid("too long"));
        }
        // The header only picks the key; it is authenticated by the signature check below,
        // which also refuses any algorithm but the one the key is for (`alg: none` included).
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(reason(&e)))?;
        let (key, alg, issuer) = match (header.alg, &self.secret, &self.public_key) {
            (Algorithm::HS256, Some(secret), _) => {
                (DecodingKey::from_secret(&secret.0), Algorithm::HS256, None)
            }
            (Algorithm::RS256, _, Some(k @ PublicKey::Rsa(key)))
            | (Algorithm::ES256, _, Some(k @ PublicKey::Ec(key))) => {
                (key.clone(), k.algorithm(), self.issuer.as_deref())
            }
            _ => return Err(AuthError::Invalid("algorithm not accepted")),
        };
        let mut validation = Validation::new(alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<VerifiedClaims>(token, &key, &validation)
            .map_err(|e| AuthError::Invalid(reason(&e)))?;
        let (Some(sub), Some(exp)) = (data.claims.sub, data.claims.exp) else {
            return Err(AuthError::Invalid("missing claim"));
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if exp > now.saturating_add(MAX_LIFETIME.as_secs()) {
            return Err(AuthError::Invalid("lifetime too long"));
        }
        // A revocation refuses tokens issued at or before its time: one "issued" in the future
        // (a clock ahead, milliseconds written for seconds) would escape every revocation.
        if data
            .claims
            .iat
            .is_some_and(|iat| iat > now.saturating_add(LEEWAY_SECS) || iat > exp)
        {
            return Err(AuthError::Invalid("issued in the future"));
        }
        if let Some(r) = &self.revocations {
            if r.revokes(&sub, data.claims.iat) {
                return Err(AuthError::Invalid("revoked"));
            }
        }
        Ok(Verified { sub, exp })
    }
}

fn reason(e: &jsonwebtoken::errors::Error) -> &'static str {
    match e.kind() {
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::ImmatureSignature => "not yet valid",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => "algorithm not accepted",
        ErrorKind::MissingRequiredClaim(_) => "missing claim",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::InvalidIssuer => "wrong issuer",
        _ => "malformed",
    }
}

/// The token of an `Authorization: Bearer <token>` header value (scheme case-insensitive).
pub fn bearer(value: &[u8]) -> Result<&str, AuthError> {
    let value = std::str::from_utf8(value).map_err(|_| AuthError::Invalid("malformed"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(AuthError::Invalid("not a bearer token"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Invalid("not a bearer token"));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(token)
}

/// An HS256 token for `customer`, valid for `ttl` from `now` (what `evn token` prints).
pub fn mint_hs256(
    secret: &HmacSecret,
    customer: &CustomerId,
    ttl: Duration,
    now: SystemTime,
    audience: Option<&str>,
) -> String {
    let iat = now
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let claims = MintedClaims {
        sub: customer.as_str(),
        iat,
        exp: iat + ttl.as_secs(),
        aud: audience,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&secret.0),
    )
    .expect("HS256 signing cannot fail")
}

/// `30s`, `15m`, `1h`, `7d`: a positive whole number and one unit, at most [`MAX_TTL`].
pub fn parse_ttl(input: &str) -> Result<Duration, PortalError> {
    let err = |detail: &str| PortalError::Ttl {
        input: input.to_owned(),
        detail: detail.to_owned(),
    };
    let split = input.len().saturating_sub(1);
    let (digits, unit) = (
        input.get(..split).unwrap_or(""),
        input.get(split..).unwrap_or(""),
    );
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(err(
                "expected a number and a unit s, m, h or d, e.g. 15m or 1h",
            ))
        }
    };
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(
            "expected a number and a unit s, m, h or d, e.g. 15m or 1h",
        ));
    }
    let n: u64 = digits.parse().expect("at most 9 digits");
    let ttl = Duration::from_secs(n * unit_secs);
    if ttl.is_zero() {
        return Err(err("must be longer than zero"));
    }
    if ttl > MAX_TTL {
        return Err(err("at most 30d: a token cannot be revoked, only expire"));
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn hs() -> AuthConfig {
        AuthConfig::new(Some(HmacSecret::new(SECRET).unwrap()), None, None).unwrap()
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn sign(header: &Header, claims: &serde_json::Value, secret: &[u8]) -> String {
        jsonwebtoken::encode(header, claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    fn b64(bytes: &[u8]) -> String {
        // base64url without padding, by hand: the test must not trust the code under test.
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().fold(0u32, |n, &b| (n << 8) | b as u32) << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }

    #[test]
    fn short_secret_is_refused_with_a_hint() {
        let e = HmacSecret::new(&SECRET[..31]).unwrap_err();
        assert!(e.to_string().contains("at least 32"), "{e}");
        assert_eq!(e.exit_code(), 2);
        assert!(matches!(
            AuthConfig::new(None, None, None),
            Err(PortalError::NoKey)
        ));
    }

    #[test]
    fn secret_is_not_printed() {
        let s = HmacSecret::new(SECRET).unwrap();
        assert!(!format!("{s:?}").contains("0123"));
    }

    #[test]
    fn minted_token_verifies_and_names_the_customer() {
        let c = CustomerId::parse("K1001").unwrap();
        let t = mint_hs256(
            &HmacSecret::new(SECRET).unwrap(),
            &c,
            Duration::from_secs(60),
            SystemTime::now(),
            None,
        );
        assert_eq!(hs().verify(&t), Ok("K1001".to_owned()));
    }

    #[test]
    fn decisions() {
        let n = now();
        let good = serde_json::json!({"sub": "K1001", "exp": n + 600});
        let h = Header::new(Algorithm::HS256);
        let check = |token: &str, expected: Result<&str, &'static str>| {
            let got = hs().verify(token);
            assert_eq!(
                got,
                expected.map(str::to_owned).map_err(AuthError::Invalid),
                "{token}"
            );
        };
        check(&sign(&h, &good, SECRET), Ok("K1001"));
        // Within the leeway is still valid; beyond it is not.
        check(
            &sign(
                &h,
                &serde_json::json!({"sub": "K1001", "exp": n - 10}),
                SECRET,
            ),
            Ok("K1001"),
        );
        check(
            &sign(
                &h,
                &serde_json::json!({"sub": "K1001", "exp": n - 120}),
                SECRET,
            ),
            Err("expired"),
        );
        check(
            &sign(&h, &good, b"another secret of thirty-two bytes!!"),
            Err("bad signature"),
        );
        check(
            &sign(&h, &serde_json::json!({"sub": "K1001"}), SECRET),
            Err("missing claim"),
        );
        check(
            &sign(&h, &serde_json::json!({"exp": n + 600}), SECRET),
            Err("missing claim"),
        );
        check(
            &sign(
                &h,
                &serde_json::json!({"sub": "K1001", "exp": n + 600, "nbf": n + 600}),
                SECRET,
            ),
            Err("not yet valid"),
        );
        check(
            &sign(&Header::new(Algorithm::HS512), &good, SECRET),
            Err("algorithm not accepted"),
        );
        // alg none, hand-assembled: no library would produce it.
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(good.to_string().as_bytes())
        );
        check(&none, Err("malformed"));
        // RS256 header with an HMAC signature: no public key configured, refused up front.
        let t = sign(&h, &good, SECRET);
        let parts: Vec<&str> = t.split('.').collect();
        let rs = format!(
            "{}.{}.{}",
            b64(br#"{"alg":"RS256","typ":"JWT"}"#),
            parts[1],
            parts[2]
        );
        check(&rs, Err("algorithm not accepted"));
        // Tampered payload, original signature.
        let forged = b64(serde_json::json!({"sub": "K1002", "exp": n + 600})
            .to_string()
            .as_bytes());
        check(
            &format!("{}.{forged}.{}", parts[0], parts[2]),
            Err("bad signature"),
        );
        for junk in ["", "abc", "a.b", "a.b.c", "....", "ä.ö.ü"] {
            assert!(hs().verify(junk).is_err(), "{junk:?}");
        }
        check(&"x".repeat(MAX_TOKEN_BYTES + 1), Err("too long"));
    }

    #[test]
    fn audience_when_configured() {
        let cfg = AuthConfig::new(
            Some(HmacSecret::new(SECRET).unwrap()),
            None,
            Some("evn-portal".into()),
        )
        .unwrap();
        let n = now();
        let h = Header::new(Algorithm::HS256);
        let with = |aud: &str| {
            sign(
                &h,
                &serde_json::json!({"sub": "K1", "exp": n + 60, "aud": aud}),
                SECRET,
            )
        };
        assert_eq!(cfg.verify(&with("evn-portal")), Ok("K1".into()));
        assert_eq!(
            cfg.verify(&with("billing")),
            Err(AuthError::Invalid("wrong audience"))
        );
        let without = sign(&h, &serde_json::json!({"sub": "K1", "exp": n + 60}), SECRET);
        assert_eq!(
            cfg.verify(&without),
            Err(AuthError::Invalid("missing claim"))
        );
        // Without a configured audience a token's `aud` is not looked at.
        assert_eq!(hs().verify(&with("anything")), Ok("K1".into()));
    }

    // A P-256 pair made for these tests only (`openssl ecparam -name prime256v1 -genkey`).
    const IDP_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgOnsrKjSSYpvNahc6
6wI5fmLeb/qPAAg4BrMVNtKl7eWhRANCAARonc+VZl/bDj+cuwhqMIeogk+fHe0Q
91Ezm+JnoSFpZpeLrrrknJpqdtTWTRpL1mn2tH+ycOivc8sMjngWuQR1
-----END PRIVATE KEY-----
";
    const IDP_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEaJ3PlWZf2w4/nLsIajCHqIJPnx3t
EPdRM5viZ6EhaWaXi6665JyaanbU1k0aS9Zp9rR/snDor3PLDI54FrkEdQ==
-----END PUBLIC KEY-----
";

    fn idp_key() -> PublicKey {
        PublicKey::from_pem(Path::new("idp.pem"), IDP_PUBLIC.as_bytes()).unwrap()
    }

    fn idp_token(claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::ES256),
            claims,
            &EncodingKey::from_ec_pem(IDP_PRIVATE.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    /// The bug: with an identity provider's key and no audience, its token for another
    /// application (`aud: crm-backoffice`) opened the customer's EVNs. Such a configuration is
    /// now refused, and a configured issuer is checked.
    #[test]
    fn a_public_key_needs_an_audience_and_checks_a_configured_issuer() {
        let e = AuthConfig::new(None, Some(idp_key()), None).unwrap_err();
        assert!(matches!(e, PortalError::AudienceRequired), "{e}");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--jwt-audience"), "{e}");
        let e = AuthConfig::new(
            Some(HmacSecret::new(SECRET).unwrap()),
            Some(idp_key()),
            None,
        )
        .unwrap_err();
        assert!(matches!(e, PortalError::AudienceRequired), "{e}");
        let e = AuthConfig::new(None, Some(idp_key()), Some(String::new())).unwrap_err();
        assert!(matches!(e, PortalError::EmptyClaim { .. }), "{e}");
        assert_eq!(e.exit_code(), 2);
        // The issuer is checked on the identity provider's tokens, so it needs its key.
        let e = hs().with_issuer("https://idp.example".into()).unwrap_err();
        assert!(matches!(e, PortalError::IssuerWithoutPublicKey), "{e}");
        assert_eq!(e.exit_code(), 2);

        let n = now();
        let cfg = AuthConfig::new(
            Some(HmacSecret::new(SECRET).unwrap()),
            Some(idp_key()),
            Some("evn-portal".into()),
        )
        .unwrap()
        .with_issuer("https://idp.example".into())
        .unwrap();
        let idp = |claims: serde_json::Value| cfg.verify(&idp_token(&claims));
        assert_eq!(
            idp(
                serde_json::json!({"sub": "K1001", "exp": n + 300, "aud": "evn-portal", "iss": "https://idp.example"})
            ),
            Ok("K1001".into())
        );
        assert_eq!(
            idp(
                serde_json::json!({"sub": "K1001", "exp": n + 300, "aud": "crm-backoffice", "iss": "https://idp.example"})
            ),
            Err(AuthError::Invalid("wrong audience"))
        );
        assert_eq!(
            idp(serde_json::json!({"sub": "K1001", "exp": n + 300, "iss": "https://idp.example"})),
            Err(AuthError::Invalid("missing claim"))
        );
        assert_eq!(
            idp(
                serde_json::json!({"sub": "K1001", "exp": n + 300, "aud": "evn-portal", "iss": "https://other-tenant.example"})
            ),
            Err(AuthError::Invalid("wrong issuer"))
        );
        assert_eq!(
            idp(serde_json::json!({"sub": "K1001", "exp": n + 300, "aud": "evn-portal"})),
            Err(AuthError::Invalid("missing claim"))
        );
        // `evn token`'s HS256 tokens name no issuer and are not asked for one; the audience
        // holds for every token.
        let minted = |aud| {
            mint_hs256(
                &HmacSecret::new(SECRET).unwrap(),
                &CustomerId::parse("K1001").unwrap(),
                Duration::from_secs(60),
                SystemTime::now(),
                aud,
            )
        };
        assert_eq!(cfg.verify(&minted(Some("evn-portal"))), Ok("K1001".into()));
        assert_eq!(
            cfg.verify(&minted(None)),
            Err(AuthError::Invalid("missing claim"))
        );
    }

    /// A token "issued" in the future would escape every revocation (issued at or before).
    #[test]
    fn an_iat_in_the_future_or_after_exp_is_refused() {
        let n = now();
        let h = Header::new(Algorithm::HS256);
        let with_iat = |iat: u64, exp: u64| {
            sign(
                &h,
                &serde_json::json!({"sub": "K1001", "iat": iat, "exp": exp}),
                SECRET,
            )
        };
        assert_eq!(hs().verify(&with_iat(n, n + 600)), Ok("K1001".into()));
        // A clock a few seconds ahead is within the leeway.
        assert_eq!(
            hs().verify(&with_iat(n + LEEWAY_SECS / 2, n + 600)),
            Ok("K1001".into())
        );
        for (iat, exp) in [
            (n + 365 * 86_400, n + 600),
            (n * 1000, n + 600),
            (n + 120, n + 60),
        ] {
            assert_eq!(
                hs().verify(&with_iat(iat, exp)),
                Err(AuthError::Invalid("issued in the future")),
                "iat {iat}, exp {exp}"
            );
        }
    }

    #[test]
    fn an_exp_beyond_the_longest_lifetime_is_refused() {
        let n = now();
        let h = Header::new(Algorithm::HS256);
        let with_exp =
            |exp: u64| sign(&h, &serde_json::json!({"sub": "K1001", "exp": exp}), SECRET);
        // What `evn token --ttl 30d` mints, even from a clock some hours ahead.
        assert_eq!(
            hs().verify(&with_exp(n + MAX_TTL.as_secs())),
            Ok("K1001".into())
        );
        assert_eq!(
            hs().verify(&with_exp(n + MAX_TTL.as_secs() + 12 * 3600)),
            Ok("K1001".into())
        );
        for exp in [
            n + MAX_LIFETIME.as_secs() + 60,
            n + 365 * 86_400,
            u64::from(u32::MAX) * 4,
        ] {
            assert_eq!(
                hs().verify(&with_exp(exp)),
                Err(AuthError::Invalid("lifetime too long")),
                "{exp}"
            );
        }
        // Whoever signed it.
        let cfg = AuthConfig::new(None, Some(idp_key()), Some("evn-portal".into())).unwrap();
        let long = idp_token(
            &serde_json::json!({"sub": "K1001", "exp": n + 365 * 86_400, "aud": "evn-portal"}),
        );
        assert_eq!(
            cfg.verify(&long),
            Err(AuthError::Invalid("lifetime too long"))
        );
    }

    #[test]
    fn bearer_header() {
        assert_eq!(bearer(b"Bearer abc"), Ok("abc"));
        assert_eq!(bearer(b"bearer abc"), Ok("abc"));
        assert_eq!(bearer(b"Bearer "), Err(AuthError::Missing));
        assert!(bearer(b"Basic abc").is_err());
        assert!(bearer(b"Bearerabc").is_err());
        assert!(bearer(b"Bearer \xff").is_err());
    }

    #[test]
    fn ttl() {
        assert_eq!(parse_ttl("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_ttl("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_ttl("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_ttl("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(parse_ttl("30d").unwrap(), MAX_TTL);
        for bad in [
            "",
            "h",
            "1",
            "1H",
            "1 h",
            "-1h",
            "+1h",
            "1.5h",
            "0s",
            "31d",
            "1hm",
            "1µ",
            "9999999999s",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad:?}");
        }
    }
}
