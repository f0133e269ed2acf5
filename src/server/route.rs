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

/// Routes not recorded at all, and routes recorded under one label, decided when the layer is
/// built ([`ObserveLayer::ignore_routes`], [`ObserveLayer::group_routes`]); each request's
/// route template is matched against them without allocating. Empty (the default), the
/// request path pays one length check.
///
/// [`ObserveLayer::ignore_routes`]: super::ObserveLayer::ignore_routes
/// [`ObserveLayer::group_routes`]: super::ObserveLayer::group_routes
#[derive(Debug, Clone, Default)]
pub(crate) struct RouteRules {
    /// Ignore rules first, then group rules in the order given: the first match wins.
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    pattern: Glob,
    /// `None`: the route is ignored; otherwise the label it is recorded under.
    group: Option<Box<str>>,
}

impl RouteRules {
    pub(crate) fn ignore(&mut self, pattern: &str) {
        // Before the first group rule: an ignored route is never grouped.
        let at = self.rules.iter().take_while(|r| r.group.is_none()).count();
        self.rules.insert(
            at,
            Rule {
                pattern: Glob::new(pattern),
                group: None,
            },
        );
    }

    pub(crate) fn group(&mut self, label: &str, pattern: &str) {
        self.rules.push(Rule {
            pattern: Glob::new(pattern),
            group: Some(label.into()),
        });
    }

    /// The `http_route` value `route` is recorded under, or `None` when it is ignored.
    #[inline]
    pub(crate) fn label<'a>(&'a self, route: &'a str) -> Option<&'a str> {
        if self.rules.is_empty() {
            return Some(route);
        }
        self.label_slow(route)
    }

    fn label_slow<'a>(&'a self, route: &'a str) -> Option<&'a str> {
        match self.rules.iter().find(|r| r.pattern.matches(route)) {
            None => Some(route),
            Some(rule) => rule.group.as_deref(),
        }
    }
}

/// A route pattern: literal text where `*` stands for any run of characters (`/` included).
/// `/assets/*` takes every template under `/assets/`; `/users/{id}` only that template.
#[derive(Debug, Clone)]
enum Glob {
    Exact(Box<str>),
    /// One `*`, at the end.
    Prefix(Box<str>),
    /// The literal pieces between the `*`s (the first and last may be empty).
    Pieces(Box<[Box<str>]>),
}

impl Glob {
    fn new(pattern: &str) -> Self {
        match pattern.find('*') {
            None => Self::Exact(pattern.into()),
            Some(at) if at == pattern.len() - 1 => Self::Prefix(pattern[..at].into()),
            Some(_) => Self::Pieces(pattern.split('*').map(Into::into).collect()),
        }
    }

    fn matches(&self, route: &str) -> bool {
        match self {
            Self::Exact(p) => route == &**p,
            Self::Prefix(p) => route.starts_with(&**p),
            Self::Pieces(pieces) => {
                let (Some(first), Some(last)) = (pieces.first(), pieces.last()) else {
                    return false;
                };
                let Some(mut rest) = route.strip_prefix(&**first) else {
                    return false;
                };
                let middle = &pieces[1..pieces.len() - 1];
                for piece in middle {
                    // The leftmost match of each piece leaves the most room for the next:
                    // with `*` as the only wildcard, that is enough.
                    match rest.find(&**piece) {
                        Some(at) => rest = &rest[at + piece.len()..],
                        None => return false,
                    }
                }
                rest.len() >= last.len() && rest.ends_with(&**last)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let m = |p: &str, r: &str| Glob::new(p).matches(r);
        assert!(m("/users/{id}", "/users/{id}"));
        assert!(!m("/users/{id}", "/users/{id}/x"));
        assert!(m("/assets/*", "/assets/{*path}"));
        assert!(m("/assets/*", "/assets/"));
        assert!(!m("/assets/*", "/assets"));
        assert!(m("*", "_UNMATCHED"));
        assert!(m("/api/*/admin", "/api/v1/admin"));
        assert!(m("/api/*/admin", "/api/v1/x/admin"));
        assert!(!m("/api/*/admin", "/api/v1/admin/x"));
        assert!(m("*/internal/*", "/v2/internal/jobs"));
        assert!(!m("/a*a", "/a"));
        assert!(m("/a*a", "/aa"));
        assert!(m("/a**b", "/ab"));
    }

    #[test]
    fn ignore_first_then_groups_in_order() {
        let mut rules = RouteRules::default();
        assert_eq!(rules.label("/x"), Some("/x"));
        rules.group("/static", "/static/*");
        rules.group("/other", "/static/css/*");
        rules.ignore("/static/private/*");
        assert_eq!(rules.label("/static/css/{f}"), Some("/static"));
        assert_eq!(rules.label("/static/private/{f}"), None);
        assert_eq!(rules.label("/users/{id}"), Some("/users/{id}"));
    }
}
