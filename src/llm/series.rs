//! The LLM part of the observer: the GenAI metric handles and the per-provider and per-model
//! statistics of both sides, and the one recording path of a finished request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::Counter;

use super::{Side, UsageSource};
use crate::names;
use crate::observer::family::Family;
use crate::observer::handles::{self, HistogramHandle};
use crate::observer::RecorderSource;
use crate::observer::{Observer, Part};
use crate::stats::sketch::{LatencySketch, SketchData};
use crate::stats::{
    LatencyMs, LlmEntry, LlmSideStats, LlmStats, Outcome, StatsCell, StatsSnapshot,
};

/// The inputs of one finished GenAI request (its labels are its series').
#[derive(Debug)]
pub(crate) struct LlmCompletion<'a> {
    /// `error.type`, when the request failed or was cancelled.
    pub(crate) error: Option<&'a str>,
    pub(crate) outcome: Outcome,
    pub(crate) start: u64,
    pub(crate) end: u64,
    /// When the first content token passed (streams with a successful status only).
    pub(crate) first_token: Option<u64>,
    /// Output tokens for the time per output token (completed streams only).
    pub(crate) tpot_tokens: Option<u64>,
    pub(crate) input: Option<(u64, UsageSource)>,
    pub(crate) output: Option<(u64, UsageSource)>,
    pub(crate) token_usage: bool,
}

/// The metric names of one side.
struct SideNames {
    duration: &'static str,
    first_token: &'static str,
    per_token: Option<&'static str>,
}

const SERVER: SideNames = SideNames {
    duration: names::GEN_AI_SERVER_REQUEST_DURATION,
    first_token: names::GEN_AI_SERVER_TIME_TO_FIRST_TOKEN,
    per_token: Some(names::GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN),
};

// The client's `gen_ai.client.operation.time_per_output_chunk` has no advised buckets and is
// still moving in the conventions: not recorded.
const CLIENT: SideNames = SideNames {
    duration: names::GEN_AI_CLIENT_OPERATION_DURATION,
    first_token: names::GEN_AI_CLIENT_TIME_TO_FIRST_CHUNK,
    per_token: None,
};

/// One (operation, provider, model): its handles, registered on first use (a histogram that
/// never records, such as the time to first token of embeddings, makes no series), and its
/// statistics.
#[derive(Debug)]
pub(crate) struct LlmSeries {
    /// The values as registered (folded to `_OTHER` in the overflow entry).
    labels: [Box<str>; 3],
    overflow: Option<Counter>,
    first_token: OnceLock<HistogramHandle>,
    per_token: OnceLock<HistogramHandle>,
    /// `[input provider, input estimated, output provider, output estimated]`.
    tokens: [OnceLock<HistogramHandle>; 4],
    cell: StatsCell,
    ttft: LatencySketch,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    estimated_tokens: AtomicU64,
}

impl LlmSeries {
    fn new(v: &[&str], overflow: Option<Counter>) -> Self {
        Self {
            labels: [v[0].into(), v[1].into(), v[2].into()],
            overflow,
            first_token: OnceLock::new(),
            per_token: OnceLock::new(),
            tokens: Default::default(),
            cell: StatsCell::default(),
            ttft: LatencySketch::default(),
            input_tokens: AtomicU64::new(0),
            output_tokens: AtomicU64::new(0),
            estimated_tokens: AtomicU64::new(0),
        }
    }

