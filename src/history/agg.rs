//! One bucket of one series: request, error and aborted counts and the latency sketch of the
//! completed requests (which also holds the exact min, max and sum).

use crate::stats::sketch::{get_varint, put_varint, SketchData};

#[derive(Debug, Clone, Default)]
pub(crate) struct Agg {
    pub(crate) errors: u64,
    /// Requests whose client went away: counted, but their duration is not a latency.
    pub(crate) aborted: u64,
    pub(crate) latency: SketchData,
}

/// How a recorded request ended, for a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    Completed { error: bool },
    Aborted,
}

impl Agg {
    pub(crate) fn record(&mut self, nanos: u64, ended: Ended) {
        match ended {
            Ended::Completed { error } => {
                self.latency.record(nanos);
                self.errors += u64::from(error);
            }
            Ended::Aborted => self.aborted += 1,
        }
    }

    pub(crate) fn requests(&self) -> u64 {
        self.latency.count() + self.aborted
    }

    pub(crate) fn merge(&mut self, other: &Agg) {
        self.errors += other.errors;
        self.aborted += other.aborted;
        self.latency.merge(&other.latency);
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.push(2); // format version
        put_varint(out, self.errors);
        put_varint(out, self.aborted);
        self.latency.encode(out);
    }

    /// Reads format 2, and format 1 (before aborted requests were counted apart).
    pub(crate) fn decode(mut input: &[u8]) -> Option<Agg> {
        let (&version, rest) = input.split_first()?;
        input = rest;
        let errors = get_varint(&mut input)?;
        let aborted = match version {
            1 => 0,
            2 => get_varint(&mut input)?,
            _ => return None,
        };
        let latency = SketchData::decode(&mut input)?;
        Some(Agg {
            errors,
            aborted,
            latency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aborted_requests_are_counted_apart_and_survive_encoding() {
        let mut agg = Agg::default();
        agg.record(1_000, Ended::Completed { error: false });
        agg.record(2_000, Ended::Completed { error: true });
        agg.record(9_000_000, Ended::Aborted);
        let mut bytes = Vec::new();
        agg.encode(&mut bytes);
        let back = Agg::decode(&bytes).unwrap();
        assert_eq!((back.requests(), back.errors, back.aborted), (3, 1, 1));
        assert_eq!(back.latency.count(), 2);
        // A bucket written before (format 1) still reads.
        let mut v1 = vec![1];
        put_varint(&mut v1, 1);
        agg.latency.encode(&mut v1);
        let old = Agg::decode(&v1).unwrap();
        assert_eq!((old.requests(), old.errors, old.aborted), (2, 1, 0));
    }
}
