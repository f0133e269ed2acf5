//! The small part of PromQL the rules need, evaluated over samples the engine keeps and
//! rendered as the PromQL text Prometheus evaluates: one expression tree, two readings, so the
//! in-process engine and a Prometheus server running the rendered rules agree.
//!
//! Semantics follow Prometheus 2.42: a range `[t - w, t]` closed at both ends, `increase` and
//! `rate` extrapolated like `extrapolatedRate`, `histogram_quantile` interpolating linearly in
//! the bucket like `bucketQuantile`, instant values looked back at most five minutes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::{self, Write as _};
use std::time::Duration;

/// A label set (the metric name is not part of it).
pub(crate) type Labels = BTreeMap<String, String>;

/// An instant vector: one value per label set.
pub(crate) type Vector = Vec<(Labels, f64)>;

/// How far back an instant selector looks for a sample (Prometheus' default lookback delta).
pub(crate) const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// Most samples kept per series, whatever the range: memory is bounded by the series count.
pub(crate) const MAX_SAMPLES: usize = 720;

/// A label matcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Matcher {
    /// `label="value"` (a missing label matches `""`).
    Eq(String, String),
    /// `label!="value"`.
    Ne(String, String),
}

impl Matcher {
    fn matches(&self, labels: &[(String, String)]) -> bool {
        let value = |name: &str| {
            labels
                .iter()
                .find(|(k, _)| k == name)
                .map_or("", |(_, v)| v.as_str())
        };
        match self {
            Matcher::Eq(name, want) => value(name) == want,
            Matcher::Ne(name, want) => value(name) != want,
        }
    }
}

/// Aggregations over the elements of a vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Aggregation {
    Sum,
    Min,
    Max,
    Avg,
}

impl Aggregation {
    fn name(self) -> &'static str {
        match self {
            Aggregation::Sum => "sum",
            Aggregation::Min => "min",
            Aggregation::Max => "max",
            Aggregation::Avg => "avg",
        }
    }
}

/// A series selector: a metric name and matchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selector {
    pub(crate) metric: String,
    pub(crate) matchers: Vec<Matcher>,
}

/// An expression of the supported subset.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    /// `increase(selector[window])`, per series.
    Increase(Selector, i64),
    /// `rate(selector[window])`, per series.
    Rate(Selector, i64),
    /// `selector`: each series' latest sample within the lookback.
    Instant(Selector),
    /// `agg by (labels) (expr)`.
    Aggregate(Aggregation, Vec<String>, Box<Expr>),
    /// `lhs / rhs`, matching label sets one to one.
    Div(Box<Expr>, Box<Expr>),
    /// `lhs * scalar`.
    Scale(Box<Expr>, f64),
    /// `histogram_quantile(q, expr)`: `expr` has an `le` label.
    Quantile(f64, Box<Expr>),
    /// `lhs and rhs`: the elements of `lhs` whose label set is in `rhs`.
    And(Box<Expr>, Box<Expr>),
    /// `expr > x`, `expr < x`, … : the elements for which the comparison holds.
    Compare(Box<Expr>, Comparison, f64),
}

/// A comparison with a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// `>`
    Above,
    /// `>=`
    AtLeast,
    /// `<`
    Below,
    /// `<=`
    AtMost,
}

impl Comparison {
    /// The PromQL operator.
    pub fn operator(self) -> &'static str {
        match self {
            Comparison::Above => ">",
            Comparison::AtLeast => ">=",
            Comparison::Below => "<",
            Comparison::AtMost => "<=",
        }
    }

    /// Whether `value` compared with `threshold` holds (never for NaN).
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Above => value > threshold,
            Comparison::AtLeast => value >= threshold,
            Comparison::Below => value < threshold,
            Comparison::AtMost => value <= threshold,
        }
    }
}