    fn labels(&self) -> [(&'static str, &str); 3] {
        [
            (names::GEN_AI_OPERATION_NAME, &*self.labels[0]),
            (names::GEN_AI_PROVIDER_NAME, &*self.labels[1]),
            (names::GEN_AI_REQUEST_MODEL, &*self.labels[2]),
        ]
    }

    fn histogram<'a>(
        &self,
        slot: &'a OnceLock<HistogramHandle>,
        source: &dyn RecorderSource,
        name: &'static str,
        extra: &[(&'static str, &str)],
    ) -> &'a HistogramHandle {
        slot.get_or_init(|| {
            let mut labels = self.labels().to_vec();
            labels.extend_from_slice(extra);
            handles::histogram(source, &handles::entry_key(name, &labels, &self.overflow))
        })
    }

    fn reset(&self) {
        self.cell.reset();
        self.ttft.reset();
        self.input_tokens.store(0, Relaxed);
        self.output_tokens.store(0, Relaxed);
        self.estimated_tokens.store(0, Relaxed);
    }
}

/// The duration histogram of one (operation, provider, model, error type).
#[derive(Debug)]
struct DurationSeries {
    duration: HistogramHandle,
    overflow: Option<Counter>,
}

#[derive(Debug)]
struct SideState {
    names: &'static SideNames,
    series: Family<LlmSeries>,
    durations: Family<DurationSeries>,
}

impl std::fmt::Debug for SideNames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.duration)
    }
}

/// Past the limit, the operation, provider and model fold; the error type is kept.
const KEPT_ERROR: u64 = 0b1000;

impl SideState {
    fn new(names: &'static SideNames, limit: usize) -> Self {
        Self {
            names,
            series: Family::new(names.first_token, limit),
            durations: Family::keeping(names.duration, limit, KEPT_ERROR),
        }
    }

    /// The side's figures per provider and per model: the series merged by either.
    fn stats(&self, elapsed: f64) -> LlmSideStats {
        let entries = self.series.entries();
        let mut providers: BTreeMap<String, Vec<&LlmSeries>> = BTreeMap::new();
        let mut models: BTreeMap<String, Vec<&LlmSeries>> = BTreeMap::new();
        for (values, series) in &entries {
            providers.entry(values[1].clone()).or_default().push(series);
            models.entry(values[2].clone()).or_default().push(series);
        }
        let merge = |map: BTreeMap<String, Vec<&LlmSeries>>| {
            map.into_iter()
                .map(|(k, list)| (k, entry_of(&list, elapsed)))
                .collect()
        };
        LlmSideStats {
            providers: merge(providers),
            models: merge(models),
        }
    }
}

fn entry_of(list: &[&LlmSeries], elapsed: f64) -> LlmEntry {
    let e = StatsCell::merged_entry(list.iter().map(|s| &s.cell), elapsed);
    let mut ttft = SketchData::default();
    for s in list {
        s.ttft.read_into(&mut ttft);
    }
    let sum = |f: fn(&LlmSeries) -> &AtomicU64| list.iter().map(|s| f(s).load(Relaxed)).sum();
    LlmEntry {
        requests: e.requests,
        errors: e.errors,
        cancelled: e.aborted,
        error_rate: e.success_rate.map(|s| 1.0 - s),
        requests_per_second: e.requests_per_second,
        latency_ms: e.latency_ms,
        ttft_ms: ttft
            .summary(&[0.5, 0.95, 0.99])
            .map(|s| LatencyMs::from_summary(&s)),
        input_tokens: sum(|s| &s.input_tokens),
        output_tokens: sum(|s| &s.output_tokens),
        estimated_tokens: sum(|s| &s.estimated_tokens),
    }
}

/// The LLM state of an observer; attached when the first LLM layer is made.
#[derive(Debug)]
pub(crate) struct LlmPart {
    server: SideState,
    client: SideState,
}

impl LlmPart {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            server: SideState::new(&SERVER, limit),
            client: SideState::new(&CLIENT, limit),
        }
    }

    fn side(&self, side: Side) -> &SideState {
        match side {
            Side::Server => &self.server,
            Side::Client => &self.client,
        }
    }
}

impl Part for LlmPart {
    fn stats(&self, snapshot: &mut StatsSnapshot, elapsed: f64) {
        let mut stats = LlmStats::default();
        stats.server = self.server.stats(elapsed);
        stats.client = self.client.stats(elapsed);
        snapshot.llm = Some(stats);
    }

