//! W3C Trace Context and Baggage headers, parsed strictly and never echoed when malformed.
//!
//! [`TraceParent`] parses `traceparent` (version `00`, and later versions by the spec's
//! forward-compatibility rules), [`TraceState`] validates `tracestate`, and [`Baggage`] parses
//! `baggage` with the W3C size limits. Everything that is malformed, oversized or has an
//! all-zero ID is rejected with a typed [`ParseError`]: the caller starts a new root trace
//! instead, and the bad value never reaches a response, a log or a label.
//!
//! ```
//! use tower_observe::trace::w3c::TraceParent;
//!
//! let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
//! assert!(tp.sampled());
//! assert_eq!(tp.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
//! assert!(TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_err());
//! ```

use std::fmt;

use std::borrow::Cow;

use http::{HeaderMap, HeaderName};

use crate::hex;

/// `traceparent`
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate`
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// `baggage`
pub const BAGGAGE: HeaderName = HeaderName::from_static("baggage");

/// Longest `traceparent` accepted: version 00 is 55 characters; later versions may append
/// fields, but nothing legitimate comes close to this.
pub const MAX_TRACEPARENT_LEN: usize = 256;
/// Longest `tracestate` propagated: the length the specification asks every vendor to
/// propagate at least. Longer lists are shortened by whole entries.
pub const MAX_TRACESTATE_LEN: usize = 512;
/// Most `tracestate` list members (the spec's limit).
pub const MAX_TRACESTATE_MEMBERS: usize = 32;
/// Longest `baggage` header accepted (the spec's limit: 8192 bytes).
pub const MAX_BAGGAGE_LEN: usize = 8192;
/// Most `baggage` list members (the spec's limit).
pub const MAX_BAGGAGE_MEMBERS: usize = 180;

/// Why a header was rejected.
#[derive(Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// Longer than the limit for this header.
    TooLong,
    /// Not the shape the spec defines (fields, lengths, separators, characters).
    Malformed,
    /// Version `ff`, which the spec forbids.
    InvalidVersion,
    /// An all-zero trace ID or parent ID.
    ZeroId,
    /// More list members than the spec allows.
    TooManyMembers,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::TooLong => "header longer than the W3C limit",
            ParseError::Malformed => "header does not follow the W3C format",
            ParseError::InvalidVersion => "traceparent version ff is invalid",
            ParseError::ZeroId => "trace ID or parent ID is all zeros",
            ParseError::TooManyMembers => "more list members than the W3C limit",
        })
    }
}

impl std::error::Error for ParseError {}

debug_as_display!(ParseError);

/// A parsed `traceparent`: who the caller is in which trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The 16-byte trace ID (never all zeros).
    pub trace_id: [u8; 16],
    /// The caller's 8-byte span ID (never all zeros).
    pub parent_id: [u8; 8],
    /// Trace flags; bit 0 is "sampled".
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` header value.
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        if value.len() > MAX_TRACEPARENT_LEN {
            return Err(ParseError::TooLong);
        }
        let b = value.as_bytes();
        // version "-" trace-id "-" parent-id "-" flags = 2+1+32+1+16+1+2 = 55
        if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return Err(ParseError::Malformed);
        }
        let version = hex::byte(&b[0..2]).ok_or(ParseError::Malformed)?;
        if version == 0xff {
            return Err(ParseError::InvalidVersion);
        }
        // Version 00 is exactly 55 characters; a later version may only add "-…" fields.
        if (version == 0 && b.len() != 55) || (b.len() > 55 && b[55] != b'-') {
            return Err(ParseError::Malformed);
        }
        let mut trace_id = [0u8; 16];
        if !hex::decode_into(&b[3..35], &mut trace_id) {
            return Err(ParseError::Malformed);
        }
        let mut parent_id = [0u8; 8];
        if !hex::decode_into(&b[36..52], &mut parent_id) {
            return Err(ParseError::Malformed);
        }
        let flags = hex::byte(&b[53..55]).ok_or(ParseError::Malformed)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return Err(ParseError::ZeroId);
        }
        Ok(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The `traceparent` of a request. It is a single value: two field lines combine into a
    /// list, which is not a valid `traceparent`, so the request starts a new trace.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<TraceParent> {
        let mut lines = headers.get_all(TRACEPARENT).iter();
        let line = lines.next()?;
        if lines.next().is_some() {
            return None;
        }
        TraceParent::parse(line.to_str().ok()?).ok()
    }

    /// Whether the caller sampled this trace.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The trace ID as 32 lower-case hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex::to_string(&self.trace_id)
    }

    /// The parent span ID as 16 lower-case hex digits.
    pub fn parent_id_hex(&self) -> String {
        hex::to_string(&self.parent_id)
    }

    /// The header value for a child span `span_id` of the same trace (version 00).
    pub fn child_header(&self, span_id: [u8; 8]) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex::to_string(&self.trace_id),
            hex::to_string(&span_id),
            self.flags & 1
        )
    }
}

