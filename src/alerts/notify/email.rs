//! Email over SMTP, with `lettre`'s blocking transport.

use std::fmt;
use std::io;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls as LettreTls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};

use super::format::{summary, title, value_text};
use super::http::{io_error, root_setters, PrivateRoots};
use super::{settings_setters, Deliver, DeliverContext, SendError, Settings};
use crate::alerts::{AlertEvent, EventStatus};
use crate::time_fmt::rfc3339;

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Tls {
    /// Connect in plain text, then upgrade with `STARTTLS`, which the server must offer
    /// (nothing is sent in plain text otherwise). Default port 587. The default.
    #[default]
    StartTls,
    /// TLS from the first byte ("implicit TLS", SMTPS). Default port 465.
    Implicit,
    /// No encryption: for a relay on the same host or network only. Default port 25.
    None,
}

/// Sends each notification as a plain-text email over SMTP.
///
/// The subject reads `[FIRING] HighErrorRate (critical)` or `[RESOLVED] HighErrorRate
/// (critical)`; the body has the summary, description, value, times, labels, links and the
/// trace IDs of recent failed requests. Certificates are checked against the Mozilla roots
/// (`webpki-roots`), plus any given with [`root_certificate_pem`](Self::root_certificate_pem),
/// with the application's rustls crypto provider (see [the module](super)).
/// The password is a secret: `Debug` output and errors never show it.
///
/// ```
/// use tower_observe::alerts::notify::{Channel, Email, Tls};
///
/// let channel: Channel = Email::new("smtp.example.com")
///     .port(587)
///     .tls(Tls::StartTls)
///     .credentials("alerts", "pa55w0rd")
///     .from("Alerts <alerts@example.com>")
///     .to("oncall@example.com")
///     .to("team@example.com")
///     .into();
/// assert!(!format!("{channel:?}").contains("pa55w0rd"));
/// ```
#[derive(Clone)]
pub struct Email {
    pub(crate) settings: Settings,
    host: String,
    port: Option<u16>,
    tls: Tls,
    from: Option<String>,
    to: Vec<String>,
    credentials: Option<(String, String)>,
    roots: PrivateRoots,
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Email")
            .field("settings", &self.settings)
            .field("host", &self.host)
            .field("port", &self.effective_port())
            .field("tls", &self.tls)
            .field("from", &self.from)
            .field("to", &self.to)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .field("extra_roots", &self.roots)
            .finish()
    }
}

impl Email {
    /// A channel sending through the SMTP server `smtp_host` (STARTTLS on port 587 unless
    /// told otherwise). Give it a sender with [`from`](Self::from) and recipients with
    /// [`to`](Self::to).
    pub fn new(smtp_host: impl Into<String>) -> Self {
        Email {
            settings: Settings::default(),
            host: smtp_host.into(),
            port: None,
            tls: Tls::default(),
            from: None,
            to: Vec::new(),
            credentials: None,
            roots: PrivateRoots::default(),
        }
    }

