//! Prometheus text exposition format 0.0.4.
//!
//! The registry lock is held only while the list of series is copied (pointer copies into a
//! reused scratch vector), never while formatting, so a scrape never holds up a request that
//! registers a new series.

use std::fmt::Write as _;
use std::sync::Arc;

use metrics::Label;

use crate::sync::read;

use super::storage::Exemplar;
use super::{FamilyMeta, Kind, Registry, Series, Storage};

#[derive(Debug, Default)]
pub(super) struct Scratch {
    families: Vec<(Arc<FamilyMeta>, Option<Arc<str>>, usize)>,
    series: Vec<Arc<Series>>,
    cumulative: Vec<u64>,
    last_len: usize,
}

/// The two exposition formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// Prometheus text 0.0.4: no exemplars.
    Prometheus,
    /// OpenMetrics 1.0 text: counters named `…_total`, exemplars on histogram buckets,
    /// terminated by `# EOF`.
    OpenMetrics,
}

pub(super) fn render(registry: &Registry, out: &mut String, format: Format) {
    let open_metrics = format == Format::OpenMetrics;
    // A second concurrent scrape gets its own scratch rather than waiting for the first.
    let mut owned;
    let mut guard = registry.shared.scratch.try_lock().ok();
    let scratch: &mut Scratch = match guard.as_deref_mut() {
        Some(s) => s,
        None => {
            owned = Scratch::default();
            &mut owned
        }
    };
    {
        let state = read(&registry.shared.state);
        for family in state.families.values() {
            if family.series.is_empty() {
                continue;
            }
            let help = state.help.get(&family.meta.name).cloned();
            scratch
                .families
                .push((family.meta.clone(), help, family.series.len()));
            scratch.series.extend(family.series.iter().cloned());
        }
    }
    let prefix = &*registry.shared.prefix;
    let start = out.len();
    out.reserve(scratch.last_len);
    let mut series = scratch.series.iter();
    for (meta, help, count) in &scratch.families {
        let name = meta.name.as_str();
        // OpenMetrics names a counter family without `_total` and its sample with it.
        let (family, counter_suffix) = match (open_metrics, meta.kind) {
            (true, Kind::Counter | Kind::FloatCounter) => match name.strip_suffix("_total") {
                Some(base) => (base, "_total"),
                None => (name, "_total"),
            },
            _ => (name, ""),
        };
        if let Some(help) = help {
            out.push_str("# HELP ");
            out.push_str(prefix);
            out.push_str(family);
            out.push(' ');
            push_escaped_help(out, help, open_metrics);
            out.push('\n');
        }
        out.push_str("# TYPE ");
        out.push_str(prefix);
        out.push_str(family);
        out.push(' ');
        out.push_str(meta.kind.as_str());
        out.push('\n');
        for s in series.by_ref().take(*count) {
            match &s.storage {
                Storage::Counter(c) => {
                    push_sample_start(out, prefix, family, counter_suffix, &s.labels);
                    push_u64(out, c.get());
                    out.push('\n');
                }
                Storage::Gauge(g) => {
                    // A float counter's cell is a gauge's; it is named like a counter.
                    push_sample_start(out, prefix, family, counter_suffix, &s.labels);
                    push_f64(out, g.get());
                    out.push('\n');
                }
                Storage::Histogram(h) => {
                    debug_assert_eq!(meta.kind, Kind::Histogram);
                    let sum = h.snapshot_into(&mut scratch.cumulative);
                    let les = &h.buckets.le_labels;
                    for (i, count) in scratch.cumulative.iter().enumerate() {
                        out.push_str(prefix);
                        out.push_str(name);
                        out.push_str("_bucket{");
                        out.push_str(&s.labels);
                        if !s.labels.is_empty() {
                            out.push(',');
                        }
                        out.push_str("le=\"");
                        out.push_str(les.get(i).map_or("+Inf", String::as_str));
                        out.push_str("\"} ");
                        push_u64(out, *count);
                        if open_metrics {
                            if let Some(exemplar) = h.exemplar(i) {
                                push_exemplar(out, &exemplar);
                            }
                        }
                        out.push('\n');
                    }
                    push_sample_start(out, prefix, name, "_sum", &s.labels);
                    push_f64(out, sum);
                    out.push('\n');
                    push_sample_start(out, prefix, name, "_count", &s.labels);
                    push_u64(out, scratch.cumulative.last().copied().unwrap_or(0));
                    out.push('\n');
                }
            }
        }
    }
    if open_metrics {
        out.push_str("# EOF\n");
    }
    scratch.last_len = out.len() - start;
    scratch.families.clear();
    scratch.series.clear();
}