impl TraceParent {
    /// The header value, written without formatting machinery (one per outgoing call).
    pub(crate) fn header_bytes(&self) -> [u8; 55] {
        let mut out = [b'-'; 55];
        out[0] = b'0';
        out[1] = b'0';
        hex::encode_into(&self.trace_id, &mut out[3..35]);
        hex::encode_into(&self.parent_id, &mut out[36..52]);
        hex::encode_into(&[self.flags], &mut out[53..55]);
        out
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex::to_string(&self.trace_id),
            hex::to_string(&self.parent_id),
            self.flags
        )
    }
}

/// A validated `tracestate` list, ready to propagate.
///
/// Several `tracestate` field lines are one list, combined in order (RFC 9110 §5.3, as the
/// W3C specification requires); the limits apply to the combined list. Empty members and
/// optional whitespace are accepted and dropped. A list of more than
/// [`MAX_TRACESTATE_MEMBERS`] members, or with a malformed member, is invalid and discarded
/// whole. A valid list longer than [`MAX_TRACESTATE_LEN`] characters is shortened by whole
/// entries, as the specification says: entries over 128 characters first, then from the end.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TraceState(String);

impl TraceState {
    /// Validates a `tracestate` value (one field line, or several joined with `,`).
    ///
    /// ```
    /// use tower_observe::trace::w3c::TraceState;
    ///
    /// let state = TraceState::parse("rojo=00f067aa0ba902b7 , ,congo=t61rcWkgMzE").unwrap();
    /// assert_eq!(state.as_str(), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
    /// ```
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        let mut members: Vec<&str> = Vec::new();
        for member in value.split(',') {
            let member = member.trim_matches([' ', '\t']);
            if member.is_empty() {
                continue;
            }
            if members.len() == MAX_TRACESTATE_MEMBERS {
                return Err(ParseError::TooManyMembers);
            }
            let (key, val) = member.split_once('=').ok_or(ParseError::Malformed)?;
            if key.len() > 256 || val.len() > 256 {
                return Err(ParseError::TooLong);
            }
            if !valid_tracestate_key(key) || !valid_tracestate_value(val) {
                return Err(ParseError::Malformed);
            }
            members.push(member);
        }
        let length = |members: &[&str]| {
            members.iter().map(|m| m.len()).sum::<usize>() + members.len().saturating_sub(1)
        };
        while length(&members) > MAX_TRACESTATE_LEN {
            match members.iter().rposition(|m| m.len() > 128) {
                Some(long) => members.remove(long),
                None => members.pop().unwrap_or_default(),
            };
        }
        Ok(Self(members.join(",")))
    }

    /// The `tracestate` of a request: its field lines combined; `None` when there is none, or
    /// when the list is invalid or empty (an empty list is not propagated).
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<TraceState> {
        let combined = combined(headers, &TRACESTATE)?;
        TraceState::parse(&combined)
            .ok()
            .filter(|state| !state.is_empty())
    }

    /// The header value.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the list has no member.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The members, `(key, value)`, in order.
    pub fn members(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .split(',')
            .filter_map(|member| member.split_once('='))
    }
}

/// The field lines of a list-valued header combined in order into one value (RFC 9110 §5.3);
/// `None` when the header is absent or a line is not text.
fn combined<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<Cow<'a, str>> {
    let mut lines = headers.get_all(name).iter();
    let first = lines.next()?.to_str().ok()?;
    let mut value = Cow::Borrowed(first);
    for line in lines {
        let line = line.to_str().ok()?;
        let value = value.to_mut();
        value.push(',');
        value.push_str(line);
    }
    Some(value)
}

