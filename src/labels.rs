//! Label values: HTTP method normalisation, label sanitising and the extension types that
//! carry a route template or extra dimensions to the metrics layer.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Mutex, OnceLock};

/// Label value used for anything folded away: unknown methods, overflowed label sets.
pub const OTHER: &str = "_OTHER";

/// `http_route` label value for requests that matched no route.
///
/// The raw path is never used as a label: a scanner walking 100,000 random paths must not
/// mint 100,000 series.
pub const UNMATCHED_ROUTE: &str = "_UNMATCHED";

/// Longest label value we keep; longer values are cut at a character boundary.
pub const MAX_LABEL_VALUE_LEN: usize = 128;

/// The request method as a label: the methods the OpenTelemetry HTTP conventions know (RFC
/// 9110's, `PATCH` and `QUERY`), methods an observer was told to know
/// ([`ObserverBuilder::known_http_methods`](crate::ObserverBuilder::known_http_methods)), and
/// `_OTHER` for everything else, so a client cannot mint series with invented methods.
///
/// ```
/// use tower_observe::labels::HttpMethod;
/// assert_eq!(HttpMethod::from_method(&http::Method::GET).as_str(), "GET");
/// let custom = http::Method::from_bytes(b"PURGE").unwrap();
/// assert_eq!(HttpMethod::from_method(&custom).as_str(), "_OTHER");
/// let query = http::Method::from_bytes(b"QUERY").unwrap();
/// assert_eq!(HttpMethod::from_method(&query).as_str(), "QUERY");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
#[non_exhaustive]
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
    Query,
    Other,
    /// A method an observer was configured to know (see [`KnownMethods`]).
    Extension(ExtensionMethod),
}

/// A method outside the conventions' list that an observer was configured to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExtensionMethod(u8);

/// Most extension methods a process can know (over all observers).
pub const MAX_EXTENSION_METHODS: usize = 16;

/// The extension methods' names, interned once per process so labels can borrow them.
static EXTENSION_NAMES: [OnceLock<Box<str>>; MAX_EXTENSION_METHODS] =
    [const { OnceLock::new() }; MAX_EXTENSION_METHODS];
static EXTENSION_LOCK: Mutex<()> = Mutex::new(());

impl ExtensionMethod {
    /// The interned method called `name`, interning it if there is room.
    fn intern(name: &str) -> Option<Self> {
        let _lock = EXTENSION_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        for (i, slot) in EXTENSION_NAMES.iter().enumerate() {
            match slot.get() {
                Some(existing) if **existing == *name => return Some(Self(i as u8)),
                Some(_) => {}
                None => {
                    let _ = slot.set(name.into());
                    return Some(Self(i as u8));
                }
            }
        }
        None
    }

    fn as_str(self) -> &'static str {
        EXTENSION_NAMES
            .get(usize::from(self.0))
            .and_then(|slot| slot.get())
            .map_or(OTHER, |name| name)
    }
}

impl HttpMethod {
    /// The methods the OpenTelemetry HTTP conventions know, in a fixed order (the index of
    /// per-method handles), then `_OTHER`.
    pub const ALL: [HttpMethod; 11] = [
        HttpMethod::Get,
        HttpMethod::Head,
        HttpMethod::Post,
        HttpMethod::Put,
        HttpMethod::Delete,
        HttpMethod::Connect,
        HttpMethod::Options,
        HttpMethod::Trace,
        HttpMethod::Patch,
        HttpMethod::Query,
        HttpMethod::Other,
    ];

    /// How many distinct methods a label can take: [`ALL`](Self::ALL) and the extensions.
    pub(crate) const COUNT: usize = Self::ALL.len() + MAX_EXTENSION_METHODS;

