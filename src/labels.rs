//! Label values: HTTP method normalisation, label sanitising and the extension types that
//! carry a route template or extra dimensions to the metrics layer.

use std::borrow::Cow;
use std::fmt;

/// Label value used for anything folded away: unknown methods, overflowed label sets.
pub const OTHER: &str = "_OTHER";

/// `http_route` label value for requests that matched no route.
///
/// The raw path is never used as a label: a scanner walking 100,000 random paths must not
/// mint 100,000 series.
pub const UNMATCHED_ROUTE: &str = "_UNMATCHED";

/// Longest label value we keep; longer values are cut at a character boundary.
pub const MAX_LABEL_VALUE_LEN: usize = 128;

/// The request method, folded to the RFC 9110 set plus `PATCH`; everything else is `_OTHER`.
///
/// ```
/// use tower_observe::labels::HttpMethod;
/// assert_eq!(HttpMethod::from_method(&http::Method::GET).as_str(), "GET");
/// let custom = http::Method::from_bytes(b"PURGE").unwrap();
/// assert_eq!(HttpMethod::from_method(&custom).as_str(), "_OTHER");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum HttpMethod {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
    Other,
}

impl HttpMethod {
    /// Every variant, in a fixed order (used to index per-method handles).
    pub const ALL: [HttpMethod; 10] = [
        HttpMethod::Get,
        HttpMethod::Head,
        HttpMethod::Post,
        HttpMethod::Put,
        HttpMethod::Delete,
        HttpMethod::Connect,
        HttpMethod::Options,
        HttpMethod::Trace,
        HttpMethod::Patch,
        HttpMethod::Other,
    ];

    /// Folds an [`http::Method`] into the known set.
    pub fn from_method(method: &http::Method) -> Self {
        match *method {
            http::Method::GET => Self::Get,
            http::Method::HEAD => Self::Head,
            http::Method::POST => Self::Post,
            http::Method::PUT => Self::Put,
            http::Method::DELETE => Self::Delete,
            http::Method::CONNECT => Self::Connect,
            http::Method::OPTIONS => Self::Options,
            http::Method::TRACE => Self::Trace,
            http::Method::PATCH => Self::Patch,
            _ => Self::Other,
        }
    }

    /// The label value: the method name, or `_OTHER`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
            Self::Options => "OPTIONS",
            Self::Trace => "TRACE",
            Self::Patch => "PATCH",
            Self::Other => OTHER,
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for HttpMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `network.protocol.version` of an HTTP message: `1.0`, `1.1`, `2`, `3` (`0.9` for the
/// historic version).
pub(crate) fn protocol_version(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_11 => "1.1",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => OTHER,
    }
}

/// Makes an arbitrary string safe to use as a label value.
///
/// Control characters become `_`, and the value is cut to [`MAX_LABEL_VALUE_LEN`] bytes at a
/// character boundary. An empty value stays empty. Borrowed when nothing had to change.
///
/// ```
/// use tower_observe::labels::sanitize_label_value;
/// assert_eq!(sanitize_label_value("eu-west-1"), "eu-west-1");
/// assert_eq!(sanitize_label_value("a\nb"), "a_b");
/// assert_eq!(sanitize_label_value(&"x".repeat(500)).len(), 128);
/// ```
pub fn sanitize_label_value(value: &str) -> Cow<'_, str> {
    let cut = if value.len() > MAX_LABEL_VALUE_LEN {
        let mut end = MAX_LABEL_VALUE_LEN;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        &value[..end]
    } else {
        value
    };
    if cut.chars().any(char::is_control) {
        Cow::Owned(
            cut.chars()
                .map(|c| if c.is_control() { '_' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(cut)
    }
}

/// Whether `name` is a valid Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A label name that cannot be used for an extra label or dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LabelError {
    /// Not a valid Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
    Invalid(String),
    /// One of the labels the metric already has, or a name Prometheus reserves (`le`,
    /// `__…`).
    Reserved(String),
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelError::Invalid(name) => write!(
                f,
                "{name:?} is not a valid label name (use letters, digits and _, not starting with a digit)"
            ),
            LabelError::Reserved(name) => {
                write!(f, "{name:?} is a built-in or reserved label name")
            }
        }
    }
}