fn valid_tracestate_key(key: &str) -> bool {
    // simple-key = lcalpha 0*255(lcalpha / DIGIT / "_" / "-"/ "*" / "/")
    // multi-tenant-key = tenant-id "@" system-id
    let ok_char = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-*/".contains(&c);
    let part_ok = |p: &str, first_lower: bool| {
        let b = p.as_bytes();
        !b.is_empty()
            && b.len() <= 256
            && (!first_lower || b[0].is_ascii_lowercase())
            && (first_lower || b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && b.iter().all(|c| ok_char(*c))
    };
    match key.split_once('@') {
        None => part_ok(key, true),
        Some((tenant, system)) => {
            tenant.len() <= 241
                && system.len() <= 14
                && part_ok(tenant, false)
                && part_ok(system, true)
        }
    }
}

fn valid_tracestate_value(value: &str) -> bool {
    // value = 0*255(chr) nblk-chr ; chr = %x20 / nblk-chr ; nblk-chr = %x21-2B / %x2D-3C / %x3E-7E
    let b = value.as_bytes();
    let nblk = |c: u8| (0x21..=0x7e).contains(&c) && c != b',' && c != b'=';
    !b.is_empty()
        && b.len() <= 256
        && nblk(b[b.len() - 1])
        && b.iter().all(|&c| c == b' ' || nblk(c))
}

/// A parsed `baggage` header: percent-decoded `key=value` pairs (properties dropped).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Baggage {
    entries: Vec<(String, String)>,
}