    /// The server's port (default: 587 with [`Tls::StartTls`], 465 with [`Tls::Implicit`],
    /// 25 with [`Tls::None`]).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// How the connection is secured (default [`Tls::StartTls`]).
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = tls;
        self
    }

    /// The sender, e.g. `alerts@example.com` or `Alerts <alerts@example.com>`.
    pub fn from(mut self, mailbox: impl Into<String>) -> Self {
        self.from = Some(mailbox.into());
        self
    }

    /// Adds a recipient (call it once per recipient).
    pub fn to(mut self, mailbox: impl Into<String>) -> Self {
        self.to.push(mailbox.into());
        self
    }

    /// Logs in with `user` and `password` (the password is kept secret).
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    root_setters!("for the server's TLS, besides Mozilla's roots (`STARTTLS` or implicit TLS),");

    settings_setters!();

    /// The field that cannot be used, and why: the SMTP host (a name or address, not a
    /// URL), the port, the sender and every recipient (each must parse as a mailbox), the
    /// credentials and the extra root certificates.
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        let host = self.host.trim();
        if host.is_empty() {
            return Err(("smtp_host", "is empty".to_owned()));
        }
        if host.contains("://") || host.contains('/') {
            return Err((
                "smtp_host",
                format!(
                    "{host:?} is a URL; give the host name alone (and the port with Email::port)"
                ),
            ));
        }
        if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(("smtp_host", format!("{host:?} contains whitespace")));
        }
        if self.port == Some(0) {
            return Err(("port", "0 is not a port".to_owned()));
        }
        match self.from.as_deref() {
            None => return Err(("from", "no sender: call Email::from".to_owned())),
            Some(from) => {
                if let Err(e) = from.parse::<Mailbox>() {
                    return Err(("from", format!("{from:?} is not a mailbox: {e}")));
                }
            }
        }
        if self.to.is_empty() {
            return Err(("to", "no recipients: call Email::to".to_owned()));
        }
        for to in &self.to {
            if let Err(e) = to.parse::<Mailbox>() {
                return Err(("to", format!("{to:?} is not a mailbox: {e}")));
            }
        }
        if let Some((user, password)) = &self.credentials {
            super::http::check_token(user).map_err(|e| ("credentials.user", e))?;
            if password.is_empty() || password.chars().any(char::is_control) {
                return Err((
                    "credentials.password",
                    "is empty or contains a control character".to_owned(),
                ));
            }
        }
        self.roots.load()?;
        if self.tls != Tls::None && crate::tls::crypto_provider().is_none() {
            return Err(("tls", crate::tls::NO_PROVIDER.to_owned()));
        }
        Ok(())
    }

    fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            Tls::StartTls => 587,
            Tls::Implicit => 465,
            Tls::None => 25,
        })
    }

    pub(crate) fn into_deliver(self, _ctx: &DeliverContext<'_>) -> EmailDeliver {
        let shown = format!("smtp://{}:{}", self.host, self.effective_port());
        EmailDeliver {
            shown,
            config: self,
            transport: None,
        }
    }
}

pub(crate) struct EmailDeliver {
    config: Email,
    shown: String,
    transport: Option<SmtpTransport>,
}

impl EmailDeliver {
    fn transport(&mut self) -> Result<&SmtpTransport, SendError> {
        if self.transport.is_none() {
            let config = &self.config;
            let tls = match config.tls {
                Tls::None => LettreTls::None,
                Tls::StartTls => LettreTls::Required(self.tls_parameters()?),
                Tls::Implicit => LettreTls::Wrapper(self.tls_parameters()?),
            };
            let mut builder = SmtpTransport::builder_dangerous(config.host.as_str())
                .port(config.effective_port())
                .timeout(Some(config.settings.timeout))
                .tls(tls);
            if let Some((user, password)) = &config.credentials {
                builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
            }
            self.transport = Some(builder.build());
        }
        self.transport
            .as_ref()
            .ok_or_else(|| SendError::permanent("no SMTP transport"))
    }

    fn tls_parameters(&self) -> Result<TlsParameters, SendError> {
        // lettre takes the process default provider, else the one its features select (ours
        // forward `tls-ring` / `tls-aws-lc-rs` to it), and panics with neither: checked first.
        if crate::tls::crypto_provider().is_none() {
            return Err(SendError::permanent(crate::tls::NO_PROVIDER));
        }
        let roots = self
            .config
            .roots
            .load()
            .map_err(|(field, reason)| SendError::permanent(format!("{field}: {reason}")))?;
        let mut params = TlsParameters::builder(self.config.host.clone());
        for der in roots {
            let cert = Certificate::from_der(der)
                .map_err(|_| SendError::permanent("invalid root certificate"))?;
            params = params.add_root_certificate(cert);
        }
        params
            .build_rustls()
            .map_err(|_| SendError::permanent(format!("TLS setup failed ({})", self.shown)))
    }

    fn message(&self, event: &AlertEvent) -> Result<Message, SendError> {
        let config = &self.config;
        let from: Mailbox = config
            .from
            .as_deref()
            .ok_or_else(|| SendError::permanent("no sender: set Email::from"))?
            .parse()
            .map_err(|_| SendError::permanent("invalid sender address"))?;
        if config.to.is_empty() {
            return Err(SendError::permanent("no recipients: call Email::to"));
        }
        let mut builder = Message::builder()
            .from(from)
            .subject(title(event))
            .header(ContentType::TEXT_PLAIN);
        for to in &config.to {
            let to: Mailbox = to
                .parse()
                .map_err(|_| SendError::permanent("invalid recipient address"))?;
            builder = builder.to(to);
        }
        builder
            .body(body(event))
            .map_err(|_| SendError::permanent("could not build the email"))
    }
}

