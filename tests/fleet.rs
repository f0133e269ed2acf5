//! The deploy kit with the real engines, on loopback: three demo instances (the example the
//! compose file deploys), a real Prometheus running the shipped `deploy/prometheus/prometheus.yml`
//! (addresses and intervals made the test's) with the shipped rules and fleet rules rendered by
//! the alert engine, and a real Alertmanager routing to a local webhook receiver.
//!
//! Needs Debian's `prometheus` and `prometheus-alertmanager` and the demo binary (`cargo test
//! --all-features` builds the examples before it runs tests); skipped without them unless
//! `TOWER_OBSERVE_E2E=1`. Takes about 45 s; every process is stopped by its id when the test
//! ends, and each has an `--exit-after` bound of its own.
#![cfg(all(
    feature = "axum",
    feature = "logs",
    feature = "alerts",
    feature = "process"
))]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tower_observe::alerts::{AlertRule, AlertRules, Figure, Severity};

#[path = "support/receiver.rs"]
mod receiver;
use receiver::{Mode, Receiver};

const PROMETHEUS: &str = "/usr/bin/prometheus";
const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus");
/// Requests per second sent to each instance: different, so that a mix-up of instances shows.
const RPS: [u32; 3] = [12, 20, 28];
const ROUTES: [&str; 2] = ["/api/search", "/api/users/{id}"];
/// The client's own share of a request's time (connection, scheduling) that the server does not
/// see, at least: the client's p99 may exceed the server's by this much, or by the p99 the
/// client measures for `/health/live` (which the server answers at once) under the same load.
const CLIENT_OVERHEAD: f64 = 0.010;
const PROBE: &str = "/health/live";
/// The measured window: the histogram quantile over it against the client's p99 over it.
const WINDOW: Duration = Duration::from_secs(10);
const FLEET_ALERT: &str = "InstanceHighErrorRate";
/// The observer's routes the test requests (scrapes, probes, statistics).
const OWN_ENDPOINTS: [&str; 3] = ["/metrics", "/health/live", "/v1/stats"];

/// Whether the test must run (CI) or may be skipped.
fn require(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if std::env::var("TOWER_OBSERVE_E2E").is_ok_and(|v| v == "1") {
        panic!("{what} is missing and TOWER_OBSERVE_E2E=1");
    }
    eprintln!("skipping: {what} is missing (set TOWER_OBSERVE_E2E=1 to require it)");
    false
}

/// The demo example next to this test's binary (target/<profile>/examples/demo).
fn demo_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let profile = exe.parent().and_then(Path::parent).expect("target dir");
    profile.join("examples").join("demo")
}

