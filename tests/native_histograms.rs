//! Prometheus native histograms over the protobuf exposition, checked two ways: decoded with
//! prost structs that mirror client_model's `metrics.proto` field for field, and scraped by a
//! real Prometheus (`--enable-feature=native-histograms`) whose `histogram_quantile` over the
//! native histogram must land within a few percent of what the client measured, with the
//! classic buckets' figures printed beside it. The classic text still passes promtool.
//!
//! Prometheus and promtool (Debian package `prometheus`) are skipped when missing, unless
//! `TOWER_OBSERVE_E2E=1`.
#![cfg(feature = "axum")]

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::extract::Query;
use axum::routing::get;
use axum::{Extension, Router};
use prost::Message;
use serde_json::Value;
use support::{eventually, serve};
use tower_observe::endpoints::PROMETHEUS_PROTOBUF;
use tower_observe::registry::NATIVE_ZERO_THRESHOLD;
use tower_observe::trace::SpanIds;
use tower_observe::Observer;

/// client_model's `io.prometheus.client` messages, by their field numbers.
mod dto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct MetricFamily {
        #[prost(string, optional, tag = "1")]
        pub(crate) name: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub(crate) help: Option<String>,
        #[prost(int32, optional, tag = "3")]
        pub(crate) r#type: Option<i32>,
        #[prost(message, repeated, tag = "4")]
        pub(crate) metric: Vec<Metric>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Metric {
        #[prost(message, repeated, tag = "1")]
        pub(crate) label: Vec<LabelPair>,
        #[prost(message, optional, tag = "2")]
        pub(crate) gauge: Option<Value>,
        #[prost(message, optional, tag = "3")]
        pub(crate) counter: Option<Value>,
        #[prost(message, optional, tag = "7")]
        pub(crate) histogram: Option<Histogram>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct LabelPair {
        #[prost(string, optional, tag = "1")]
        pub(crate) name: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub(crate) value: Option<String>,
    }
    /// `Gauge` and `Counter` (field 1, the value).
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Value {
        #[prost(double, optional, tag = "1")]
        pub(crate) value: Option<f64>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Histogram {
        #[prost(uint64, optional, tag = "1")]
        pub(crate) sample_count: Option<u64>,
        #[prost(double, optional, tag = "2")]
        pub(crate) sample_sum: Option<f64>,
        #[prost(message, repeated, tag = "3")]
        pub(crate) bucket: Vec<Bucket>,
        #[prost(sint32, optional, tag = "5")]
        pub(crate) schema: Option<i32>,
        #[prost(double, optional, tag = "6")]
        pub(crate) zero_threshold: Option<f64>,
        #[prost(uint64, optional, tag = "7")]
        pub(crate) zero_count: Option<u64>,
        #[prost(message, repeated, tag = "9")]
        pub(crate) negative_span: Vec<BucketSpan>,
        #[prost(sint64, repeated, tag = "10")]
        pub(crate) negative_delta: Vec<i64>,
        #[prost(message, repeated, tag = "12")]
        pub(crate) positive_span: Vec<BucketSpan>,
        #[prost(sint64, repeated, tag = "13")]
        pub(crate) positive_delta: Vec<i64>,
        #[prost(message, repeated, tag = "16")]
        pub(crate) exemplars: Vec<Exemplar>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Bucket {
        #[prost(uint64, optional, tag = "1")]
        pub(crate) cumulative_count: Option<u64>,
        #[prost(double, optional, tag = "2")]
        pub(crate) upper_bound: Option<f64>,
        #[prost(message, optional, tag = "3")]
        pub(crate) exemplar: Option<Exemplar>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct BucketSpan {
        #[prost(sint32, optional, tag = "1")]
        pub(crate) offset: Option<i32>,
        #[prost(uint32, optional, tag = "2")]
        pub(crate) length: Option<u32>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Exemplar {
        #[prost(message, repeated, tag = "1")]
        pub(crate) label: Vec<LabelPair>,
        #[prost(double, optional, tag = "2")]
        pub(crate) value: Option<f64>,
        #[prost(message, optional, tag = "3")]
        pub(crate) timestamp: Option<Timestamp>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Timestamp {
        #[prost(int64, optional, tag = "1")]
        pub(crate) seconds: Option<i64>,
        #[prost(int32, optional, tag = "2")]
        pub(crate) nanos: Option<i32>,
    }
}

const TRACE_ID: [u8; 16] = [0x4b; 16];

#[derive(serde::Deserialize)]
struct Work {
    us: u64,
    #[serde(default)]
    traced: bool,
}

/// `/work?us=N` answers after N microseconds; `traced=true` reports a sampled span.
fn app(observer: &Observer) -> Router {
    Router::new()
        .route(
            "/work",
            get(|Query(w): Query<Work>| async move {
                tokio::time::sleep(Duration::from_micros(w.us)).await;
                let ids = SpanIds {
                    trace_id: TRACE_ID,
                    span_id: [0x0b; 8],
                    sampled: w.traced,
                };
                (Extension(ids), "done")
            }),
        )
        .merge(observer.router())
        .layer(observer.layer())
}

fn decode(mut body: &[u8]) -> Vec<dto::MetricFamily> {
    let mut families = Vec::new();
    while !body.is_empty() {
        families.push(dto::MetricFamily::decode_length_delimited(&mut body).unwrap());
    }
    families
}

fn label<'a>(m: &'a dto::Metric, name: &str) -> Option<&'a str> {
    m.label
        .iter()
        .find(|l| l.name.as_deref() == Some(name))
        .and_then(|l| l.value.as_deref())
}

/// The native buckets `(index, count)` a histogram's spans and deltas describe.
fn native_buckets(spans: &[dto::BucketSpan], deltas: &[i64]) -> Vec<(i32, u64)> {
    let mut out = Vec::new();
    let (mut index, mut count, mut d) = (0i32, 0i64, deltas.iter());
    for (n, span) in spans.iter().enumerate() {
        index += span.offset.unwrap_or(0) + if n > 0 { 1 } else { 0 };
        for k in 0..span.length.unwrap_or(0) {
            if k > 0 {
                index += 1;
            }
            count += d.next().copied().unwrap();
            out.push((index, count as u64));
        }
    }
    assert!(d.next().is_none(), "as many deltas as buckets");
    out.retain(|(_, c)| *c > 0);
    out
}

#[tokio::test]
async fn protobuf_decodes_with_the_client_model_messages() {
    let observer = Observer::new();
    let registry = observer.registry().unwrap().clone();
    metrics::with_local_recorder(&registry, || {
        metrics::counter!("jobs_done_total", "queue" => "email").increment(3);
        metrics::gauge!("queue_depth").set(2.5);
    });
    let addr = serve(app(&observer)).await;
    let client = reqwest::Client::new();
    let delays = [0u64, 0, 0, 12_000, 30_000];
    for us in delays {
        let traced = us == 12_000;
        client
            .get(format!("http://{addr}/work?us={us}&traced={traced}"))
            .send()
            .await
            .unwrap();
    }
    let text_of = |text: &str| {
        support::sample(
            text,
            "http_server_request_duration_seconds_count",
            &[("http_route", "/work")],
        )
    };
    eventually(|| text_of(&observer.render_metrics().unwrap()) == Some(5.0)).await;

    let res = client
        .get(format!("http://{addr}/metrics"))
        .header(
            "accept",
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], PROMETHEUS_PROTOBUF);
    let families = decode(&res.bytes().await.unwrap());

    let counter = families
        .iter()
        .find(|f| f.name.as_deref() == Some("jobs_done_total"))
        .unwrap();
    assert_eq!(counter.r#type, Some(0));
    assert_eq!(label(&counter.metric[0], "queue"), Some("email"));
    assert_eq!(counter.metric[0].counter.as_ref().unwrap().value, Some(3.0));
    let gauge = families
        .iter()
        .find(|f| f.name.as_deref() == Some("queue_depth"))
        .unwrap();
    assert_eq!(gauge.r#type, Some(1));
    assert_eq!(gauge.metric[0].gauge.as_ref().unwrap().value, Some(2.5));

    let family = families
        .iter()
        .find(|f| f.name.as_deref() == Some("http_server_request_duration_seconds"))
        .unwrap();
    assert_eq!(family.r#type, Some(4));
    assert!(family
        .help
        .as_deref()
        .unwrap()
        .starts_with("Duration of HTTP"));
    let metric = family
        .metric
        .iter()
        .find(|m| label(m, "http_route") == Some("/work"))
        .unwrap();
    assert_eq!(label(metric, "http_request_method"), Some("GET"));
    let h = metric.histogram.as_ref().unwrap();
    assert_eq!(h.sample_count, Some(5));
    // Classic buckets: the OpenTelemetry layout, cumulative, the +Inf one implied.
    let bounds: Vec<f64> = h.bucket.iter().map(|b| b.upper_bound.unwrap()).collect();
    assert_eq!(&bounds[..3], &[0.005, 0.01, 0.025]);
    let cumulative: Vec<u64> = h
        .bucket
        .iter()
        .map(|b| b.cumulative_count.unwrap())
        .collect();
    assert!(cumulative.windows(2).all(|w| w[0] <= w[1]));
    // The same counts as the text exposition's `_bucket` series (nothing recorded between).
    let text = observer.render_metrics().unwrap();
    for (bound, count) in bounds.iter().zip(&cumulative) {
        let le = format!("{bound}");
        let in_text = support::sample(
            &text,
            "http_server_request_duration_seconds_bucket",
            &[("http_route", "/work"), ("le", le.as_str())],
        );
        assert_eq!(in_text, Some(*count as f64), "le={le}");
    }
    // Native: schema 3, Go's zero threshold, buckets that hold each delay.
    assert_eq!(h.schema, Some(3));
    assert_eq!(h.zero_threshold, Some(NATIVE_ZERO_THRESHOLD));
    assert_eq!(h.zero_count, Some(0));
    assert!(h.negative_span.is_empty() && h.negative_delta.is_empty());
    let buckets = native_buckets(&h.positive_span, &h.positive_delta);
    assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 5);
    // Bucket i holds (base^(i-1), base^i]: the sum lies between the buckets' bounds, and the
    // k-th fastest request took at least the k-th shortest delay.
    let base = 2f64.powf(2f64.powi(-3));
    let mut uppers: Vec<f64> = Vec::new();
    let mut lowers = 0.0;
    for &(index, count) in &buckets {
        for _ in 0..count {
            uppers.push(base.powi(index));
            lowers += base.powi(index - 1);
        }
    }
    let sum = h.sample_sum.unwrap();
    assert!(
        lowers < sum && sum <= uppers.iter().sum::<f64>(),
        "{lowers} < {sum}"
    );
    for (us, upper) in delays.iter().zip(&uppers) {
        let delay = *us as f64 / 1e6;
        assert!(*upper >= delay, "{upper} >= {delay}");
    }
    // The sampled request's exemplar, in its classic bucket and among the native exemplars,
    // with a timestamp.
    let exemplar = h
        .exemplars
        .iter()
        .find(|e| {
            e.label
                .iter()
                .any(|l| l.name.as_deref() == Some("trace_id"))
        })
        .expect("a native exemplar");
    assert_eq!(
        exemplar.label[0].value.as_deref(),
        Some("4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b")
    );
    assert!(exemplar.value.unwrap() >= 0.012);
    assert!(exemplar.timestamp.as_ref().unwrap().seconds.unwrap() > 1_600_000_000);
    assert!(h
        .bucket
        .iter()
        .any(|b| b.exemplar == Some(exemplar.clone())));

    // The text exposition has no trace of the native histogram.
    assert_eq!(text_of(&text), Some(5.0));
    assert!(!text.contains("schema"));
}

#[tokio::test]
async fn turned_off_the_histograms_are_classic_only() {
    let observer = Observer::builder()
        .native_histograms(false)
        .build()
        .unwrap();
    let addr = serve(app(&observer)).await;
    let client = reqwest::Client::new();
    client
        .get(format!("http://{addr}/work?us=100"))
        .send()
        .await
        .unwrap();
    let registry = observer.registry().unwrap().clone();
    eventually(|| {
        decode(&registry.render_protobuf())
            .iter()
            .any(|f| f.name.as_deref() == Some("http_server_request_duration_seconds"))
    })
    .await;
    let families = decode(&registry.render_protobuf());
    let family = families
        .iter()
        .find(|f| f.name.as_deref() == Some("http_server_request_duration_seconds"))
        .unwrap();
    let h = family.metric[0].histogram.as_ref().unwrap();
    assert_eq!(h.sample_count, Some(1));
    assert_eq!((h.schema, h.zero_threshold), (None, None));
    assert!(h.positive_span.is_empty());
    assert!(!h.bucket.is_empty());
}

#[tokio::test]
async fn the_schema_and_bucket_limit_are_configurable() {
    let observer = Observer::builder()
        .native_histogram_schema(8)
        .native_histogram_max_buckets(10)
        .build()
        .unwrap();
    let addr = serve(app(&observer)).await;
    let client = reqwest::Client::new();
    // 0.1 ms to 50 ms: far more than 10 buckets at schema 8.
    let delays = [100u64, 400, 1_000, 3_000, 8_000, 20_000, 50_000];
    for us in delays {
        client
            .get(format!("http://{addr}/work?us={us}"))
            .send()
            .await
            .unwrap();
    }
    let registry = observer.registry().unwrap().clone();
    let histogram = || {
        decode(&registry.render_protobuf())
            .into_iter()
            .find(|f| f.name.as_deref() == Some("http_server_request_duration_seconds"))
            .and_then(|f| {
                f.metric
                    .into_iter()
                    .find(|m| label(m, "http_route") == Some("/work"))
            })
            .and_then(|m| m.histogram)
    };
    eventually(|| histogram().is_some_and(|h| h.sample_count == Some(7))).await;
    let h = histogram().unwrap();
    let buckets = native_buckets(&h.positive_span, &h.positive_delta);
    assert!(buckets.len() <= 10, "{buckets:?}");
    assert!(h.schema.unwrap() < 8, "the resolution was lowered");
    assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 7);
}

// ---------------------------------------------------------------------------------------------
// A real Prometheus.

/// Whether `tool` runs; missing, the test skips unless `TOWER_OBSERVE_E2E=1`.
fn have(tool: &str) -> bool {
    if Command::new(tool).arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var("TOWER_OBSERVE_E2E").map_or(true, |v| v != "1"),
        "{tool} is missing and TOWER_OBSERVE_E2E=1"
    );
    eprintln!("skipping: {tool} is not installed (set TOWER_OBSERVE_E2E=1 to require it)");
    false
}

/// A Prometheus server on loopback, stopped (by its pid) when dropped.
struct Prometheus {
    child: Child,
    dir: std::path::PathBuf,
    port: u16,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    async fn query(&self, client: &reqwest::Client, query: &str) -> Option<f64> {
        let body: Value = client
            .get(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query(&[("query", query)])
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `q` quantile of sorted `values`, interpolated between ranks.
fn quantile(values: &[f64], q: f64) -> f64 {
    let rank = q * (values.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    values[lo] + (values[hi] - values[lo]) * (rank - lo as f64)
}

/// A latency mix whose quantiles fall inside wide classic buckets (60 % 20–40 ms, 37 %
/// 100–200 ms, 3 % 600–900 ms), served on loopback and measured by the client; Prometheus scrapes the
/// protobuf format (job `native`) and, to compare, the text format (job `classic`, a route
/// serving `render_metrics()` whatever the `Accept`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_quantiles_over_the_native_histogram_match_the_client() {
    if !have("prometheus") || !have("promtool") {
        return;
    }
    let observer = Observer::new();
    let text = observer.clone();
    let app = app(&observer).route(
        "/classic-metrics",
        get(move || {
            let body = text.render_metrics().unwrap();
            async move { body }
        }),
    );
    let addr = serve(app).await;
    let client = reqwest::Client::new();
    // The series exists before the first scrape, so `rate` sees the traffic from zero.
    client
        .get(format!("http://{addr}/work?us=1"))
        .send()
        .await
        .unwrap();

    let port = free_port();
    let dir = std::env::temp_dir().join(format!("tower-observe-native-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  \
             - job_name: native\n    static_configs:\n      - targets: ['{addr}']\n  \
             - job_name: classic\n    metrics_path: /classic-metrics\n    static_configs:\n      - targets: ['{addr}']\n"
        ),
    )
    .unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--enable-feature=native-histograms")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let prometheus = Prometheus { child, dir, port };

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let native = prometheus
            .query(
                &client,
                "histogram_count(http_server_request_duration_seconds{job=\"native\",http_route=\"/work\"})",
            )
            .await;
        let classic = prometheus
            .query(
                &client,
                "http_server_request_duration_seconds_count{job=\"classic\",http_route=\"/work\"}",
            )
            .await;
        if native.is_some() && classic.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped the app"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // One more scrape of the quiet series, then the traffic.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut rng = fastrand::Rng::with_seed(22);
    let delays: Vec<u64> = (0..1500)
        .map(|_| {
            let (lo, hi) = match rng.f64() {
                p if p < 0.60 => (20_000, 40_000),
                p if p < 0.97 => (100_000, 200_000),
                _ => (600_000, 900_000),
            };
            rng.u64(lo..hi)
        })
        .collect();
    let mut tasks = Vec::new();
    for chunk in delays.chunks(30) {
        let (client, chunk) = (client.clone(), chunk.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut took = Vec::new();
            for us in chunk {
                let start = Instant::now();
                let res = client
                    .get(format!("http://{addr}/work?us={us}"))
                    .send()
                    .await
                    .unwrap();
                res.bytes().await.unwrap();
                took.push(start.elapsed().as_secs_f64());
            }
            took
        }));
    }
    let mut measured = Vec::new();
    for t in tasks {
        measured.extend(t.await.unwrap());
    }
    measured.sort_by(f64::total_cmp);
    // Two more scrapes after the last request.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let mut report = String::from("quantile  client     native (error)     classic (error)\n");
    let mut worst_native = 0f64;
    for q in [0.5, 0.95, 0.99] {
        let truth = quantile(&measured, q);
        let native = prometheus
            .query(
                &client,
                &format!(
                    "histogram_quantile({q}, sum(rate(http_server_request_duration_seconds{{job=\"native\",http_route=\"/work\"}}[1m])))"
                ),
            )
            .await
            .expect("a native quantile");
        let classic = prometheus
            .query(
                &client,
                &format!(
                    "histogram_quantile({q}, sum by (le) (rate(http_server_request_duration_seconds_bucket{{job=\"classic\",http_route=\"/work\"}}[1m])))"
                ),
            )
            .await
            .expect("a classic quantile");
        let err = |v: f64| (v - truth) / truth * 100.0;
        worst_native = worst_native.max(err(native).abs());
        report.push_str(&format!(
            "p{:<7} {:>7.1} ms {:>7.1} ms ({:+5.1} %) {:>7.1} ms ({:+5.1} %)\n",
            q * 100.0,
            truth * 1e3,
            native * 1e3,
            err(native),
            classic * 1e3,
            err(classic),
        ));
    }
    eprintln!("{report}");
    assert!(
        worst_native < 5.0,
        "native quantiles within 5 % of the client's:\n{report}"
    );
    // With protobuf negotiated, Prometheus 2.x keeps only the native version of a native
    // histogram: no classic `_bucket` series for the `native` job.
    let classic_from_protobuf = prometheus
        .query(
            &client,
            "count(http_server_request_duration_seconds_bucket{job=\"native\"})",
        )
        .await;
    eprintln!(
        "classic _bucket series ingested from the protobuf scrape: {classic_from_protobuf:?}"
    );

    // The classic text still passes promtool.
    let text = observer.render_metrics().unwrap();
    support::promtool_check_metrics(std::path::Path::new("promtool"), &text);
    drop(prometheus);
}
