//! The HTTP side of the channels: one blocking `ureq` agent per channel (rustls through
//! `crate::tls`: the application's crypto provider, Mozilla's roots or the channel's private
//! ones), JSON posts, and errors described without secrets.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::format::redacted_target;
use super::{SendError, Settings};

/// Where a channel posts: the URL (a secret, for Slack and most webhooks) and what of it may
/// be shown.
#[derive(Clone)]
pub(crate) struct Target {
    url: String,
    shown: String,
}

impl Target {
    pub(crate) fn new(url: String) -> Self {
        let shown = redacted_target(&url);
        Target { url, shown }
    }

    /// `scheme://host:port`.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// The full URL (secret).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Whether the URL can be posted to: an `http://` or `https://` URL with a host. The
    /// reason never quotes the URL (it may hold a secret).
    pub(crate) fn check(&self) -> Result<(), String> {
        check_url(&self.url)
    }
}

/// An `http://` or `https://` URL with a host; the reason never quotes the URL.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    if !url.trim().is_empty() && !url.contains("://") && !url.contains(char::is_whitespace) {
        return Err("has no scheme; expected http://host[:port]/path or https://…".to_owned());
    }
    let Ok(uri) = url.parse::<http::Uri>() else {
        return Err(if url.trim().is_empty() {
            "is empty; expected an http:// or https:// URL".to_owned()
        } else {
            "is not a URL; expected http://host[:port]/path or https://…".to_owned()
        });
    };
    match uri.scheme_str() {
        None => {
            return Err("has no scheme; expected http://host[:port]/path or https://…".to_owned())
        }
        Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {}
        Some(other) => {
            return Err(format!(
                "has the scheme `{other}`; only http:// and https:// are supported"
            ))
        }
    }
    match uri.host() {
        Some(host) if !host.is_empty() => Ok(()),
        _ => Err("has no host; expected http://host[:port]/path".to_owned()),
    }
}

/// A token, key or password: not empty, and no whitespace or control characters (a pasted
/// newline or space is the usual mistake). The reason never quotes the value.
pub(crate) fn check_token(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("is empty".to_owned());
    }
    if let Some(c) = value.chars().find(|c| c.is_whitespace() || c.is_control()) {
        let what = if c.is_control() && !c.is_whitespace() {
            "a control character"
        } else {
            "whitespace"
        };
        return Err(format!(
            "contains {what} (at {}); tokens are one word",
            value.find(c).unwrap_or_default()
        ));
    }
    Ok(())
}

/// Extra headers: valid names, values free of control characters (their values are never
/// quoted).
pub(crate) fn check_headers(headers: &[SecretHeader]) -> Result<(), String> {
    for header in headers {
        if http::HeaderName::from_bytes(header.name.as_bytes()).is_err() {
            return Err(format!("{:?} is not a valid header name", header.name));
        }
        if http::HeaderValue::from_str(&header.value).is_err() {
            return Err(format!(
                "the value of {:?} contains a control or non-visible character",
                header.name
            ));
        }
    }
    Ok(())
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}/<redacted>\"", self.shown)
    }
}

/// An extra request header whose value is never shown.
#[derive(Clone)]
pub(crate) struct SecretHeader {
    pub(crate) name: String,
    pub(crate) value: String,
}

impl fmt::Debug for SecretHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}: <redacted>\"", self.name)
    }
}