impl std::error::Error for LabelError {}

/// The one check of a user-chosen label name: valid, not one of `reserved` (the labels the
/// metric already carries), and not a name Prometheus reserves.
pub(crate) fn check_label_name(name: &str, reserved: &[&str]) -> Result<(), LabelError> {
    if !is_valid_label_name(name) {
        return Err(LabelError::Invalid(name.to_owned()));
    }
    if reserved.contains(&name) || name.starts_with("__") || name == "le" {
        return Err(LabelError::Reserved(name.to_owned()));
    }
    Ok(())
}

/// The route template of a request, for routers other than axum.
///
/// With axum the template comes from `MatchedPath`; other routers (or a hand-written
/// dispatcher) insert this extension into the request before the metrics layer sees it, or
/// into the response. It must be a template (`/users/{id}`), never the raw path.
///
/// ```
/// use tower_observe::labels::RouteTemplate;
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(RouteTemplate::new("/users/{id}"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTemplate(Cow<'static, str>);

impl RouteTemplate {
    /// A route template.
    pub fn new(template: impl Into<Cow<'static, str>>) -> Self {
        Self(template.into())
    }

    /// The template.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Extra low-cardinality dimensions of one request: backend, proxy, model, provider…
///
/// A handler or an inner layer puts it in the **response** extensions (or an outer layer in
/// the request extensions); the metrics layer reads it when the response starts and adds
/// each dimension it was configured with as a label, and as a breakdown in `/v1/stats`.
/// Keys the layer was not configured with are ignored, so a handler cannot invent label
/// names. Values are sanitised and cut to [`MAX_LABEL_VALUE_LEN`] bytes; past the
/// cardinality limit they fold into `_OTHER`.
///
/// ```
/// use axum::{routing::get, Extension, Router};
/// use tower_observe::labels::Dimensions;
///
/// async fn chat() -> (Extension<Dimensions>, &'static str) {
///     (Extension(Dimensions::new().with("backend", "eu-1").with("model", "small")), "hi")
/// }
/// let app: Router = Router::new().route("/chat", get(chat));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dimensions {
    entries: Vec<(Cow<'static, str>, Cow<'static, str>)>,
}

impl Dimensions {
    /// No dimensions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the value of one dimension.
    #[must_use]
    pub fn with(
        mut self,
        key: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.set(key, value);
        self
    }

    /// Sets (or replaces) the value of one dimension.
    pub fn set(&mut self, key: impl Into<Cow<'static, str>>, value: impl Into<Cow<'static, str>>) {
        let key = key.into();
        let value = value.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    /// The value of one dimension, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    /// Copies every dimension of `other` over this one.
    pub fn merge(&mut self, other: &Dimensions) {
        for (k, v) in &other.entries {
            self.set(k.clone(), v.clone());
        }
    }

    /// Whether no dimension is set.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Iterates over `(key, value)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order() {
        for (i, m) in HttpMethod::ALL.iter().enumerate() {
            assert_eq!(m.index(), i);
        }
    }

    #[test]
    fn sanitize_cuts_at_char_boundary() {
        let s = "é".repeat(100); // 200 bytes
        let out = sanitize_label_value(&s);
        assert!(out.len() <= MAX_LABEL_VALUE_LEN);
        assert!(out.chars().all(|c| c == 'é'));
    }

    #[test]
    fn label_names() {
        assert!(is_valid_label_name("backend"));
        assert!(is_valid_label_name("_x1"));
        assert!(!is_valid_label_name("1x"));
        assert!(!is_valid_label_name("a-b"));
        assert!(!is_valid_label_name(""));
    }

    #[test]
    fn dimensions_replace_and_merge() {
        let mut d = Dimensions::new().with("backend", "a").with("backend", "b");
        assert_eq!(d.get("backend"), Some("b"));
        d.merge(&Dimensions::new().with("model", "m"));
        assert_eq!(d.iter().count(), 2);
    }
}