impl Expr {
    /// The expression with `labels` added in front of every aggregation's `by`: one result
    /// per value of them (per service, for `job`), where the process itself has none.
    pub(crate) fn scoped_by(&self, labels: &[&str]) -> Expr {
        let scoped = |e: &Expr| Box::new(e.scoped_by(labels));
        match self {
            Expr::Increase(..) | Expr::Rate(..) | Expr::Instant(_) => self.clone(),
            Expr::Aggregate(agg, by, e) => {
                let mut all: Vec<String> = labels
                    .iter()
                    .filter(|l| !by.iter().any(|b| b == *l))
                    .map(|l| (*l).to_owned())
                    .collect();
                all.extend(by.iter().cloned());
                Expr::Aggregate(*agg, all, scoped(e))
            }
            Expr::Div(a, b) => Expr::Div(scoped(a), scoped(b)),
            Expr::And(a, b) => Expr::And(scoped(a), scoped(b)),
            Expr::Scale(e, k) => Expr::Scale(scoped(e), *k),
            Expr::Quantile(q, e) => Expr::Quantile(*q, scoped(e)),
            Expr::Compare(e, cmp, x) => Expr::Compare(scoped(e), *cmp, *x),
        }
    }

    /// Every selector the expression reads, with the longest range it reads it over (0 for
    /// an instant selector).
    pub(crate) fn selectors<'a>(&'a self, out: &mut Vec<(&'a Selector, i64)>) {
        match self {
            Expr::Increase(s, w) | Expr::Rate(s, w) => out.push((s, *w)),
            Expr::Instant(s) => out.push((s, 0)),
            Expr::Aggregate(_, _, e)
            | Expr::Scale(e, _)
            | Expr::Quantile(_, e)
            | Expr::Compare(e, _, _) => e.selectors(out),
            Expr::Div(a, b) | Expr::And(a, b) => {
                a.selectors(out);
                b.selectors(out);
            }
        }
    }

    /// Calls `f` with each series' value, for a selector expression (`increase`, `rate`, an
    /// instant selector); `false` for any other expression.
    fn each_series(
        &self,
        store: &SampleStore,
        t: i64,
        mut f: impl FnMut(&[(String, String)], f64),
    ) -> bool {
        match self {
            Expr::Increase(s, w) | Expr::Rate(s, w) => {
                let is_rate = matches!(self, Expr::Rate(..));
                store.each(s, |labels, samples| {
                    let from = samples.partition_point(|(ts, _)| *ts < t - w);
                    let to = samples.partition_point(|(ts, _)| *ts <= t);
                    let in_range = &samples[from..to.max(from)];
                    if let Some(v) = extrapolated_increase(in_range, t - w, t, is_rate) {
                        f(labels, v);
                    }
                });
                true
            }
            Expr::Instant(s) => {
                store.each(s, |labels, samples| {
                    if let Some((ts, v)) = samples.iter().rev().find(|(ts, _)| *ts <= t) {
                        if *ts > t - LOOKBACK_MS && !v.is_nan() {
                            f(labels, *v);
                        }
                    }
                });
                true
            }
            _ => false,
        }
    }

