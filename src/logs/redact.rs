//! Which fields and query parameters never reach a log line.

use std::borrow::Cow;

/// What replaces a redacted value.
pub const REDACTED: &str = "[REDACTED]";

const SENSITIVE_FIELDS: [&str; 12] = [
    "authorization",
    "proxy-authorization",
    "proxy_authorization",
    "cookie",
    "set-cookie",
    "set_cookie",
    "x-api-key",
    "x_api_key",
    "password",
    "secret",
    "token",
    "api_key",
];

const SENSITIVE_PARAMS: [&str; 14] = [
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "key",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "signature",
    "sig",
    "auth",
];

/// The fields whose values are URLs or queries, where sensitive parameters are redacted.
const URL_FIELDS: [&str; 4] = ["url.query", "url.full", "url.original", "http.request.uri"];

/// Which fields and query parameters are redacted.
#[derive(Debug, Clone)]
pub(crate) struct Redaction {
    fields: Vec<String>,
    params: Vec<String>,
    /// Bit `n` is set when a sensitive field name is `n` bytes long (63 for any longer), so
    /// that most fields are cleared by one test instead of a comparison with every name.
    field_lengths: u64,
}

impl Default for Redaction {
    fn default() -> Self {
        let mut redaction = Self {
            fields: Vec::new(),
            params: SENSITIVE_PARAMS.iter().map(|s| (*s).to_owned()).collect(),
            field_lengths: 0,
        };
        for field in SENSITIVE_FIELDS {
            redaction.add_field(field.to_owned());
        }
        redaction
    }
}

fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

impl Redaction {
    pub(crate) fn add_field(&mut self, name: String) {
        self.field_lengths |= length_bit(name.len());
        self.fields.push(name);
    }

    pub(crate) fn add_param(&mut self, name: String) {
        self.params.push(name);
    }

    /// Whether the field `name` (or its last dotted segment) is sensitive.
    pub(crate) fn is_sensitive_field(&self, name: &str) -> bool {
        let last = match name.bytes().rposition(|b| b == b'.') {
            Some(dot) => &name[dot + 1..],
            None => name,
        };
        if self.field_lengths & (length_bit(name.len()) | length_bit(last.len())) == 0 {
            return false;
        }
        self.fields
            .iter()
            .any(|f| f.eq_ignore_ascii_case(last) || f.eq_ignore_ascii_case(name))
    }

    /// Whether the field `name` holds a URL or a query.
    pub(crate) fn is_url_field(name: &str) -> bool {
        URL_FIELDS.contains(&name)
    }

    fn is_sensitive_param(&self, name: &str) -> bool {
        self.params.iter().any(|p| p.eq_ignore_ascii_case(name))
    }

    /// `value` with the values of sensitive query parameters replaced; borrowed when none is.
    pub(crate) fn redact_query<'a>(&self, value: &'a str) -> Cow<'a, str> {
        let (head, rest) = match value.split_once('?') {
            Some((head, rest)) => (Some(head), rest),
            None => (None, value),
        };
        let (query, fragment) = match rest.split_once('#') {
            Some((q, f)) => (q, Some(f)),
            None => (rest, None),
        };
        let sensitive = |pair: &str| {
            pair.split_once('=')
                .is_some_and(|(k, _)| self.is_sensitive_param(k))
        };
        if !query.split('&').any(sensitive) {
            return Cow::Borrowed(value);
        }
        let mut out = String::with_capacity(value.len());
        if let Some(head) = head {
            out.push_str(head);
            out.push('?');
        }
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((k, _)) if self.is_sensitive_param(k) => {
                    out.push_str(k);
                    out.push('=');
                    out.push_str(REDACTED);
                }
                _ => out.push_str(pair),
            }
        }
        if let Some(fragment) = fragment {
            out.push('#');
            out.push_str(fragment);
        }
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_matched_by_name_or_last_segment_in_any_case() {
        let mut r = Redaction::default();
        assert!(r.is_sensitive_field("http.request.header.authorization"));
        assert!(r.is_sensitive_field("Cookie"));
        assert!(r.is_sensitive_field("x-api-key"));
        assert!(!r.is_sensitive_field("span.id"));
        assert!(!r.is_sensitive_field("tokens"));
        assert!(!r.is_sensitive_field("card_number"));
        r.add_field("card_number".into());
        assert!(r.is_sensitive_field("payment.CARD_NUMBER"));
        // Past the length mask's last bit.
        let long = "a".repeat(80);
        assert!(!r.is_sensitive_field(&long));
        r.add_field(long.clone());
        assert!(r.is_sensitive_field(&long));
        assert!(!r.is_sensitive_field(&"b".repeat(80)));
    }

    #[test]
    fn only_sensitive_parameters_are_replaced() {
        let r = Redaction::default();
        assert!(matches!(
            r.redact_query("https://a.test/p?page=2&sort=asc#x"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            r.redact_query("https://a.test/p?page=2&Access_Token=abc&flag#top"),
            format!("https://a.test/p?page=2&Access_Token={REDACTED}&flag#top")
        );
        assert_eq!(
            r.redact_query("key=1&key=2"),
            format!("key={REDACTED}&key={REDACTED}")
        );
    }
}