    /// Folds an [`http::Method`] into the conventions' known set (`_OTHER` outside it).
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
            _ if method.as_str() == "QUERY" => Self::Query,
            _ => Self::Other,
        }
    }

    /// The label value: the method name, or `_OTHER`.
    pub fn as_str(self) -> &'static str {
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
            Self::Query => "QUERY",
            Self::Other => OTHER,
            Self::Extension(e) => e.as_str(),
        }
    }

    /// An index below [`COUNT`](Self::COUNT), for per-method handles.
    pub(crate) const fn index(self) -> usize {
        match self {
            Self::Extension(ExtensionMethod(i)) => Self::ALL.len() + i as usize,
            Self::Get => 0,
            Self::Head => 1,
            Self::Post => 2,
            Self::Put => 3,
            Self::Delete => 4,
            Self::Connect => 5,
            Self::Options => 6,
            Self::Trace => 7,
            Self::Patch => 8,
            Self::Query => 9,
            Self::Other => 10,
        }
    }
}

/// The HTTP methods an observer labels by name; every other method is `_OTHER`.
///
/// By default the OpenTelemetry conventions' list. The conventions require a way to override
/// it in full when methods can fold into `_OTHER`: [`ObserverBuilder::known_http_methods`]
/// (or the `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS` environment variable, a comma-separated,
/// case-sensitive list, read when the builder is made).
///
/// [`ObserverBuilder::known_http_methods`]: crate::ObserverBuilder::known_http_methods
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownMethods {
    /// Bit `i`: `HttpMethod::ALL[i]` is known.
    standard: u16,
    extensions: Box<[(Box<str>, ExtensionMethod)]>,
}

impl Default for KnownMethods {
    fn default() -> Self {
        Self {
            standard: (1 << (HttpMethod::ALL.len() - 1)) - 1,
            extensions: Box::default(),
        }
    }
}

impl KnownMethods {
    /// Exactly `methods` (case-sensitive), replacing the default list.
    pub(crate) fn exactly<'a>(methods: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut known = Self {
            standard: 0,
            extensions: Box::default(),
        };
        let mut extensions = Vec::new();
        for name in methods {
            let name = name.trim();
            if name.is_empty() {
                continue;
            }
            let method = http::Method::from_bytes(name.as_bytes()).map_err(|_| name.to_owned())?;
            match HttpMethod::from_method(&method) {
                HttpMethod::Other => {
                    let ext = ExtensionMethod::intern(name).ok_or_else(|| name.to_owned())?;
                    extensions.push((Box::<str>::from(name), ext));
                }
                m => known.standard |= 1 << m.index(),
            }
        }
        known.extensions = extensions.into_boxed_slice();
        Ok(known)
    }

    /// The label of `method`.
    #[inline]
    pub(crate) fn label(&self, method: &http::Method) -> HttpMethod {
        match HttpMethod::from_method(method) {
            HttpMethod::Other => self
                .extensions
                .iter()
                .find(|(name, _)| **name == *method.as_str())
                .map_or(HttpMethod::Other, |(_, ext)| HttpMethod::Extension(*ext)),
            m if self.standard >> m.index() & 1 == 1 => m,
            _ => HttpMethod::Other,
        }
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
#[derive(Clone, PartialEq, Eq)]
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

debug_as_display!(LabelError);

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
    fn known_methods_can_be_overridden_in_full() {
        let method = |m: &str| http::Method::from_bytes(m.as_bytes()).unwrap();
        let default = KnownMethods::default();
        assert_eq!(default.label(&method("QUERY")), HttpMethod::Query);
        assert_eq!(default.label(&method("PURGE")), HttpMethod::Other);
        assert_eq!(default.label(&method("TRACE")), HttpMethod::Trace);
        let custom = KnownMethods::exactly(["GET", "POST", "PURGE"]).unwrap();
        assert_eq!(custom.label(&method("GET")), HttpMethod::Get);
        assert_eq!(custom.label(&method("PURGE")).as_str(), "PURGE");
        assert!(custom.label(&method("PURGE")).index() < HttpMethod::COUNT);
        assert_eq!(
            custom.label(&method("TRACE")),
            HttpMethod::Other,
            "a full override"
        );
        assert_eq!(
            custom.label(&method("purge")),
            HttpMethod::Other,
            "case-sensitive"
        );
        assert!(KnownMethods::exactly(["BAD METHOD"]).is_err());
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