fn push_sample_start(out: &mut String, prefix: &str, name: &str, suffix: &str, labels: &str) {
    out.push_str(prefix);
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() {
        out.push('{');
        out.push_str(labels);
        out.push('}');
    }
    out.push(' ');
}

fn push_u64(out: &mut String, v: u64) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// Formats a sample value the way Prometheus parses it (`+Inf`, `-Inf`, `NaN`, integers
/// without a fraction).
pub(crate) fn push_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        out.push_str(itoa::Buffer::new().format(v as i64));
    } else {
        out.push_str(ryu::Buffer::new().format_finite(v));
    }
}

fn push_escaped_help(out: &mut String, help: &str, escape_quotes: bool) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if escape_quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// ` # {trace_id="…",span_id="…"} value timestamp`
fn push_exemplar(out: &mut String, exemplar: &Exemplar) {
    out.push_str(" # {trace_id=\"");
    crate::hex::push(out, &exemplar.trace_id);
    out.push_str("\",span_id=\"");
    crate::hex::push(out, &exemplar.span_id);
    out.push_str("\"} ");
    push_f64(out, exemplar.value);
    out.push(' ');
    // Millisecond precision, as Prometheus stores it.
    out.push_str(ryu::Buffer::new().format_finite((exemplar.timestamp * 1e3).round() / 1e3));
}