    fn reset(&self) {
        for side in [&self.server, &self.client] {
            for (_, series) in side.series.entries() {
                series.reset();
            }
        }
    }
}

fn seconds(nanos: u64) -> Duration {
    Duration::from_nanos(nanos)
}

impl LlmPart {
    /// The series of (operation, provider, model) on `side`, registered on first use: looked
    /// up once per request, when its labels are known (at the response headers).
    pub(crate) fn series(
        &self,
        observer: &Observer,
        side: Side,
        labels: (&str, &str, &str),
    ) -> Arc<LlmSeries> {
        let mut found = None;
        observer.with_source(|source| {
            found = Some(self.side(side).series.get(
                source,
                &[labels.0, labels.1, labels.2],
                LlmSeries::new,
            ));
        });
        // A recorder that panicked: a detached series that records nowhere.
        found.unwrap_or_else(|| Arc::new(LlmSeries::new(&[labels.0, labels.1, labels.2], None)))
    }

    /// The one recording path for a finished GenAI request.
    pub(crate) fn record(
        &self,
        observer: &Observer,
        side: Side,
        series: &LlmSeries,
        c: &LlmCompletion<'_>,
    ) {
        observer.guarded(|| self.record_unguarded(observer, side, series, c));
    }

    fn record_unguarded(
        &self,
        observer: &Observer,
        side: Side,
        series: &LlmSeries,
        c: &LlmCompletion<'_>,
    ) {
        let source = observer.source();
        let side = self.side(side);
        let names = side.names;
        let nanos = c.end.saturating_sub(c.start);
        handles::count_overflow(&series.overflow);

        let error = c.error.unwrap_or("");
        let [op, provider, model] = &series.labels;
        let duration = side
            .durations
            .get(source, &[op, provider, model, error], |v, overflow| {
                let mut labels = vec![
                    (names::GEN_AI_OPERATION_NAME, v[0]),
                    (names::GEN_AI_PROVIDER_NAME, v[1]),
                    (names::GEN_AI_REQUEST_MODEL, v[2]),
                ];
                if !v[3].is_empty() {
                    labels.push((names::ERROR_TYPE, v[3]));
                }
                DurationSeries {
                    duration: handles::histogram(
                        source,
                        &handles::entry_key(names.duration, &labels, &overflow),
                    ),
                    overflow,
                }
            });
        handles::count_overflow(&duration.overflow);
        observer.record_duration(&duration.duration, seconds(nanos), c.end, None);

        series
            .cell
            .record(nanos, observer.second_of(c.end), None, c.outcome);
        if let Some(first) = c.first_token {
            let ttft = first.saturating_sub(c.start);
            series
                .histogram(&series.first_token, source, names.first_token, &[])
                .record(seconds(ttft).as_secs_f64());
            series.ttft.record(ttft);
            if let (Some(name), Some(tokens)) = (names.per_token, c.tpot_tokens) {
                if tokens > 1 {
                    let per = c.end.saturating_sub(first) as f64 / 1e9 / (tokens - 1) as f64;
                    series
                        .histogram(&series.per_token, source, name, &[])
                        .record(per);
                }
            }
        }
        for (i, (count, kind, total)) in [
            (c.input, "input", &series.input_tokens),
            (c.output, "output", &series.output_tokens),
        ]
        .into_iter()
        .enumerate()
        {
            let Some((n, usage)) = count else { continue };
            total.fetch_add(n, Relaxed);
            if usage == UsageSource::Estimated {
                series.estimated_tokens.fetch_add(n, Relaxed);
            }
            if c.token_usage {
                let slot = i * 2 + usize::from(usage == UsageSource::Estimated);
                series
                    .histogram(
                        &series.tokens[slot],
                        source,
                        names::GEN_AI_CLIENT_TOKEN_USAGE,
                        &[
                            (names::GEN_AI_TOKEN_TYPE, kind),
                            (names::USAGE_SOURCE, usage.as_str()),
                        ],
                    )
                    .record(n as f64);
            }
        }
    }
}
