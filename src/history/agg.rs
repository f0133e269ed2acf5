//! One bucket of one series: request and error counts and the latency sketch (which also
//! holds the exact min, max and sum).

use crate::stats::sketch::{get_varint, put_varint, SketchData};

#[derive(Debug, Clone, Default)]
pub(crate) struct Agg {
    pub(crate) errors: u64,
    pub(crate) latency: SketchData,
}

impl Agg {
    pub(crate) fn record(&mut self, nanos: u64, error: bool) {
        self.latency.record(nanos);
        self.errors += u64::from(error);
    }

    pub(crate) fn requests(&self) -> u64 {
        self.latency.count()
    }

    pub(crate) fn merge(&mut self, other: &Agg) {
        self.errors += other.errors;
        self.latency.merge(&other.latency);
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.push(1); // format version
        put_varint(out, self.errors);
        self.latency.encode(out);
    }

    pub(crate) fn decode(mut input: &[u8]) -> Option<Agg> {
        let (&version, rest) = input.split_first()?;
        if version != 1 {
            return None;
        }
        input = rest;
        let errors = get_varint(&mut input)?;
        let latency = SketchData::decode(&mut input)?;
        Some(Agg { errors, latency })
    }
}
