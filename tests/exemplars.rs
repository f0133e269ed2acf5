//! OpenMetrics negotiation and exemplars, checked against a real Prometheus server.
#![cfg(feature = "axum")]

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::{Extension, Router};
use serde_json::Value;
use support::{eventually, serve};
use tower_observe::trace::SpanIds;
use tower_observe::Observer;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN_ID: &str = "00f067aa0ba902b7";

fn ids(sampled: bool) -> SpanIds {
    let mut trace_id = [0u8; 16];
    let mut span_id = [0u8; 8];
    for (i, b) in trace_id.iter_mut().enumerate() {
        *b = u8::from_str_radix(&TRACE_ID[2 * i..2 * i + 2], 16).unwrap();
    }
    for (i, b) in span_id.iter_mut().enumerate() {
        *b = u8::from_str_radix(&SPAN_ID[2 * i..2 * i + 2], 16).unwrap();
    }
    SpanIds {
        trace_id,
        span_id,
        sampled,
    }
}

/// `/traced` reports a sampled span (as a span layer will), `/unsampled` an unsampled one.
fn app(observer: &Observer) -> Router {
    Router::new()
        .route(
            "/traced",
            get(|| async { (Extension(ids(true)), "traced") }),
        )
        .route(
            "/unsampled",
            get(|| async { (Extension(ids(false)), "not traced") }),
        )
        .merge(observer.router())
        .layer(observer.layer())
}

#[tokio::test]
async fn openmetrics_on_request_with_exemplars_prometheus_text_otherwise() {
    let observer = Observer::new();
    let addr = serve(app(&observer)).await;
    let client = reqwest::Client::new();
    client
        .get(format!("http://{addr}/traced"))
        .send()
        .await
        .unwrap();
    client
        .get(format!("http://{addr}/unsampled"))
        .send()
        .await
        .unwrap();
    eventually(|| observer.stats().totals.requests == 2).await;

    let res = client
        .get(format!("http://{addr}/metrics"))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = res.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    let with_exemplar: Vec<&str> = text.lines().filter(|l| l.contains(" # {")).collect();
    assert_eq!(
        with_exemplar.len(),
        1,
        "one sampled request, one exemplar: {text}"
    );
    let line = with_exemplar[0];
    assert!(
        line.starts_with("http_server_request_duration_seconds_bucket{"),
        "{line}"
    );
    assert!(line.contains("http_route=\"/traced\""), "{line}");
    assert!(
        line.contains(&format!(
            "# {{trace_id=\"{TRACE_ID}\",span_id=\"{SPAN_ID}\"}} "
        )),
        "{line}"
    );

    let plain = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        plain.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let plain = plain.text().await.unwrap();
    assert!(!plain.contains("trace_id") && !plain.contains("# EOF"));
}

#[tokio::test]
async fn openmetrics_counters_are_named_by_the_spec() {
    let observer = Observer::new();
    metrics::with_local_recorder(observer.registry().unwrap(), || {
        metrics::describe_counter!("jobs_total", "Jobs \"done\".");
        metrics::counter!("jobs_total").increment(2);
        metrics::counter!("retries").increment(1);
    });
    let text = observer.registry().unwrap().render_openmetrics();
    assert!(
        text.contains("# HELP jobs Jobs \\\"done\\\".\n# TYPE jobs counter\njobs_total 2\n"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE retries counter\nretries_total 1\n"),
        "{text}"
    );
}

/// A Prometheus server on loopback, stopped when dropped.
struct Prometheus {
    child: Child,
    dir: std::path::PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_real_prometheus_scrapes_our_exemplars() {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "prometheus is required in CI"
        );
        eprintln!("prometheus not installed; skipping");
        return;
    }
    let observer = Observer::new();
    let addr = serve(app(&observer)).await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        client
            .get(format!("http://{addr}/traced"))
            .send()
            .await
            .unwrap();
    }

    let dir = std::env::temp_dir().join(format!("tower-observe-prom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{addr}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--enable-feature=exemplar-storage")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _prometheus = Prometheus { child, dir };

    let deadline = Instant::now() + Duration::from_secs(60);
    let url = format!("http://127.0.0.1:{port}/api/v1/query_exemplars");
    loop {
        // Keep traffic flowing so every scrape has fresh exemplars.
        let _ = client.get(format!("http://{addr}/traced")).send().await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let found = client
            .get(&url)
            .query(&[
                ("query", "http_server_request_duration_seconds_bucket"),
                ("start", &format!("{}", now - 300.0)),
                ("end", &format!("{}", now + 60.0)),
            ])
            .send()
            .await
            .ok();
        if let Some(res) = found {
            if let Ok(body) = res.json::<Value>().await {
                let text = body.to_string();
                if text.contains(TRACE_ID) && text.contains(SPAN_ID) {
                    assert_eq!(body["status"], "success");
                    return;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never reported our exemplar"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