impl Baggage {
    /// Parses a `baggage` header value within the W3C limits (8192 bytes, 180 members).
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        if value.len() > MAX_BAGGAGE_LEN {
            return Err(ParseError::TooLong);
        }
        let mut entries = Vec::new();
        for member in value.split(',') {
            let member = member.trim_matches([' ', '\t']);
            if member.is_empty() {
                continue;
            }
            if entries.len() == MAX_BAGGAGE_MEMBERS {
                return Err(ParseError::TooManyMembers);
            }
            // member = key OWS "=" OWS value *( OWS ";" OWS property )
            let pair = member.split(';').next().unwrap_or_default();
            let (key, val) = pair.split_once('=').ok_or(ParseError::Malformed)?;
            let key = key.trim_matches([' ', '\t']);
            let val = val.trim_matches([' ', '\t']);
            if key.is_empty() || !key.bytes().all(is_token_char) {
                return Err(ParseError::Malformed);
            }
            entries.push((key.to_owned(), percent_decode(val)?));
        }
        Ok(Self { entries })
    }

    /// The `baggage` of a request, its field lines combined (the limits apply to the
    /// combined list), with the combined header value to propagate; `None` when absent or
    /// invalid.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<(Baggage, String)> {
        let combined = combined(headers, &BAGGAGE)?;
        let baggage = Baggage::parse(&combined).ok()?;
        Some((baggage, combined.into_owned()))
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All entries, in header order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// RFC 7230 `tchar`.
fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn percent_decode(value: &str) -> Result<String, ParseError> {
    let b = value.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                // Percent-encoding may use either case; trace IDs may not (see `crate::hex`).
                let byte = b
                    .get(i + 1..i + 3)
                    .map(|p| p.to_ascii_lowercase())
                    .and_then(|p| hex::byte(&p))
                    .ok_or(ParseError::Malformed)?;
                out.push(byte);
                i += 3;
            }
            // baggage-octet: printable ASCII except space, `"`, `,`, `;` and `\`.
            c if (0x21..=0x7e).contains(&c) && !b"\",;\\".contains(&c) => {
                out.push(c);
                i += 1;
            }
            _ => return Err(ParseError::Malformed),
        }
    }
    String::from_utf8(out).map_err(|_| ParseError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn header_bytes_match_display() {
        let tp = TraceParent {
            trace_id: [0xab; 16],
            parent_id: [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef],
            flags: 1,
        };
        assert_eq!(tp.header_bytes().as_slice(), tp.to_string().as_bytes());
    }

    #[test]
    fn parses_and_formats_the_spec_example() {
        let tp = TraceParent::parse(GOOD).unwrap();
        assert_eq!(tp.to_string(), GOOD);
        assert_eq!(tp.parent_id_hex(), "00f067aa0ba902b7");
        assert_eq!(
            tp.child_header([1, 2, 3, 4, 5, 6, 7, 8]),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01"
        );
        let unsampled = TraceParent::parse(&GOOD.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled());
    }

    #[test]
    fn future_versions_follow_the_forward_compatibility_rules() {
        let v1 = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
        assert!(TraceParent::parse(v1).is_ok());
        let v1_bad = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01extra";
        assert_eq!(TraceParent::parse(v1_bad), Err(ParseError::Malformed));
    }

    #[test]
    fn rejects_every_malformed_traceparent_without_panicking() {
        let long = format!("{GOOD}-{}", "a".repeat(300));
        let bad: &[(&str, ParseError)] = &[
            ("", ParseError::Malformed),
            ("00", ParseError::Malformed),
            ("garbage", ParseError::Malformed),
            (&GOOD[..54], ParseError::Malformed),
            (&format!("{GOOD}0"), ParseError::Malformed),
            (&format!("{GOOD}-"), ParseError::Malformed),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ParseError::InvalidVersion,
            ),
            (
                "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ParseError::Malformed,
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                ParseError::Malformed,
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                ParseError::ZeroId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                ParseError::ZeroId,
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ParseError::Malformed,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
                ParseError::Malformed,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
                ParseError::Malformed,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
                ParseError::Malformed,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
                ParseError::Malformed,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
                ParseError::Malformed,
            ),
            (
                " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ParseError::Malformed,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nx: y",
                ParseError::Malformed,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-é1",
                ParseError::Malformed,
            ),
            (
                "é0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ParseError::Malformed,
            ),
            (&long, ParseError::TooLong),
            (
                "----------------------------------------------------------",
                ParseError::Malformed,
            ),
        ];
        assert!(bad.len() >= 20);
        for (input, want) in bad {
            assert_eq!(TraceParent::parse(input), Err(*want), "{input:?}");
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..20_000 {
            let len = rng.usize(0..80);
            let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            let text = String::from_utf8_lossy(&bytes);
            let _ = TraceParent::parse(&text);
            let _ = TraceState::parse(&text);
            let _ = Baggage::parse(&text);
            // Mutations of a valid header, the likelier attack.
            let mut good = GOOD.as_bytes().to_vec();
            let at = rng.usize(..good.len());
            good[at] = rng.u8(..);
            let _ = TraceParent::parse(&String::from_utf8_lossy(&good));
        }
    }

    #[test]
    fn tracestate_limits_and_syntax() {
        assert!(TraceState::parse("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE").is_ok());
        assert!(TraceState::parse("tenant@vendor=x, other=y z").is_ok());
        assert!(TraceState::parse("").is_ok());
        assert_eq!(TraceState::parse("Upper=x"), Err(ParseError::Malformed));
        assert_eq!(TraceState::parse("novalue"), Err(ParseError::Malformed));
        assert_eq!(TraceState::parse("k=a,b"), Err(ParseError::Malformed));
        assert_eq!(
            TraceState::parse("k=tab\tinside"),
            Err(ParseError::Malformed)
        );
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert_eq!(
            TraceState::parse(&many.join(",")),
            Err(ParseError::TooManyMembers)
        );
        assert_eq!(
            TraceState::parse(&format!("k={}", "v".repeat(600))),
            Err(ParseError::TooLong)
        );
    }

    #[test]
    fn long_tracestate_lists_lose_whole_entries_long_ones_first() {
        let short: Vec<String> = (0..20)
            .map(|i| format!("k{i:02}={}", "v".repeat(20)))
            .collect();
        let long = format!("big={}", "x".repeat(200));
        // 20 × 24 + 19 commas = 499 characters, plus one 204-character entry in the middle.
        let mut list = short.clone();
        list.insert(10, long);
        let state = TraceState::parse(&list.join(",")).unwrap();
        assert_eq!(state.as_str(), short.join(","), "the long entry goes first");
        // Without long entries, entries go from the end.
        let many: Vec<String> = (0..30)
            .map(|i| format!("k{i:02}={}", "v".repeat(20)))
            .collect();
        let state = TraceState::parse(&many.join(",")).unwrap();
        assert!(state.as_str().len() <= MAX_TRACESTATE_LEN);
        assert_eq!(state.as_str(), many[..20].join(","));
        assert!(state.members().all(|(k, _)| k.starts_with('k')));
    }

    #[test]
    fn baggage_parsing_and_limits() {
        let b = Baggage::parse("userId=alice, serverNode = DF%2028 ;prop=1,isProduction=false")
            .unwrap();
        assert_eq!(b.get("userId"), Some("alice"));
        assert_eq!(b.get("serverNode"), Some("DF 28"));
        assert_eq!(b.get("isProduction"), Some("false"));
        assert_eq!(b.iter().count(), 3);
        assert_eq!(Baggage::parse("k=%zz"), Err(ParseError::Malformed));
        assert_eq!(Baggage::parse("bad key=v"), Err(ParseError::Malformed));
        assert_eq!(Baggage::parse("k=\"quoted\""), Err(ParseError::Malformed));
        let many: Vec<String> = (0..181).map(|i| format!("k{i}=v")).collect();
        assert_eq!(
            Baggage::parse(&many.join(",")),
            Err(ParseError::TooManyMembers)
        );
        assert_eq!(
            Baggage::parse(&format!("k={}", "v".repeat(9000))),
            Err(ParseError::TooLong)
        );
        assert_eq!(Baggage::parse("k=%C3%A9").unwrap().get("k"), Some("é"));
        assert_eq!(
            Baggage::parse("k=%FF"),
            Err(ParseError::Malformed),
            "not UTF-8"
        );
    }
}