/// Stops the child (by its process id) when dropped.
struct Killed(Child, &'static str);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct TempDir(PathBuf);

impl TempDir {
    /// A log file for a process's output, shown if the test fails.
    fn log(&self, name: &str) -> Stdio {
        std::fs::File::create(self.0.join(format!("{name}.log")))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut logs: Vec<_> = std::fs::read_dir(&self.0)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "log"))
                .collect();
            logs.sort();
            for log in logs {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                eprintln!("--- {} (last lines)", log.display());
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// The fleet's error-rate rule: the shipped `HighErrorRate` (above 10 %, at least 20 requests,
/// critical) with one alert per scraped `instance`, and a 10 s window and 2 s `for` instead of
/// 5 m and 5 m so that it moves within the test. Rendered by the same engine API
/// (`AlertRules::to_prometheus_rules`) as `deploy/prometheus/alerts.rules.yml`.
fn fleet_rules() -> AlertRules {
    AlertRules::new().rule(
        AlertRule::new(FLEET_ALERT, Figure::error_rate(WINDOW))
            .for_each("instance")
            .above(0.10)
            .for_duration(Duration::from_secs(2))
            .min_requests(20)
            .severity(Severity::Critical)
            .summary("Error rate of {{ $labels.instance }} is {{ $value | humanizePercentage }}"),
    )
}

/// `deploy/prometheus/prometheus.yml` as shipped, with the test's addresses and 1 s intervals,
/// and the fleet rules loaded next to the shipped ones.
fn prometheus_config(demos: &[u16], alertmanager: u16, prometheus: u16) -> String {
    let mut text = std::fs::read_to_string(format!("{SHIPPED}/prometheus.yml")).unwrap();
    let targets: Vec<String> = demos.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
    for (from, to) in [
        ("scrape_interval: 15s", "scrape_interval: 1s".to_owned()),
        ("scrape_timeout: 10s", "scrape_timeout: 1s".to_owned()),
        (
            "evaluation_interval: 15s",
            "evaluation_interval: 1s".to_owned(),
        ),
        ("'demo:3000'", targets.join(", ")),
        ("'alertmanager:9093'", format!("'127.0.0.1:{alertmanager}'")),
        ("'localhost:9090'", format!("'127.0.0.1:{prometheus}'")),
        (
            "  - alerts.rules.yml\n",
            "  - alerts.rules.yml\n  - fleet.rules.yml\n".to_owned(),
        ),
    ] {
        assert!(
            text.contains(from),
            "deploy/prometheus/prometheus.yml no longer has {from:?}: update this test"
        );
        text = text.replace(from, &to);
    }
    text
}

fn alertmanager_config(hook: &str) -> String {
    format!(
        "route:
  receiver: fleet
  group_by: ['alertname', 'instance']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: fleet
    webhook_configs:
      - url: '{hook}'
        send_resolved: true
"
    )
}

/// One request as the client saw it.
struct Sample {
    instance: usize,
    route: &'static str,
    end: Instant,
    seconds: f64,
    status: u16,
}

/// Sends `rps` requests per second to `base`, alternating the two routes, while `running`;
/// records each (its duration measured by the client) in `log`.
async fn drive(
    client: reqwest::Client,
    base: String,
    instance: usize,
    rps: u32,
    running: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Sample>>>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rps);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u32 = 0;
    loop {
        tick.tick().await;
        if !running.load(Ordering::Relaxed) {
            continue;
        }
        n += 1;
        let (route, url) = if n.is_multiple_of(5) {
            (PROBE, format!("{base}{PROBE}"))
        } else if n.is_multiple_of(2) {
            (ROUTES[0], format!("{base}/api/search"))
        } else {
            (ROUTES[1], format!("{base}/api/users/{}", n % 500))
        };
        let (client, log) = (client.clone(), Arc::clone(&log));
        tokio::spawn(async move {
            let start = Instant::now();
            let Ok(res) = client.get(&url).send().await else {
                return;
            };
            let status = res.status().as_u16();
            let _ = res.bytes().await;
            let end = Instant::now();
            log.lock().unwrap().push(Sample {
                instance,
                route,
                end,
                seconds: (end - start).as_secs_f64(),
                status,
            });
        });
    }
}

struct Prom {
    client: reqwest::Client,
    base: String,
}

impl Prom {
    /// An instant query's result vector: (labels, value).
    async fn query(
        &self,
        expr: &str,
        at: Option<SystemTime>,
    ) -> Vec<(BTreeMap<String, String>, f64)> {
        let mut params = vec![("query", expr.to_owned())];
        if let Some(at) = at {
            params.push(("time", format!("{:.3}", unix(at))));
        }
        let body: Value = self
            .client
            .get(format!("{}/api/v1/query", self.base))
            .query(&params)
            .send()
            .await
            .expect("prometheus answers")
            .json()
            .await
            .expect("prometheus JSON");
        assert_eq!(body["status"], "success", "{expr}: {body}");
        body["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect();
                let value = r["value"][1].as_str().unwrap().parse().unwrap();
                (labels, value)
            })
            .collect()
    }
}