    /// The value of the expression at `t` (milliseconds), over `store`.
    pub(crate) fn eval(&self, store: &SampleStore, t: i64) -> Vector {
        match self {
            Expr::Increase(..) | Expr::Rate(..) | Expr::Instant(..) => {
                let mut out = Vector::new();
                self.each_series(store, t, |labels, v| out.push((without_name(labels), v)));
                out
            }
            Expr::Aggregate(agg, by, e) => {
                // Over a selector, group each series straight into its `by` labels: no label
                // set is built per series.
                let mut input = Vector::new();
                let direct = e.each_series(store, t, |labels, v| {
                    let key: Labels = labels
                        .iter()
                        .filter(|(k, _)| by.contains(k))
                        .cloned()
                        .collect();
                    input.push((key, v));
                });
                if !direct {
                    input = e.eval(store, t);
                }
                aggregate(*agg, by, input)
            }
            Expr::Div(a, b) => {
                let rhs = b.eval(store, t);
                a.eval(store, t)
                    .into_iter()
                    .filter_map(|(labels, l)| {
                        let (_, r) = rhs.iter().find(|(rl, _)| *rl == labels)?;
                        Some((labels, l / r))
                    })
                    .collect()
            }
            Expr::Scale(e, k) => e
                .eval(store, t)
                .into_iter()
                .map(|(l, v)| (l, v * k))
                .collect(),
            Expr::Quantile(q, e) => histogram_quantile(*q, e.eval(store, t)),
            Expr::And(a, b) => {
                let rhs = b.eval(store, t);
                a.eval(store, t)
                    .into_iter()
                    .filter(|(l, _)| rhs.iter().any(|(rl, _)| rl == l))
                    .collect()
            }
            Expr::Compare(e, cmp, x) => e
                .eval(store, t)
                .into_iter()
                .filter(|(_, v)| cmp.holds(*v, *x))
                .collect(),
        }
    }
}

fn without_name(labels: &[(String, String)]) -> Labels {
    labels.iter().cloned().collect()
}

fn aggregate(agg: Aggregation, by: &[String], input: Vector) -> Vector {
    let mut groups: BTreeMap<Labels, (f64, usize)> = BTreeMap::new();
    for (labels, v) in input {
        let key: Labels = labels.into_iter().filter(|(k, _)| by.contains(k)).collect();
        let slot = groups.entry(key).or_insert((
            match agg {
                Aggregation::Sum | Aggregation::Avg => 0.0,
                Aggregation::Min => f64::INFINITY,
                Aggregation::Max => f64::NEG_INFINITY,
            },
            0,
        ));
        slot.1 += 1;
        slot.0 = match agg {
            Aggregation::Sum | Aggregation::Avg => slot.0 + v,
            Aggregation::Min => slot.0.min(v),
            Aggregation::Max => slot.0.max(v),
        };
    }
    groups
        .into_iter()
        .map(|(labels, (v, n))| match agg {
            Aggregation::Avg => (labels, v / n as f64),
            _ => (labels, v),
        })
        .collect()
}