/// The `header` setter of the channels that send extra headers (their `headers` field), with
/// each channel's own doc comment.
macro_rules! header_setter {
    ($(#[$doc:meta])*) => {
        $(#[$doc])*
        pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
            self.headers.push($crate::alerts::notify::http::SecretHeader {
                name: name.into(),
                value: value.into(),
            });
            self
        }
    };
}
pub(crate) use header_setter;

/// The private root certificates a channel trusts, as given: PEM texts and PEM files (read
/// when the channel is checked, and again when its sender is made). `Debug` shows how many.
#[derive(Clone, Default)]
pub(crate) struct PrivateRoots(Vec<RootSource>);

#[derive(Clone)]
enum RootSource {
    Pem(Vec<u8>),
    File(PathBuf),
}

impl PrivateRoots {
    pub(crate) fn push_pem(&mut self, pem: Vec<u8>) {
        self.0.push(RootSource::Pem(pem));
    }

    pub(crate) fn push_file(&mut self, path: PathBuf) {
        self.0.push(RootSource::File(path));
    }

    /// Their certificates as DER (none: Mozilla's roots are used); otherwise the setter at
    /// fault and why (never the PEM text).
    pub(crate) fn load(&self) -> Result<Vec<Vec<u8>>, (&'static str, String)> {
        let mut all = Vec::new();
        for source in &self.0 {
            let certificates = match source {
                RootSource::Pem(pem) => {
                    crate::tls::pem_certificates(pem).map_err(|e| ("root_certificate_pem", e))?
                }
                RootSource::File(path) => {
                    let pem = std::fs::read(path).map_err(|e| {
                        (
                            "root_certificate_pem_file",
                            format!("cannot read {}: {e}", path.display()),
                        )
                    })?;
                    crate::tls::pem_certificates(&pem).map_err(|e| {
                        (
                            "root_certificate_pem_file",
                            format!("{}: {e}", path.display()),
                        )
                    })?
                }
            };
            all.extend(certificates);
        }
        Ok(all)
    }
}

impl fmt::Debug for PrivateRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.len())
    }
}

/// The `root_certificate_pem` and `root_certificate_pem_file` setters (their `roots` field),
/// with the text `$instead` saying what the roots replace or join.
macro_rules! root_setters {
    ($instead:literal) => {
        /// Trusts this root certificate (PEM: one certificate or a bundle)
        #[doc = $instead]
        /// e.g. a company CA or a test server's own. Call it once per root. A text that holds
        /// no usable certificate makes building the alerts fail, naming the channel.
        pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
            self.roots.push_pem(pem.into());
            self
        }

        /// [`root_certificate_pem`](Self::root_certificate_pem) from a file, read when the
        /// alerts are built (an unreadable file or one without a certificate makes building
        /// them fail, naming the channel).
        pub fn root_certificate_pem_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
            self.roots.push_file(path.into());
            self
        }
    };
}
pub(crate) use root_setters;

/// The TLS side of a channel's settings: its private roots are usable, and an `https://`
/// target has a rustls crypto provider to connect with.
pub(crate) fn check_tls(
    target: &Target,
    roots: &PrivateRoots,
) -> Result<(), (&'static str, String)> {
    roots.load()?;
    if crate::tls::is_https(target.url()) && crate::tls::crypto_provider().is_none() {
        return Err(("tls", crate::tls::NO_PROVIDER.to_owned()));
    }
    Ok(())
}

/// A blocking HTTP client with the channel's timeouts, following no redirects; for an
/// `https://` target, with the crypto provider and roots of `crate::tls`. What makes this
/// fail (a bad root, no provider) is caught by [`check_tls`] when the alerts are built; a
/// channel given straight to a `Notifier` fails each send with it instead.
pub(crate) fn agent(
    settings: &Settings,
    target: &Target,
    roots: &PrivateRoots,
) -> Result<ureq::Agent, SendError> {
    let mut config = ureq::Agent::config_builder()
        .timeout_global(Some(settings.timeout))
        .timeout_connect(Some(settings.connect_timeout.min(settings.timeout)))
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .user_agent(concat!("tower-observe/", env!("CARGO_PKG_VERSION")));
    let roots = roots
        .load()
        .map_err(|(field, reason)| SendError::permanent(format!("{field}: {reason}")))?;
    // A plain `http://` target needs no provider (no redirects are followed).
    if crate::tls::is_https(target.url()) {
        let provider = crate::tls::crypto_provider()
            .ok_or_else(|| SendError::permanent(crate::tls::NO_PROVIDER))?;
        config = config.tls_config(crate::tls::ureq_config(provider, &roots));
    }
    Ok(ureq::Agent::new_with_config(config.build()))
}

