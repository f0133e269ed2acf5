//! Lower-case hexadecimal: the one encoder and decoder for trace and span IDs, wherever they
//! are written (W3C headers, span fields, log lines, exemplars) or read (W3C headers).

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Writes `2 × bytes.len()` lower-case hex digits to the start of `out`.
pub(crate) fn encode_into(bytes: &[u8], out: &mut [u8]) {
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0x0f)];
    }
}

/// Appends `bytes` as lower-case hex.
pub(crate) fn push(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

/// `bytes` as a lower-case hex string.
pub(crate) fn to_string(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push(&mut s, bytes);
    s
}

/// An ID's lower-case hex digits, on the stack. Span fields take it as a string
/// (`hex::id16(&id).as_str()`), which every subscriber records without formatting machinery.
pub(crate) struct HexId<const N: usize>([u8; N]);

impl<const N: usize> HexId<N> {
    pub(crate) fn as_str(&self) -> &str {
        // Always ASCII hex digits.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// A trace ID's 32 hex digits.
pub(crate) fn id16(bytes: &[u8; 16]) -> HexId<32> {
    let mut out = [0u8; 32];
    encode_into(bytes, &mut out);
    HexId(out)
}

/// A span ID's 16 hex digits.
pub(crate) fn id8(bytes: &[u8; 8]) -> HexId<16> {
    let mut out = [0u8; 16];
    encode_into(bytes, &mut out);
    HexId(out)
}

/// The value of one lower-case hex digit (W3C Trace Context allows no upper case).
fn digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Two lower-case hex digits as a byte.
pub(crate) fn byte(two: &[u8]) -> Option<u8> {
    match two {
        [hi, lo] => Some(digit(*hi)? << 4 | digit(*lo)?),
        _ => None,
    }
}

/// Decodes `2 × out.len()` lower-case hex digits from `src` into `out`; `false` on any other
/// character.
pub(crate) fn decode_into(src: &[u8], out: &mut [u8]) -> bool {
    src.len() >= 2 * out.len()
        && out
            .iter_mut()
            .zip(src.chunks_exact(2))
            .all(|(b, pair)| byte(pair).map(|v| *b = v).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_upper_case() {
        let id = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];
        let text = to_string(&id);
        assert_eq!(text, "00f067aa0ba902b7");
        assert_eq!(id8(&id).as_str(), text);
        assert_eq!(id16(&[0xab; 16]).as_str(), "ab".repeat(16));
        let mut back = [0u8; 8];
        assert!(decode_into(text.as_bytes(), &mut back));
        assert_eq!(back, id);
        assert!(!decode_into(b"00F067AA0BA902B7", &mut back));
    }
}
