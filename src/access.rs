//! Access tokens of the observer's protected endpoints (the stats reset, the dashboard):
//! presented as a bearer token (or, where a browser cannot set headers, a `token` query
//! parameter), compared in constant time, refusals counted by reason.

use http::{header, HeaderValue, StatusCode};

use crate::observer::handles;
use crate::response::{plain, EndpointBody};
use crate::Observer;

/// Whether a request may use a protected endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Granted,
    /// No token presented: 401.
    Missing,
    /// A wrong token: 403.
    Invalid,
}

/// A secret token and the counter of refusals (`{reason="missing"|"invalid"}`).
pub(crate) struct AccessToken {
    token: String,
    rejected: &'static str,
}

// Never prints the token.
impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken")
    }
}

impl AccessToken {
    pub(crate) fn new(token: String, rejected: &'static str) -> Self {
        Self { token, rejected }
    }

    /// Whether this is `token` (tests of where a token came from).
    #[cfg(test)]
    pub(crate) fn is(&self, token: &str) -> bool {
        self.token == token
    }

    /// Checks the token the request presents: `Authorization: Bearer <token>`, or with
    /// `query` also `?token=<token>`. Refusals are counted.
    pub(crate) fn check(
        &self,
        observer: &Observer,
        parts: &http::request::Parts,
        query: bool,
    ) -> Verdict {
        let bearer = parts.headers.get(header::AUTHORIZATION).and_then(|v| {
            let v = std::str::from_utf8(v.as_bytes()).ok()?.trim();
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
        let from_query = || {
            parts
                .uri
                .query()?
                .split('&')
                .find_map(|pair| pair.strip_prefix("token="))
        };
        let presented = bearer.or_else(|| if query { from_query() } else { None });
        let verdict = match presented {
            None => Verdict::Missing,
            Some(p) if constant_time_eq(p.as_bytes(), self.token.as_bytes()) => Verdict::Granted,
            Some(_) => Verdict::Invalid,
        };
        let reason = match verdict {
            Verdict::Granted => return verdict,
            Verdict::Missing => "missing",
            Verdict::Invalid => "invalid",
        };
        observer.with_source(|source| {
            handles::counter(source, &handles::key(self.rejected, &[("reason", reason)]))
                .increment(1);
        });
        verdict
    }
}

/// The answer to a refused request (`None` when granted).
pub(crate) fn refusal(verdict: Verdict) -> Option<http::Response<EndpointBody>> {
    match verdict {
        Verdict::Granted => None,
        Verdict::Missing => {
            let mut res = plain(
                StatusCode::UNAUTHORIZED,
                "a bearer token is required: Authorization: Bearer <token>",
            );
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Some(res)
        }
        Verdict::Invalid => Some(plain(StatusCode::FORBIDDEN, "invalid token")),
    }
}

/// Compares without leaking, through timing, how much of the token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
