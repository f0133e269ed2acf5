//! An incremental reader of model responses: OpenAI-style Server-Sent Events (and Anthropic's
//! message stream) fed frame by frame, and JSON completions read from a capped copy.
//!
//! It never changes the bytes: the body wrapper hands it a view of each frame and passes the
//! frame on. Lines split across frames are carried in one reused buffer, so after the first
//! events a stream costs no allocation; each complete event's JSON is read with `serde_json`
//! into visitors that only answer "was there content?" and keep the `usage` figures, without
//! building strings or vectors.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// Token counts a response reported, each field when it was present.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Reported {
    pub(crate) input: Option<u64>,
    pub(crate) output: Option<u64>,
}

impl Reported {
    fn merge(&mut self, other: Reported) {
        self.input = other.input.or(self.input);
        self.output = other.output.or(self.output);
    }
}

/// What one event (or a whole JSON body) says.
#[derive(Debug, Default)]
pub(crate) struct EventFacts {
    pub(crate) content: bool,
    pub(crate) usage: Reported,
    pub(crate) error: bool,
}

/// Reads one JSON event; `None` when it is not JSON of a known shape.
pub(crate) fn read_event(json: &[u8]) -> Option<EventFacts> {
    let event: Event = serde_json::from_slice(json).ok()?;
    let mut usage = Reported::default();
    if let Some(m) = event.message.and_then(|m| m.usage) {
        usage.merge(m.reported());
    }
    if let Some(u) = event.usage {
        usage.merge(u.reported());
    }
    Some(EventFacts {
        content: event.choices.0 || event.delta.has_content(),
        usage,
        error: event.error.is_some(),
    })
}

/// The incremental SSE reader of one response stream.
#[derive(Debug, Default)]
pub(crate) struct SseReader {
    /// The current line, when it started in an earlier frame.
    line: Vec<u8>,
    /// The `data` of the current event (lines joined by `\n`).
    data: Vec<u8>,
    has_data: bool,
    /// The previous frame ended with `\r`: a `\n` starting this one belongs to it.
    after_cr: bool,
    /// Events with content (the estimate of output tokens: one per chunk).
    pub(crate) content_events: u64,
    pub(crate) usage: Reported,
    pub(crate) done: bool,
    pub(crate) error: bool,
}

impl SseReader {
    /// Reads a frame; returns how many content events it completed.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> u64 {
        let before = self.content_events;
        if self.after_cr {
            self.after_cr = false;
            if let [b'\n', rest @ ..] = bytes {
                bytes = rest;
            }
        }
        while !bytes.is_empty() {
            match bytes.iter().position(|b| *b == b'\n' || *b == b'\r') {
                Some(at) => {
                    let (line, rest) = bytes.split_at(at);
                    bytes = &rest[1..];
                    if rest[0] == b'\r' {
                        match bytes {
                            [b'\n', tail @ ..] => bytes = tail,
                            [] => self.after_cr = true,
                            _ => {}
                        }
                    }
                    if self.line.is_empty() {
                        self.line_done(line);
                    } else {
                        let mut carried = std::mem::take(&mut self.line);
                        carried.extend_from_slice(line);
                        self.line_done(&carried);
                        carried.clear();
                        self.line = carried;
                    }
                }
                None => {
                    // Keep a bounded partial line: a line of a megabyte is not an event we
                    // can read, and must not grow memory without bound.
                    if self.line.len() + bytes.len() <= MAX_LINE {
                        self.line.extend_from_slice(bytes);
                    }
                    break;
                }
            }
        }
        self.content_events - before
    }

    /// The stream ended: an event not closed by a blank line still counts.
    pub(crate) fn end(&mut self) -> u64 {
        let before = self.content_events;
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line);
        }
        self.dispatch();
        self.content_events - before
    }

    fn line_done(&mut self, line: &[u8]) {
        if line.is_empty() {
            self.dispatch();
            return;
        }
        // Comments (`: keep-alive`) and other fields (`event:`, `id:`, `retry:`) carry no
        // content.
        let Some(value) = line.strip_prefix(b"data") else {
            return;
        };
        let value = match value {
            [] => value,
            [b':', b' ', rest @ ..] => rest,
            [b':', rest @ ..] => rest,
            _ => return, // `dataset: …`, another field
        };
        if self.has_data {
            self.data.push(b'\n');
        }
        if self.data.len() + value.len() <= MAX_LINE {
            self.data.extend_from_slice(value);
        }
        self.has_data = true;
    }

    fn dispatch(&mut self) {
        if !self.has_data {
            return;
        }
        self.has_data = false;
        if self.data == b"[DONE]" {
            self.done = true;
        } else if let Some(facts) = read_event(&self.data) {
            if facts.content {
                self.content_events += 1;
            }
            self.usage.merge(facts.usage);
            self.error |= facts.error;
        }
        self.data.clear();
    }
}

/// The longest line or event read (1 MiB); longer ones are skipped.
const MAX_LINE: usize = 1 << 20;

