//! `POST /v1/stats/reset`, allowed only with the configured bearer token.

use std::any::Any;
use std::sync::Arc;

use http::StatusCode;

use super::RESET_PATH;
use crate::access::{refusal, AccessToken};
use crate::names;
use crate::observer::{Part, Pending, RecordSink, Route, RouteMethod};
use crate::response::{json, plain, EndpointBody};
use crate::{Observer, ObserverBuilder};

/// The reset token configured on the builder.
#[derive(Default)]
pub(crate) struct ResetPending {
    token: String,
    /// From `TOWER_OBSERVE_RESET_TOKEN_FILE` ([`crate::env`]); the code's token wins.
    pub(crate) env_token: Option<String>,
}

impl Pending for ResetPending {
    fn attach(self: Box<Self>, observer: &Observer) -> Option<Arc<dyn RecordSink>> {
        let token = if self.token.is_empty() {
            self.env_token
        } else {
            Some(self.token)
        };
        if let Some(token) = token {
            let token = AccessToken::new(token, names::STATS_RESET_REJECTED);
            observer.part(move || ResetPart(token));
        }
        None
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

// Never prints the token.
impl std::fmt::Debug for ResetPending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResetPending")
    }
}

/// The attached reset capability: its token.
#[derive(Debug)]
pub(crate) struct ResetPart(AccessToken);

#[cfg(test)]
impl ResetPart {
    pub(crate) fn token_is(&self, token: &str) -> bool {
        self.0.is(token)
    }
}

impl Part for ResetPart {
    fn routes(&self, observer: &Observer) -> Vec<Route> {
        let observer = observer.clone();
        vec![Route::new(RESET_PATH, RouteMethod::Post, move |parts| {
            let response = reset_response(&observer, &parts);
            async move { response }
        })]
    }
}

impl ObserverBuilder {
    /// Enables `POST /v1/stats/reset`, allowed only with `Authorization: Bearer <token>`.
    /// Without a token the route does not exist. An empty token is ignored. Over the token
    /// in the file `TOWER_OBSERVE_RESET_TOKEN_FILE` names (read by
    /// [`configure_from_env`](ObserverBuilder::configure_from_env)).
    pub fn reset_token(mut self, token: impl Into<String>) -> Self {
        self.pending::<ResetPending>().token = token.into();
        self
    }
}

/// `POST /v1/stats/reset`.
fn reset_response(
    observer: &Observer,
    parts: &http::request::Parts,
) -> http::Response<EndpointBody> {
    let Some(access) = observer.attached::<ResetPart>() else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    if let Some(refused) = refusal(access.0.check(observer, parts, false)) {
        return refused;
    }
    observer.reset_stats();
    json(&serde_json::json!({
        "reset": true,
        "at": crate::time_fmt::rfc3339(observer.clock().wall()),
    }))
}