/// `a="x",b="y"`, escaped, with later duplicates of a key dropped.
pub(super) fn format_labels<'a>(labels: impl Iterator<Item = &'a Label>) -> String {
    let mut out = String::new();
    let mut seen: Vec<&str> = Vec::new();
    for label in labels {
        if seen.contains(&label.key()) {
            continue;
        }
        seen.push(label.key());
        if !out.is_empty() {
            out.push(',');
        }
        let _ = write!(out, "{}=\"", label.key());
        for c in label.value().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    #[test]
    fn values() {
        let mut s = String::new();
        for v in [
            1.0,
            0.25,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -3.0,
            1e20,
        ] {
            push_f64(&mut s, v);
            s.push(' ');
        }
        assert_eq!(s, "1 0.25 +Inf -Inf NaN -3 1e20 ");
    }

    #[test]
    fn escapes_label_values() {
        let labels = [Label::new("a", "x\"y\\z\nw"), Label::new("a", "dup")];
        assert_eq!(format_labels(labels.iter()), r#"a="x\"y\\z\nw""#);
    }

    #[test]
    fn float_counter_is_a_counter_in_both_formats() {
        let r = Registry::new();
        let key = metrics::Key::from_name("cpu_seconds_total");
        let Some(c) = r.float_counter_storage(&key) else {
            panic!("a float counter registers");
        };
        c.fetch_max(1.5);
        assert_eq!(
            r.render(),
            "# TYPE cpu_seconds_total counter\ncpu_seconds_total 1.5\n"
        );
        assert_eq!(
            r.render_openmetrics(),
            "# TYPE cpu_seconds counter\ncpu_seconds_total 1.5\n# EOF\n"
        );
        // The name is a float counter's: a gauge or a u64 counter of it records nowhere.
        let labelled =
            metrics::Key::from_parts("cpu_seconds_total", vec![metrics::Label::new("a", "b")]);
        assert!(r.gauge_storage(&labelled).is_none());
        metrics::with_local_recorder(&r, || {
            metrics::counter!("cpu_seconds_total", "a" => "b").increment(1);
        });
        assert_eq!(r.label_sets("cpu_seconds_total"), 1);
    }

    #[test]
    fn native_histograms_leave_the_text_formats_unchanged() {
        let record = |r: &Registry| {
            metrics::with_local_recorder(r, || {
                let h = metrics::histogram!("lat_seconds", "route" => "/a");
                for v in [0.0, 0.003, 0.05, 0.5, 5.0, 50.0] {
                    h.record(v);
                }
            });
        };
        let classic = Registry::builder()
            .buckets_for("lat_seconds", &[0.1, 1.0])
            .build();
        let native = Registry::builder()
            .buckets_for("lat_seconds", &[0.1, 1.0])
            .native_histogram("lat_seconds")
            .build();
        record(&classic);
        record(&native);
        // Scraping the protobuf format (a consolidation) leaves the text the same too.
        assert!(!native.render_protobuf().is_empty());
        assert_eq!(native.render(), classic.render());
        assert_eq!(native.render_openmetrics(), classic.render_openmetrics());
    }

    #[test]
    fn a_prefix_is_on_every_name_of_both_formats() {
        let r = Registry::builder()
            .prefix("myapp")
            .unwrap()
            .buckets_for("lat_seconds", &[1.0])
            .build();
        metrics::with_local_recorder(&r, || {
            metrics::describe_counter!("jobs_total", "Jobs.");
            metrics::counter!("jobs_total").increment(2);
            metrics::gauge!("depth", "q" => "a").set(3.0);
            metrics::histogram!("lat_seconds").record(0.5);
        });
        let text = r.render();
        assert_eq!(
            text,
            "# TYPE myapp_depth gauge\nmyapp_depth{q=\"a\"} 3\n\
             # HELP myapp_jobs_total Jobs.\n# TYPE myapp_jobs_total counter\nmyapp_jobs_total 2\n\
             # TYPE myapp_lat_seconds histogram\nmyapp_lat_seconds_bucket{le=\"1\"} 1\n\
             myapp_lat_seconds_bucket{le=\"+Inf\"} 1\nmyapp_lat_seconds_sum 0.5\nmyapp_lat_seconds_count 1\n"
        );
        let om = r.render_openmetrics();
        assert!(
            om.contains("# TYPE myapp_jobs counter\nmyapp_jobs_total 2\n"),
            "{om}"
        );
        // The protobuf format names its families with the prefix too.
        let proto = r.render_protobuf();
        let has = |needle: &[u8]| proto.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"myapp_jobs") && has(b"myapp_lat_seconds"));
        // Read back and counted under their own names.
        assert_eq!(r.label_sets("jobs_total"), 1);
        assert_eq!(
            Registry::builder().prefix("app_").unwrap().prefix,
            "app_",
            "a trailing _ is the separator"
        );
        for bad in ["", "1app", "my-app", "a:b", "__x", "é"] {
            assert_eq!(
                Registry::builder().prefix(bad).unwrap_err(),
                crate::registry::InvalidMetricPrefix(bad.to_owned())
            );
        }
    }

    #[test]
    fn histogram_text() {
        let r = Registry::builder()
            .buckets_for("lat_seconds", &[0.1, 1.0])
            .build();
        metrics::with_local_recorder(&r, || {
            metrics::describe_histogram!("lat_seconds", "Latency.\nSecond line");
            let h = metrics::histogram!("lat_seconds", "route" => "/a");
            h.record(0.05);
            h.record(0.5);
            h.record(5.0);
            metrics::histogram!("lat_seconds").record(0.2);
        });
        let expected = "# HELP lat_seconds Latency.\\nSecond line
# TYPE lat_seconds histogram
lat_seconds_bucket{route=\"/a\",le=\"0.1\"} 1
lat_seconds_bucket{route=\"/a\",le=\"1\"} 2
lat_seconds_bucket{route=\"/a\",le=\"+Inf\"} 3
lat_seconds_sum{route=\"/a\"} 5.55
lat_seconds_count{route=\"/a\"} 3
lat_seconds_bucket{le=\"0.1\"} 0
lat_seconds_bucket{le=\"1\"} 1
lat_seconds_bucket{le=\"+Inf\"} 1
lat_seconds_sum 0.2
lat_seconds_count 1
";
        assert_eq!(r.render(), expected);
    }
}