// --- The JSON shapes, read without allocating ------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(default)]
struct Event {
    /// OpenAI: `choices[].delta` (chat), `choices[].text` (completions).
    choices: Choices,
    /// Anthropic: `content_block_delta`'s `delta`.
    delta: Delta,
    usage: Option<Usage>,
    /// Anthropic: `message_start`'s `message.usage`.
    message: Option<Message>,
    error: Option<NonNull>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Message {
    usage: Option<Usage>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

impl Usage {
    fn reported(&self) -> Reported {
        Reported {
            input: self.prompt_tokens.or(self.input_tokens),
            output: self.completion_tokens.or(self.output_tokens),
        }
    }
}

/// A delta's fields that carry output: text, tool calls, reasoning, a refusal.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Delta {
    content: NonEmpty,
    tool_calls: NonEmpty,
    function_call: NonEmpty,
    reasoning_content: NonEmpty,
    reasoning: NonEmpty,
    refusal: NonEmpty,
    text: NonEmpty,
    thinking: NonEmpty,
    partial_json: NonEmpty,
}

impl Delta {
    fn has_content(&self) -> bool {
        self.content.0
            || self.tool_calls.0
            || self.function_call.0
            || self.reasoning_content.0
            || self.reasoning.0
            || self.refusal.0
            || self.text.0
            || self.thinking.0
            || self.partial_json.0
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Choice {
    delta: Delta,
    text: NonEmpty,
}

/// `choices`: whether any choice carries content (no vector is built).
#[derive(Default)]
struct Choices(bool);

impl<'de> Deserialize<'de> for Choices {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Choices;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of choices")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Choices, A::Error> {
                let mut any = false;
                while let Some(choice) = seq.next_element::<Choice>()? {
                    any |= choice.delta.has_content() || choice.text.0;
                }
                Ok(Choices(any))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Choices, E> {
                Ok(Choices(false))
            }
        }
        d.deserialize_any(V)
    }
}

/// Whether a value is a non-empty string, list or object (anything else: false).
#[derive(Default)]
struct NonEmpty(bool);

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NonEmpty;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NonEmpty, E> {
                Ok(NonEmpty(!v.is_empty()))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<NonEmpty, E> {
                Ok(NonEmpty(!v.is_empty()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NonEmpty, A::Error> {
                let mut any = false;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    any = true;
                }
                Ok(NonEmpty(any))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NonEmpty, A::Error> {
                let mut any = false;
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
                    any = true;
                }
                Ok(NonEmpty(any))
            }
            fn visit_unit<E: de::Error>(self) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }
        }
        d.deserialize_any(V)
    }
}

/// Present and not `null`.
struct NonNull;

impl<'de> Deserialize<'de> for NonNull {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| NonNull)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        ": keep-alive\n\n",
        "data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n\n",
        "data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\\\"lo\"}}],\"usage\":null}\n\n",
        "event: message\r\ndata: {\"choices\":[{\"delta\":{\"content\":\" world\"}}]}\r\n\r\n",
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0}]}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\"total_tokens\":15,\"prompt_tokens_details\":{\"cached_tokens\":0}}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn reads_content_usage_and_done_split_anywhere() {
        let bytes = STREAM.as_bytes();
        for size in [1, 2, 3, 7, 16, 64, bytes.len()] {
            let mut r = SseReader::default();
            let mut events = 0;
            for part in bytes.chunks(size) {
                events += r.feed(part);
            }
            events += r.end();
            assert_eq!(events, 3, "chunk size {size}");
            assert_eq!(r.content_events, 3);
            assert_eq!(
                r.usage,
                Reported {
                    input: Some(12),
                    output: Some(3)
                }
            );
            assert!(r.done && !r.error, "chunk size {size}");
        }
    }

    #[test]
    fn role_only_and_comments_are_not_content() {
        let mut r = SseReader::default();
        assert_eq!(r.feed(b": ping\n\n"), 0);
        assert_eq!(
            r.feed(b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n"),
            0
        );
        assert_eq!(
            r.feed(b"data: {\"choices\":[{\"delta\":{\"content\":null}}]}\n\n"),
            0
        );
        assert_eq!(
            r.feed(b"data:{\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n"),
            1
        );
    }

    #[test]
    fn anthropic_stream_and_errors() {
        let mut r = SseReader::default();
        r.feed(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n");
        assert_eq!(r.feed(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n"), 1);
        r.feed(b"data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n");
        assert_eq!(
            r.usage,
            Reported {
                input: Some(25),
                output: Some(15)
            }
        );
        r.feed(b"data: {\"error\":{\"message\":\"overloaded\"}}\n\n");
        assert!(r.error);
    }

    #[test]
    fn json_completion() {
        let body = br#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"}}],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}"#;
        let facts = read_event(body).unwrap();
        assert_eq!(facts.usage.input, Some(9));
        assert_eq!(facts.usage.output, Some(12));
        assert!(read_event(b"{not json").is_none());
    }
}