/// Polls `check` every 200 ms until it returns something, for at most `limit`.
async fn within<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + limit;
    loop {
        if let Some(t) = check().await {
            return t;
        }
        assert!(
            Instant::now() < end,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The q-quantile of `values` (nearest rank).
fn quantile(mut values: Vec<f64>, q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

/// The webhook payloads received so far, as JSON.
fn notifications(hook: &Receiver) -> Vec<Value> {
    hook.received
        .lock()
        .unwrap()
        .iter()
        .map(receiver::Received::json)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_behind_prometheus_and_alertmanager() {
    let demo = demo_binary();
    if !require(PROMETHEUS, Path::new(PROMETHEUS).exists())
        || !require(ALERTMANAGER, Path::new(ALERTMANAGER).exists())
        || !require(
            &format!(
                "the demo ({}; cargo build --all-features --example demo)",
                demo.display()
            ),
            demo.exists(),
        )
    {
        return;
    }
    let started = Instant::now();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = TempDir(std::env::temp_dir().join(format!(
        "tower-observe-fleet-{}-{nanos}",
        std::process::id()
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    let mut procs: Vec<Killed> = Vec::new();

    // Alertmanager, with its webhook receiver.
    let hook = Receiver::start(Mode::Status(200));
    let am_port = free_port();
    std::fs::write(
        dir.0.join("alertmanager.yml"),
        alertmanager_config(&hook.url("/fleet")),
    )
    .unwrap();
    procs.push(Killed(
        Command::new(ALERTMANAGER)
            .arg(format!(
                "--config.file={}",
                dir.0.join("alertmanager.yml").display()
            ))
            .arg(format!(
                "--storage.path={}",
                dir.0.join("am-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(dir.log("alertmanager"))
            .spawn()
            .expect("start alertmanager"),
        "alertmanager",
    ));

    // Three demo instances, as the compose file runs it, on loopback ports of their own.
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    for port in &ports {
        procs.push(Killed(
            Command::new(&demo)
                .args([
                    "--addr",
                    &format!("127.0.0.1:{port}"),
                    "--exit-after",
                    "120",
                ])
                .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
                .stdout(Stdio::null())
                .stderr(dir.log(&format!("demo-{port}")))
                .spawn()
                .expect("start the demo"),
            "demo",
        ));
    }

    // Prometheus: the shipped configuration and rules, plus the fleet rules.
    let prom_port = free_port();
    std::fs::write(
        dir.0.join("prometheus.yml"),
        prometheus_config(&ports, am_port, prom_port),
    )
    .unwrap();
    std::fs::copy(
        format!("{SHIPPED}/alerts.rules.yml"),
        dir.0.join("alerts.rules.yml"),
    )
    .unwrap();
    std::fs::write(
        dir.0.join("fleet.rules.yml"),
        fleet_rules().to_prometheus_rules("tower-observe-fleet"),
    )
    .unwrap();
    procs.push(Killed(
        Command::new(PROMETHEUS)
            .arg(format!(
                "--config.file={}",
                dir.0.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .arg("--enable-feature=exemplar-storage")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(dir.log("prometheus"))
            .spawn()
            .expect("start prometheus"),
        "prometheus",
    ));

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let prom = Prom {
        client: client.clone(),
        base: format!("http://127.0.0.1:{prom_port}"),
    };
    let ok = |url: String| {
        let client = client.clone();
        async move {
            let res = client.get(url).send().await.ok()?;
            res.status().is_success().then_some(())
        }
    };
    within(Duration::from_secs(20), "Alertmanager ready", || {
        ok(format!("http://127.0.0.1:{am_port}/-/ready"))
    })
    .await;
    within(Duration::from_secs(20), "Prometheus ready", || {
        ok(format!("{}/-/ready", prom.base))
    })
    .await;
    for port in &ports {
        within(Duration::from_secs(20), "a demo instance live", || {
            ok(format!("http://127.0.0.1:{port}/health/live"))
        })
        .await;
    }
    within(Duration::from_secs(15), "three demo targets up", || async {
        let up = prom.query("up{job=\"demo\"} == 1", None).await;
        (up.len() == 3).then_some(())
    })
    .await;

    // Every shipped rule loads and evaluates without error next to the fleet rule.
    let rules: Value = client
        .get(format!("{}/api/v1/rules", prom.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let loaded: Vec<(String, String)> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["health"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let names: BTreeSet<&str> = loaded.iter().map(|(n, _)| n.as_str()).collect();
    for name in [
        "HighErrorRate",
        "HighLatencyP99",
        "HighCpuUtilization",
        "BackendPoolDegraded",
        FLEET_ALERT,
    ] {
        assert!(names.contains(name), "{name} not loaded: {rules}");
    }

    // Traffic to all three; the first seconds create the series (a series' first scrape counts
    // nothing in rate()), the next WINDOW is measured.
    let running = Arc::new(AtomicBool::new(true));
    let log: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let drivers: Vec<_> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            tokio::spawn(drive(
                client.clone(),
                format!("http://127.0.0.1:{port}"),
                i,
                RPS[i],
                Arc::clone(&running),
                Arc::clone(&log),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let from = Instant::now();
    tokio::time::sleep(WINDOW).await;
    let (to, to_wall) = (Instant::now(), SystemTime::now());
    // Every rule has been evaluated by now; none failed.
    let rules: Value = client
        .get(format!("{}/api/v1/rules", prom.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for g in rules["data"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            assert_eq!(
                r["health"], "ok",
                "rule {} does not evaluate: {}",
                r["name"], r["lastError"]
            );
        }
    }

    // The fleet's p99 per route from the histogram against what the client measured.
    tokio::time::sleep(Duration::from_secs(2)).await; // the window's last scrape is in
    let les: Vec<f64> = {
        let mut les: Vec<f64> = prom
            .query(
                "count by (le) (http_server_request_duration_seconds_bucket{job=\"demo\"})",
                None,
            )
            .await
            .iter()
            .map(|(l, _)| l["le"].parse::<f64>().unwrap())
            .filter(|le| le.is_finite())
            .collect();
        les.sort_by(f64::total_cmp);
        les
    };
    assert!(les.len() >= 5, "bucket bounds: {les:?}");
    let p99 = prom
        .query(
            &format!(
                "histogram_quantile(0.99, sum by (le, http_route) (rate(http_server_request_duration_seconds_bucket{{job=\"demo\"}}[{}s])))",
                WINDOW.as_secs()
            ),
            Some(to_wall),
        )
        .await;
    let samples: Vec<(&'static str, f64, usize, u16)> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.end > from && s.end <= to)
        .map(|s| (s.route, s.seconds, s.instance, s.status))
        .collect();
    assert!(
        samples.iter().all(|s| s.3 == 200),
        "failures before any fault"
    );
    let overhead = CLIENT_OVERHEAD.max(quantile(
        samples
            .iter()
            .filter(|s| s.0 == PROBE)
            .map(|s| s.1)
            .collect(),
        0.99,
    ));
    for route in ROUTES {
        let truth = quantile(
            samples
                .iter()
                .filter(|s| s.0 == route)
                .map(|s| s.1)
                .collect(),
            0.99,
        );
        let (_, estimate) = p99
            .iter()
            .find(|(l, _)| l["http_route"] == route)
            .unwrap_or_else(|| panic!("no p99 for {route}: {p99:?}"));
        // Within bucket resolution: in the bucket holding the client's p99, or in the one below
        // when the client's own overhead may have carried it over that bucket's lower edge.
        let upper = les
            .iter()
            .copied()
            .find(|&le| le >= truth)
            .unwrap_or(f64::INFINITY);
        let lower = les
            .iter()
            .copied()
            .rev()
            .find(|&le| le < truth - overhead)
            .unwrap_or(0.0);
        eprintln!(
            "p99 {route}: histogram {estimate:.4}s, client {truth:.4}s (its overhead up to {overhead:.4}s), allowed [{lower}, {upper}]"
        );
        assert!(
            (lower..=upper).contains(estimate),
            "p99 of {route}: Prometheus says {estimate}s, the client measured {truth}s (buckets {les:?})"
        );
    }

    // Each instance's /v1/stats against its own series: traffic paused, the counts must agree
    // exactly once the last requests are scraped, and differ between instances.
    running.store(false, Ordering::Relaxed);
    let mut totals = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let instance = format!("127.0.0.1:{port}");
        let sent = samples.iter().filter(|s| s.2 == i).count();
        let (stats_total, per_route) = within(Duration::from_secs(8), "/v1/stats to match the scraped series", || {
            let (client, prom, instance) = (client.clone(), &prom, instance.clone());
            async move {
                let stats: Value = client
                    .get(format!("http://127.0.0.1:{port}/v1/stats"))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                let series = prom
                    .query(
                        &format!("sum by (http_route) (http_server_request_duration_seconds_count{{instance=\"{instance}\"}})"),
                        None,
                    )
                    .await;
                // The observer's own endpoints are kept apart (OwnEndpoints::Apart): in
                // `/v1/stats` as `observer_endpoints`, in /metrics in a family of their own.
                let scraped: BTreeMap<String, f64> = series
                    .into_iter()
                    .map(|(l, v)| (l["http_route"].clone(), v))
                    .collect();
                assert!(
                    !scraped.keys().any(|r| OWN_ENDPOINTS.contains(&r.as_str())),
                    "the observer's endpoints among the application's series: {scraped:?}"
                );
                let own = prom
                    .query(
                        &format!("sum by (http_route) (tower_observe_endpoint_request_duration_seconds_count{{instance=\"{instance}\"}})"),
                        None,
                    )
                    .await;
                assert!(
                    own.iter().any(|(l, _)| l["http_route"] == "/metrics"),
                    "the scrapes themselves are series too: {own:?}"
                );
                let mut in_stats: BTreeMap<String, f64> = BTreeMap::new();
                for r in stats["routes"].as_array()? {
                    *in_stats
                        .entry(r["route"].as_str()?.to_owned())
                        .or_default() += r["requests"].as_f64()?;
                }
                let total = stats["totals"]["requests"].as_f64()?;
                (scraped == in_stats && (scraped.values().sum::<f64>() - total).abs() < 0.5)
                    .then_some((total, in_stats))
            }
        })
        .await;
        eprintln!("{instance}: /v1/stats {stats_total} requests = its series {per_route:?}");
        assert!(
            stats_total as usize >= sent,
            "{instance}: {stats_total} counted, the client saw {sent} in the window alone"
        );
        totals.push(stats_total);
    }
    assert!(
        totals[0] < totals[1] && totals[1] < totals[2],
        "instances swapped? {totals:?}"
    );

    // Errors on the middle instance only: half of its /api requests fail.
    let bad = format!("127.0.0.1:{}", ports[1]);
    let fault = client
        .post(format!(
            "http://127.0.0.1:{}/demo/fault?kind=errors&seconds=120",
            ports[1]
        ))
        .send()
        .await
        .unwrap();
    assert!(fault.status().is_success());
    running.store(true, Ordering::Relaxed);
    let fired_at = Instant::now();
    let firing = within(
        Duration::from_secs(30),
        "the firing notification",
        || async {
            notifications(&hook)
                .into_iter()
                .find(|n| n["status"] == "firing")
        },
    )
    .await;
    eprintln!(
        "firing notification {:?} after the fault",
        fired_at.elapsed()
    );
    assert_eq!(firing["receiver"], "fleet");
    let alerts = firing["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{firing}");
    assert_eq!(alerts[0]["labels"]["alertname"], FLEET_ALERT);
    assert_eq!(alerts[0]["labels"]["instance"], bad.as_str());
    assert_eq!(alerts[0]["labels"]["severity"], "critical");
    let summary = alerts[0]["annotations"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with(&format!("Error rate of {bad} is ")),
        "{summary}"
    );
    let firing_now = prom
        .query(
            &format!("ALERTS{{alertname=\"{FLEET_ALERT}\",alertstate=\"firing\"}}"),
            None,
        )
        .await;
    let instances: Vec<&str> = firing_now
        .iter()
        .map(|(l, _)| l["instance"].as_str())
        .collect();
    assert_eq!(
        instances,
        [bad.as_str()],
        "the rule fires for the faulty instance only"
    );

    // Recovery: the fault ends, the window empties of errors, the resolved notification comes.
    let ended = client
        .post(format!(
            "http://127.0.0.1:{}/demo/fault?seconds=0",
            ports[1]
        ))
        .send()
        .await
        .unwrap();
    assert!(ended.status().is_success());
    let recovered_at = Instant::now();
    let resolved = within(
        Duration::from_secs(40),
        "the resolved notification",
        || async {
            notifications(&hook)
                .into_iter()
                .find(|n| n["status"] == "resolved")
        },
    )
    .await;
    eprintln!(
        "resolved notification {:?} after recovery",
        recovered_at.elapsed()
    );
    assert_eq!(resolved["alerts"][0]["labels"]["instance"], bad.as_str());
    assert_eq!(resolved["alerts"][0]["status"], "resolved");
    running.store(false, Ordering::Relaxed);
    for d in drivers {
        d.abort();
    }

    // Nothing else was ever notified: no other instance, no other alert.
    for n in notifications(&hook) {
        for a in n["alerts"].as_array().unwrap() {
            assert_eq!(a["labels"]["instance"], bad.as_str(), "{n}");
            assert_eq!(a["labels"]["alertname"], FLEET_ALERT, "{n}");
        }
    }
    let errors_elsewhere = log
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.instance != 1 && s.status != 200)
        .count();
    assert_eq!(errors_elsewhere, 0);
    eprintln!("fleet test: {:?}", started.elapsed());
    for p in procs.iter_mut() {
        assert!(p.0.try_wait().unwrap().is_none(), "{} exited early", p.1);
    }
}