/// POSTs a JSON body; success is any 2xx status.
pub(crate) fn post_json(
    agent: &Result<ureq::Agent, SendError>,
    target: &Target,
    headers: &[SecretHeader],
    body: &[u8],
) -> Result<(), SendError> {
    let agent = agent.as_ref().map_err(Clone::clone)?;
    let mut request = agent
        .post(target.url())
        .header("content-type", "application/json");
    for header in headers {
        request = request.header(header.name.as_str(), header.value.as_str());
    }
    let mut response = request
        .send(body)
        .map_err(|e| request_error(&e, target.shown()))?;
    let status = response.status().as_u16();
    // Read (a bounded amount of) the body so the connection can be reused.
    let _ = response
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_vec();
    status_result(status, target.shown())
}

/// `Ok` for 2xx; otherwise an error retried for 408, 429 and 5xx.
pub(crate) fn status_result(status: u16, shown: &str) -> Result<(), SendError> {
    match status {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err(SendError::transient(format!("HTTP {status} from {shown}"))),
        _ => Err(SendError::permanent(format!("HTTP {status} from {shown}"))),
    }
}

/// Describes a failed request by its kind and the redacted target — never with the error's
/// own text, which may quote the URL.
pub(crate) fn request_error(error: &ureq::Error, shown: &str) -> SendError {
    use ureq::Error as E;
    match error {
        E::StatusCode(status) => status_result(*status, shown)
            .err()
            .unwrap_or_else(|| SendError::permanent(format!("HTTP {status} from {shown}"))),
        E::Timeout(which) => SendError::transient(format!("{which} timeout ({shown})")),
        E::Io(io) => io_error(io, shown),
        E::HostNotFound => SendError::transient(format!("host not found ({shown})")),
        E::ConnectionFailed => SendError::transient(format!("connection failed ({shown})")),
        E::Tls(what) => SendError::transient(format!("TLS error: {what} ({shown})")),
        E::BadUri(_) | E::Http(_) => {
            SendError::permanent(format!("invalid URL or header ({shown})"))
        }
        E::Protocol(_) => SendError::transient(format!("HTTP protocol error ({shown})")),
        E::RedirectFailed | E::TooManyRedirects => {
            SendError::permanent(format!("redirected ({shown})"))
        }
        E::Rustls(_) | E::Pem(_) => SendError::transient(format!("TLS error ({shown})")),
        E::TlsRequired | E::RequireHttpsOnly(_) => {
            SendError::permanent(format!("HTTPS required ({shown})"))
        }
        _ => SendError::transient(format!("request failed ({shown})")),
    }
}

/// Describes an I/O error by its kind.
pub(crate) fn io_error(error: &io::Error, shown: &str) -> SendError {
    use io::ErrorKind as K;
    let what = match error.kind() {
        K::ConnectionRefused => "connection refused",
        K::ConnectionReset => "connection reset",
        K::ConnectionAborted => "connection aborted",
        K::TimedOut | K::WouldBlock => "timed out",
        K::UnexpectedEof => "connection closed early",
        K::BrokenPipe => "connection closed (broken pipe)",
        K::AddrNotAvailable | K::NotConnected => "address not available",
        K::PermissionDenied => "permission denied",
        K::InvalidData => "invalid data (TLS?)",
        _ => "I/O error",
    };
    SendError::transient(format!("{what} ({shown})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_http_errors_are_redacted() {
        let target = Target::new("https://hooks.slack.com/services/T0/B0/secret".to_owned());
        assert!(!format!("{target:?}").contains("secret"));
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "secret");
        let e = request_error(&ureq::Error::Io(refused), target.shown());
        assert_eq!(
            e.message,
            "connection refused (https://hooks.slack.com:443)"
        );
        assert!(e.retryable);
        let e = request_error(
            &ureq::Error::BadUri("https://x/secret".into()),
            target.shown(),
        );
        assert!(!e.message.contains("secret") && !e.retryable);
        let e = status_result(500, target.shown()).unwrap_err();
        assert_eq!(e.message, "HTTP 500 from https://hooks.slack.com:443");
        assert!(e.retryable);
        assert!(!status_result(404, "x").unwrap_err().retryable);
        assert!(status_result(429, "x").unwrap_err().retryable);
        let header = SecretHeader {
            name: "Authorization".into(),
            value: "Bearer secret".into(),
        };
        assert_eq!(format!("{header:?}"), "\"Authorization: <redacted>\"");
    }
}