impl Deliver for EmailDeliver {
    fn send(&mut self, event: &AlertEvent) -> Result<(), SendError> {
        let message = self.message(event)?;
        let shown = self.shown.clone();
        self.transport()?
            .send(&message)
            .map(|_| ())
            .map_err(|e| smtp_error(&e, &shown))
    }
}

/// Describes an SMTP failure by its kind, its reply code and the server's host and port.
fn smtp_error(error: &lettre::transport::smtp::Error, shown: &str) -> SendError {
    if let Some(code) = error.status() {
        let message = format!("SMTP {code} from {shown}");
        return if error.is_permanent() {
            SendError::permanent(message)
        } else {
            SendError::transient(message)
        };
    }
    if error.is_timeout() {
        return SendError::transient(format!("timed out ({shown})"));
    }
    if error.is_tls() {
        return SendError::transient(format!("TLS error ({shown})"));
    }
    if error.is_client() {
        return SendError::permanent(format!(
            "SMTP client error, e.g. STARTTLS or login not offered ({shown})"
        ));
    }
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return io_error(io, shown);
        }
        source = e.source();
    }
    SendError::transient(format!("SMTP error ({shown})"))
}

/// The plain-text body.
pub(crate) fn body(event: &AlertEvent) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let status = match event.status {
        EventStatus::Firing => "FIRING",
        EventStatus::Resolved => "RESOLVED",
    };
    let _ = writeln!(
        out,
        "{} is {} ({}).\n",
        event.rule,
        status,
        event.severity.as_str()
    );
    let _ = writeln!(out, "Summary: {}", summary(event));
    if let Some(description) = event
        .annotations
        .get("description")
        .filter(|d| !d.is_empty())
    {
        let _ = writeln!(out, "Description: {description}");
    }
    let _ = writeln!(out, "Value: {}", value_text(event));
    let _ = writeln!(out, "Started: {}", rfc3339(event.starts_at));
    if let Some(ends_at) = event.ends_at {
        let _ = writeln!(out, "Ended: {}", rfc3339(ends_at));
    }
    let _ = writeln!(out, "\nLabels:");
    for (name, value) in &event.labels {
        let _ = writeln!(out, "  {name} = {value}");
    }
    let others: Vec<_> = event
        .annotations
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "summary" | "description"))
        .collect();
    if !others.is_empty() {
        let _ = writeln!(out, "\nAnnotations:");
        for (name, value) in others {
            let _ = writeln!(out, "  {name} = {value}");
        }
    }
    if !event.links.is_empty() || !event.generator_url.is_empty() {
        let _ = writeln!(out, "\nLinks:");
        for (title, url) in &event.links {
            let _ = writeln!(out, "  {title}: {url}");
        }
        if !event.generator_url.is_empty()
            && !event.links.iter().any(|(_, u)| *u == event.generator_url)
        {
            let _ = writeln!(out, "  Source: {}", event.generator_url);
        }
    }
    if !event.failed_requests.is_empty() {
        let _ = writeln!(out, "\nRecent failed requests (trace IDs):");
        for request in &event.failed_requests {
            match &request.view_url {
                Some(url) => {
                    let _ = writeln!(out, "  {}  {url}", request.trace_id);
                }
                None => {
                    let _ = writeln!(out, "  {}", request.trace_id);
                }
            }
        }
    }
    let _ = writeln!(out, "\nFingerprint: {}", event.fingerprint);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_email_debug_is_redacted() {
        let email = Email::new("smtp.example.com")
            .credentials("user", "hunter2-secret")
            .from("a@example.com")
            .to("b@example.com");
        let shown = format!("{email:?}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
        assert!(shown.contains("port: 587"), "{shown}");
        assert_eq!(Email::new("h").tls(Tls::Implicit).effective_port(), 465);
    }

    #[test]
    fn notify_email_needs_sender_and_recipients() {
        let deliver = Email::new("smtp.example.com").into_deliver(&DeliverContext {
            name: "email",
            external_url: None,
        });
        let event = crate::alerts::notify::tests_support::event(EventStatus::Firing);
        let e = deliver.message(&event).unwrap_err();
        assert!(!e.retryable && e.message.contains("sender"));
    }
}
