//! `POST /v1/stats/reset`, allowed only with the configured bearer token.

use std::any::Any;
use std::sync::Arc;

use http::{header, HeaderValue, StatusCode};

use super::RESET_PATH;
use crate::names;
use crate::observer::handles;
use crate::observer::{Part, Pending, RecordSink, Route, RouteMethod};
use crate::response::{json, plain, EndpointBody};
use crate::{Observer, ObserverBuilder};

/// The reset token of an observer; attached when it is built with one.
#[derive(Default)]
pub(crate) struct ResetPart {
    token: String,
}

// Never prints the token.
impl std::fmt::Debug for ResetPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResetPart")
    }
}

impl Pending for ResetPart {
    fn attach(self: Box<Self>, observer: &Observer) -> Option<Arc<dyn RecordSink>> {
        if !self.token.is_empty() {
            observer.part(move || *self);
        }
        None
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl Part for ResetPart {
    fn routes(&self, observer: &Observer) -> Vec<Route> {
        let observer = observer.clone();
        vec![Route::new(RESET_PATH, RouteMethod::Post, move |parts| {
            let response = reset_response(&observer, parts.headers.get(header::AUTHORIZATION));
            async move { response }
        })]
    }
}

impl ObserverBuilder {
    /// Enables `POST /v1/stats/reset`, allowed only with `Authorization: Bearer <token>`.
    /// Without a token the route does not exist. An empty token is ignored.
    pub fn reset_token(mut self, token: impl Into<String>) -> Self {
        self.pending::<ResetPart>().token = token.into();
        self
    }
}

/// The verdict on a reset request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResetAuth {
    Granted,
    /// No bearer token: 401.
    Missing,
    /// A wrong token: 403.
    Invalid,
}

impl ResetPart {
    /// Checks an `Authorization` header against the token; refusals are counted.
    fn authorize(&self, observer: &Observer, authorization: Option<&[u8]>) -> ResetAuth {
        let presented = authorization.and_then(|v| {
            let v = std::str::from_utf8(v).ok()?.trim();
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
        let auth = match presented {
            None => ResetAuth::Missing,
            Some(p) if constant_time_eq(p.as_bytes(), self.token.as_bytes()) => ResetAuth::Granted,
            Some(_) => ResetAuth::Invalid,
        };
        let reason = match auth {
            ResetAuth::Granted => return auth,
            ResetAuth::Missing => "missing",
            ResetAuth::Invalid => "invalid",
        };
        observer.with_source(|source| {
            handles::counter(
                source,
                &handles::key(names::STATS_RESET_REJECTED, &[("reason", reason)]),
            )
            .increment(1);
        });
        auth
    }
}

/// `POST /v1/stats/reset`.
fn reset_response(
    observer: &Observer,
    authorization: Option<&HeaderValue>,
) -> http::Response<EndpointBody> {
    let Some(part) = observer.attached::<ResetPart>() else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    match part.authorize(observer, authorization.map(HeaderValue::as_bytes)) {
        ResetAuth::Missing => {
            let mut res = plain(
                StatusCode::UNAUTHORIZED,
                "a bearer token is required: Authorization: Bearer <token>",
            );
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            res
        }
        ResetAuth::Invalid => plain(StatusCode::FORBIDDEN, "invalid token"),
        ResetAuth::Granted => {
            observer.reset_stats();
            json(&serde_json::json!({
                "reset": true,
                "at": crate::time_fmt::rfc3339(observer.clock().wall()),
            }))
        }
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