/// Prometheus' `extrapolatedRate` for counters: the increase over `[start, end]`, corrected
/// for counter resets and extrapolated to the range's edges. `None` with fewer than two samples.
pub(crate) fn extrapolated_increase(
    samples: &[(i64, f64)],
    start: i64,
    end: i64,
    is_rate: bool,
) -> Option<f64> {
    let (first, last) = (*samples.first()?, *samples.last()?);
    if samples.len() < 2 {
        return None;
    }
    let mut result = last.1 - first.1;
    let mut previous = first.1;
    for &(_, v) in &samples[1..] {
        if v < previous {
            result += previous;
        }
        previous = v;
    }
    let mut to_start = (first.0 - start) as f64 / 1000.0;
    let to_end = (end - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let average = sampled / (samples.len() - 1) as f64;
    if result > 0.0 && first.1 >= 0.0 {
        // A counter starts at zero: don't extrapolate below it.
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = average * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        average / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        average / 2.0
    };
    let mut factor = interval / sampled;
    if is_rate {
        factor /= (end - start) as f64 / 1000.0;
    }
    Some(result * factor)
}

/// Prometheus' `histogram_quantile` over classic buckets.
fn histogram_quantile(q: f64, input: Vector) -> Vector {
    let mut groups: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
    for (mut labels, v) in input {
        let Some(le) = labels.remove("le") else {
            continue;
        };
        let bound = match le.as_str() {
            "+Inf" | "Inf" | "+inf" | "inf" => f64::INFINITY,
            other => match other.parse::<f64>() {
                Ok(b) => b,
                Err(_) => continue,
            },
        };
        groups.entry(labels).or_default().push((bound, v));
    }
    groups
        .into_iter()
        .map(|(labels, buckets)| (labels, bucket_quantile(q, buckets)))
        .collect()
}

fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if !buckets.last().is_some_and(|b| b.0 == f64::INFINITY) {
        return f64::NAN;
    }
    // Coalesce equal bounds, then make the counts monotonic (rates of cumulative buckets can
    // be slightly off when scraped at different instants).
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for (bound, count) in buckets {
        match merged.last_mut() {
            Some(last) if last.0 == bound => last.1 += count,
            _ => merged.push((bound, count)),
        }
    }
    let mut max = f64::NEG_INFINITY;
    for b in &mut merged {
        if b.1 > max {
            max = b.1;
        } else {
            b.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = merged[..merged.len() - 1]
        .iter()
        .position(|x| x.1 >= rank)
        .unwrap_or(merged.len() - 1);
    if b == merged.len() - 1 {
        return merged[merged.len() - 2].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let mut start = 0.0;
    let end = merged[b].0;
    let mut count = merged[b].1;
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// The samples of one metric's series, by label set.
type SeriesSamples = HashMap<Vec<(String, String)>, VecDeque<(i64, f64)>>;

/// Samples of the series the rules read: a bounded ring per series.
#[derive(Debug, Default)]
pub(crate) struct SampleStore {
    /// By metric name, then by label set (sorted): samples (time in ms, value), oldest first.
    series: HashMap<String, SeriesSamples>,
    /// How long to keep samples of each metric, in ms.
    keep: HashMap<String, i64>,
}

impl SampleStore {
    /// A store that keeps what `exprs` need: each metric for its longest range (and at least
    /// the lookback of an instant selector).
    pub(crate) fn for_exprs<'a>(exprs: impl IntoIterator<Item = &'a Expr>) -> Self {
        let mut store = Self::default();
        for expr in exprs {
            let mut selectors = Vec::new();
            expr.selectors(&mut selectors);
            for (s, range) in selectors {
                let keep = store.keep.entry(s.metric.clone()).or_insert(0);
                *keep = (*keep).max(range.max(LOOKBACK_MS));
            }
        }
        store
    }

    /// The metric names the store keeps.
    pub(crate) fn metrics(&self) -> impl Iterator<Item = &str> {
        self.keep.keys().map(String::as_str)
    }

    /// Whether samples of `metric` are kept.
    pub(crate) fn keeps(&self, metric: &str) -> bool {
        self.keep.contains_key(metric)
    }

    /// Series kept, over every metric.
    pub(crate) fn series_count(&self) -> usize {
        self.series.values().map(HashMap::len).sum()
    }

    /// Adds a sample of `metric{labels}` at `t` (ms), dropping samples older than the metric
    /// needs. Metrics no expression reads are ignored.
    pub(crate) fn push(&mut self, metric: &str, labels: &[(String, String)], t: i64, value: f64) {
        self.push_counter(metric, labels, t, value, None);
    }

    /// Like [`push`](Self::push), for a counter that was zero at `zero_at` if this is the
    /// first sample of its series: a series the registry created since the previous sampling
    /// counted from zero, so its first increments show at once rather than a sample later.
    pub(crate) fn push_counter(
        &mut self,
        metric: &str,
        labels: &[(String, String)],
        t: i64,
        value: f64,
        zero_at: Option<i64>,
    ) {
        let Some(&keep) = self.keep.get(metric) else {
            return;
        };
        // The registry hands a series' labels in the same order every time: the label set
        // as given is the key, and an existing series is found without allocating.
        if !self.series.contains_key(metric) {
            self.series.insert(metric.to_owned(), SeriesSamples::new());
        }
        let Some(series) = self.series.get_mut(metric) else {
            return;
        };
        if !series.contains_key(labels) {
            series.insert(labels.to_vec(), VecDeque::new());
        }
        let Some(samples) = series.get_mut(labels) else {
            return;
        };
        if let Some(zero_at) = zero_at.filter(|z| samples.is_empty() && *z < t) {
            samples.push_back((zero_at, 0.0));
        }
        if samples.back().is_some_and(|(last, _)| *last >= t) {
            return; // time went backwards or repeated: keep the first
        }
        // Long ranges (a burn-rate rule's 3 days) keep at most `MAX_SAMPLES` samples, spaced
        // evenly; the newest sample is always the latest reading.
        let spacing = keep / MAX_SAMPLES as i64;
        let len = samples.len();
        if len >= 2 && t - samples[len - 2].0 < spacing {
            samples[len - 1] = (t, value);
        } else {
            samples.push_back((t, value));
        }
        while samples.front().is_some_and(|(ts, _)| *ts < t - keep) {
            samples.pop_front();
        }
        // Evaluation reads each series as one slice.
        samples.make_contiguous();
    }

    fn each(&self, selector: &Selector, mut f: impl FnMut(&[(String, String)], &[(i64, f64)])) {
        let Some(series) = self.series.get(&selector.metric) else {
            return;
        };
        for (labels, samples) in series {
            if selector.matchers.iter().all(|m| m.matches(labels)) {
                f(labels, samples.as_slices().0);
            }
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.metric)?;
        if self.matchers.is_empty() {
            return Ok(());
        }
        f.write_char('{')?;
        for (i, m) in self.matchers.iter().enumerate() {
            if i > 0 {
                f.write_char(',')?;
            }
            let (name, op, value) = match m {
                Matcher::Eq(n, v) => (n, "=", v),
                Matcher::Ne(n, v) => (n, "!=", v),
            };
            write!(f, "{name}{op}\"")?;
            for c in value.chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '"' => f.write_str("\\\"")?,
                    '\n' => f.write_str("\\n")?,
                    c => f.write_char(c)?,
                }
            }
            f.write_char('"')?;
        }
        f.write_char('}')
    }
}

/// Milliseconds of a duration, saturating: the unit of the sample store's times.
pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A duration in PromQL notation (`5m`, `90s`, `1h30m`).
pub(crate) fn duration(ms: i64) -> String {
    let mut out = String::new();
    let mut rest = ms;
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if rest >= size {
            let _ = write!(out, "{}{unit}", rest / size);
            rest %= size;
        }
    }
    if rest > 0 || out.is_empty() {
        let _ = write!(out, "{rest}ms");
    }
    out
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Increase(s, w) => write!(f, "increase({s}[{}])", duration(*w)),
            Expr::Rate(s, w) => write!(f, "rate({s}[{}])", duration(*w)),
            Expr::Instant(s) => write!(f, "{s}"),
            Expr::Aggregate(agg, by, e) => {
                if by.is_empty() {
                    write!(f, "{}({e})", agg.name())
                } else {
                    write!(f, "{} by ({}) ({e})", agg.name(), by.join(", "))
                }
            }
            Expr::Div(a, b) => write!(f, "({a}) / ({b})"),
            Expr::Scale(e, k) => write!(f, "({e}) * {}", number(*k)),
            Expr::Quantile(q, e) => write!(f, "histogram_quantile({}, {e})", number(*q)),
            Expr::And(a, b) => write!(f, "({a}) and ({b})"),
            Expr::Compare(e, cmp, x) => write!(f, "{e} {} {}", cmp.operator(), number(*x)),
        }
    }
}

