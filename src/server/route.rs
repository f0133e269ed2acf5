//! The `http_route` label of a request.

use http::{Extensions, Request};

use crate::labels::{RouteTemplate, UNMATCHED_ROUTE};

/// The route template, held without copying the string (both sources are reference-counted
/// or static).
#[derive(Debug, Clone)]
pub(crate) enum RouteLabel {
    Unmatched,
    #[cfg(feature = "axum")]
    Matched(axum::extract::MatchedPath),
    Template(RouteTemplate),
}

impl RouteLabel {
    pub(crate) fn from_request<B>(req: &Request<B>) -> Self {
        Self::from_extensions(req.extensions()).unwrap_or(Self::Unmatched)
    }

    /// The route a non-axum router set on the response (used when the request had none).
    pub(crate) fn from_response(extensions: &Extensions) -> Self {
        Self::from_extensions(extensions).unwrap_or(Self::Unmatched)
    }

    pub(crate) fn is_unmatched(&self) -> bool {
        matches!(self, Self::Unmatched)
    }

    fn from_extensions(extensions: &Extensions) -> Option<Self> {
        if let Some(t) = extensions.get::<RouteTemplate>() {
            return Some(Self::Template(t.clone()));
        }
        #[cfg(feature = "axum")]
        if let Some(m) = extensions.get::<axum::extract::MatchedPath>() {
            return Some(Self::Matched(m.clone()));
        }
        None
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Unmatched => UNMATCHED_ROUTE,
            #[cfg(feature = "axum")]
            Self::Matched(m) => m.as_str(),
            Self::Template(t) => t.as_str(),
        }
    }
}