/// A number as PromQL reads it back exactly.
pub(crate) fn number(x: f64) -> String {
    if x.is_infinite() {
        return if x > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if x.is_nan() {
        return "NaN".into();
    }
    format!("{x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(metric: &str) -> Selector {
        Selector {
            metric: metric.into(),
            matchers: Vec::new(),
        }
    }

    #[test]
    fn increase_extrapolates_like_prometheus() {
        // 0+10x10 sampled every minute; increase over 5m at t=10m: samples at 5m..10m,
        // 6 samples spanning 300 s, covering the range exactly: 50.
        let samples: Vec<(i64, f64)> = (0..=10).map(|i| (i * 60_000, i as f64 * 10.0)).collect();
        let in_range: Vec<_> = samples
            .iter()
            .copied()
            .filter(|(t, _)| *t >= 300_000 && *t <= 600_000)
            .collect();
        assert_eq!(
            extrapolated_increase(&in_range, 300_000, 600_000, false),
            Some(50.0)
        );
        // Samples at 0..=2m over a 5m range ending at 2m: the zero point stops the
        // extrapolation at the series' start, the end is at the last sample: 20.
        let early = &samples[..3];
        assert_eq!(
            extrapolated_increase(early, -180_000, 120_000, false),
            Some(20.0)
        );
        // A counter reset: 10 → 20, then from 0 to 5.
        let reset = [(0, 10.0), (60_000, 20.0), (120_000, 5.0)];
        let v = extrapolated_increase(&reset, 0, 120_000, false).unwrap();
        assert_eq!(v, 15.0);
        assert_eq!(extrapolated_increase(&[(0, 1.0)], 0, 60_000, false), None);
    }

    #[test]
    fn quantile_interpolates_within_the_bucket() {
        let v = |le: &str, n: f64| {
            let mut l = Labels::new();
            l.insert("le".into(), le.into());
            (l, n)
        };
        let q = histogram_quantile(0.5, vec![v("0.1", 10.0), v("1", 30.0), v("+Inf", 40.0)]);
        // rank 20: in (0.1, 1], 10 of 20 into it: 0.1 + 0.9 * 0.5
        assert!((q[0].1 - 0.55).abs() < 1e-12);
        let q = histogram_quantile(0.99, vec![v("0.1", 0.0), v("1", 0.0), v("+Inf", 5.0)]);
        assert_eq!(q[0].1, 1.0, "beyond the last finite bucket: its bound");
        let q = histogram_quantile(0.5, vec![v("1", 0.0), v("+Inf", 0.0)]);
        assert!(q[0].1.is_nan());
    }

    #[test]
    fn renders_promql() {
        let errors = Expr::Aggregate(
            Aggregation::Sum,
            vec!["http_route".into()],
            Box::new(Expr::Increase(
                Selector {
                    metric: "x_count".into(),
                    matchers: vec![
                        Matcher::Ne("error_type".into(), String::new()),
                        Matcher::Eq("r".into(), "a\"b".into()),
                    ],
                },
                300_000,
            )),
        );
        let expr = Expr::Compare(
            Box::new(Expr::Div(
                Box::new(errors),
                Box::new(Expr::Instant(sel("y"))),
            )),
            Comparison::Above,
            0.1,
        );
        assert_eq!(
            expr.to_string(),
            r#"(sum by (http_route) (increase(x_count{error_type!="",r="a\"b"}[5m]))) / (y) > 0.1"#
        );
        assert_eq!(duration(5_400_000), "1h30m");
        assert_eq!(duration(1500), "1s500ms");
    }

    #[test]
    fn store_keeps_only_what_the_ranges_need() {
        let expr = Expr::Increase(sel("c"), 120_000);
        let mut store = SampleStore::for_exprs([&expr]);
        for i in 0..100 {
            store.push("c", &[], i * 10_000, i as f64);
            store.push("unused", &[], i * 10_000, 1.0);
        }
        assert_eq!(store.series_count(), 1);
        // The lookback (5 min) is the longest need: 31 samples of 10 s.
        let kept = store.series["c"][&Vec::new()].len();
        assert_eq!(kept, 31);
        let v = expr.eval(&store, 990_000);
        assert_eq!(v.len(), 1);
        assert!((v[0].1 - 12.0).abs() < 1e-9, "{}", v[0].1);
    }
}
