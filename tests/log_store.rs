//! The log store end to end: a real server whose handlers log under nested spans, the
//! capturing layer in a real `tracing-subscriber` registry, a real redb file (reopened to
//! prove durability, and a writer child process killed with SIGKILL), and the routes behind
//! their token. Each test installs its subscriber for its own thread (current-thread runtime),
//! so the tests of this binary do not see each other's records.
#![cfg(all(feature = "log-store", feature = "axum"))]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use serde_json::Value;
use std::future::IntoFuture;
use support::{sample, serve};
use tower_observe::clock::ManualClock;
use tower_observe::log_store::LogStoreOptions;
use tower_observe::trace::TraceOptions;
use tower_observe::Observer;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

const TOKEN: &str = "logs-t0ken";

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tower-observe-log-store-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A handler that logs three known lines under two nested spans.
async fn order(Path(id): Path<u32>) -> &'static str {
    async move {
        tracing::info!(step = 1u64, "loading order");
        {
            let db = tracing::info_span!("db", db.system = "postgresql");
            let _e = db.enter();
            tracing::warn!(rows = u64::from(id), "query done");
        }
        tokio::task::yield_now().await;
        tracing::info!(step = 2u64, "order loaded");
    }
    .instrument(tracing::info_span!("load", order.id = id))
    .await;
    "ok"
}

fn app(observer: &Observer) -> Router {
    Router::new()
        .route("/orders/{id}", get(order))
        .layer(observer.layer().traces(TraceOptions::new()))
        .merge(observer.router())
}

async fn get_json(url: &str) -> (u16, Value) {
    let res = reqwest::get(url).await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Checks one request's view: its three lines in order, its three spans nested.
fn check_view(view: &Value, id: &str, n: u32) {
    assert_eq!(view["request_id"], id, "{view}");
    assert_eq!(view["route"], "/orders/{id}");
    assert_eq!(view["method"], "GET");
    assert_eq!(view["status"], 200);
    assert!(view["duration_ms"].as_f64().unwrap() >= 0.0);
    let logs = view["logs"].as_array().unwrap();
    let messages: Vec<&str> = logs
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        ["loading order", "query done", "order loaded"],
        "{view}"
    );
    assert_eq!(logs[1]["level"], "WARN");
    assert_eq!(logs[1]["fields"]["rows"], u64::from(n));
    let spans = view["spans"].as_array().unwrap();
    let names: Vec<&str> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["HTTP request", "load", "db"], "{view}");
    let id_of = |i: usize| spans[i]["span_id"].as_str().unwrap();
    // The request's span continues the caller's trace: its parent is the remote one.
    assert_eq!(spans[0]["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(spans[1]["parent_span_id"], id_of(0));
    assert_eq!(spans[2]["parent_span_id"], id_of(1));
    assert_eq!(spans[1]["fields"]["order.id"], u64::from(n));
    assert_eq!(spans[0]["start_offset_ms"], 0.0);
    // Each line names the span it was logged in.
    assert_eq!(logs[0]["span_id"], id_of(1));
    assert_eq!(logs[1]["span_id"], id_of(2));
    assert_eq!(view["trace_id"].as_str().unwrap().len(), 32);
}

#[tokio::test(flavor = "current_thread")]
async fn each_request_is_found_by_its_id_with_its_spans_and_lines_before_and_after_a_restart() {
    let dir = temp_dir("restart");
    let path = dir.join("nested/logs.redb");
    let observer = Observer::builder()
        .log_store(LogStoreOptions::file(&path).token(TOKEN))
        .build()
        .unwrap();
    let store = observer.log_store().unwrap();
    assert!(store.is_durable());
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(store.layer()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, app(&observer)).into_future());
    let client = reqwest::Client::new();
    let started = tower_observe::clock::Clock::system().wall();
    let sends = (0..8u32).map(|n| {
        let client = client.clone();
        async move {
            client
                .get(format!("http://{addr}/orders/{n}"))
                .header("x-request-id", format!("req-{n}"))
                .header(
                    "traceparent",
                    format!("00-{:032x}-00f067aa0ba902b7-01", 0xabc0 + n),
                )
                .send()
                .await
                .unwrap()
        }
    });
    for res in futures_util::future::join_all(sends).await {
        assert_eq!(res.status(), 200);
    }
    // The request's span closes when its body ends; let the server get there.
    tokio::time::sleep(Duration::from_millis(100)).await;
    store.flush();

    for n in 0..8u32 {
        let (status, view) =
            get_json(&format!("http://{addr}/v1/requests/req-{n}?token={TOKEN}")).await;
        assert_eq!(status, 200, "{view}");
        check_view(&view, &format!("req-{n}"), n);
        // By trace ID: the same request.
        let trace = format!("{:032x}", 0xabc0 + n);
        let (status, by_trace) =
            get_json(&format!("http://{addr}/v1/requests/{trace}?token={TOKEN}")).await;
        assert_eq!(status, 200);
        assert_eq!(by_trace["trace_id"], trace);
        check_view(&by_trace, &format!("req-{n}"), n);
    }
    let (status, missing) =
        get_json(&format!("http://{addr}/v1/requests/nope?token={TOKEN}")).await;
    assert_eq!(status, 404);
    assert!(missing["error"].is_string());

    // The search: by trace ID, newest first, paged with the cursor.
    let trace = format!("{:032x}", 0xabc3);
    let (status, page) = get_json(&format!(
        "http://{addr}/v1/logs?trace_id={trace}&limit=2&token={TOKEN}"
    ))
    .await;
    assert_eq!(status, 200, "{page}");
    let logs = page["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[0]["message"], "order loaded");
    assert_eq!(logs[0]["request_id"], "req-3");
    assert_eq!(logs[0]["route"], "/orders/{id}");
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, next) = get_json(&format!(
        "http://{addr}/v1/logs?trace_id={trace}&limit=2&cursor={cursor}&token={TOKEN}"
    ))
    .await;
    let rest: Vec<&str> = next["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(rest, ["loading order"]);

    // A time range: everything since the test started, nothing after now.
    let from = started
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (_, range) = get_json(&format!(
        "http://{addr}/v1/logs?from={from}&level=warn&limit=1000&token={TOKEN}"
    ))
    .await;
    let warns = range["logs"].as_array().unwrap();
    assert_eq!(warns.len(), 8, "one warning per request: {range}");
    let later = from + 3600;
    let (_, empty) = get_json(&format!("http://{addr}/v1/logs?from={later}&token={TOKEN}")).await;
    assert_eq!(empty["logs"].as_array().unwrap().len(), 0);
    assert_eq!(empty["next_cursor"], Value::Null);

    // A restart: the same file, a new observer, the same answers. The server and its
    // connections let go of the old store first (a file is opened by one handle at a time).
    drop(_guard);
    drop(store);
    drop(observer);
    drop(client);
    server.abort();
    let mut reopened = None;
    for _ in 0..200 {
        let observer = Observer::builder()
            .log_store(LogStoreOptions::file(&path).token(TOKEN))
            .build()
            .unwrap();
        if observer.log_store().unwrap().is_durable() {
            reopened = Some(observer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let observer = reopened.expect("the file reopens once the old store is gone");
    let store = observer.log_store().unwrap();
    for n in 0..8u32 {
        let view = store.request(&format!("req-{n}")).unwrap().unwrap();
        check_view(
            &serde_json::to_value(&view).unwrap(),
            &format!("req-{n}"),
            n,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "current_thread")]
async fn the_routes_need_the_logs_token_and_refusals_are_counted() {
    // Without a logs token the routes do not exist.
    let open = Observer::builder()
        .log_store(LogStoreOptions::in_memory())
        .build()
        .unwrap();
    let addr = serve(app(&open)).await;
    let res = reqwest::get(format!("http://{addr}/v1/logs"))
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    let observer = Observer::builder()
        .log_store(LogStoreOptions::in_memory().token(TOKEN))
        .reset_token("reset-token")
        .build()
        .unwrap();
    let addr = serve(app(&observer)).await;
    let client = reqwest::Client::new();
    for path in ["/v1/logs", "/v1/logs/export", "/v1/requests/req-1"] {
        let res = client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{path}");
        let res = client
            .get(format!("http://{addr}{path}"))
            .bearer_auth("reset-token")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "the reset token does not open {path}");
        let res = client
            .get(format!("http://{addr}{path}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_ne!(res.status().as_u16(), 401);
        assert_ne!(res.status().as_u16(), 403);
    }
    let metrics = observer.render_metrics().unwrap();
    let rejected = |reason| {
        sample(
            &metrics,
            "tower_observe_log_store_rejected_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(rejected("missing"), Some(3.0));
    assert_eq!(rejected("invalid"), Some(3.0));

    // Malformed or oversized queries: a 400 naming the limit.
    for (query, names) in [
        ("limit=1001", "1000"),
        ("from=yesterday", "RFC 3339"),
        ("trace_id=xyz", "32"),
        (&*format!("q={}", "a".repeat(300)), "256"),
    ] {
        let res = client
            .get(format!("http://{addr}/v1/logs?{query}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{query}");
        let body: Value = res.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains(names), "{body}");
    }
}

/// The ECS subset: name → type.
fn ecs_fields() -> BTreeMap<String, String> {
    include_str!("data/ecs-8.11.0-fields.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, ty) = l.split_once(' ').unwrap();
            (name.to_owned(), ty.trim().to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn a_redacted_secret_is_never_stored_queried_or_exported_and_the_export_is_ecs() {
    let dir = temp_dir("secrets");
    let path = dir.join("logs.redb");
    let observer = Observer::builder()
        .log_store(
            LogStoreOptions::file(&path)
                .token(TOKEN)
                .service_name("shop"),
        )
        .build()
        .unwrap();
    let store = observer.log_store().unwrap();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(store.layer()));
    let app = Router::new()
        .route(
            "/pay",
            get(|| async {
                tracing::info!(
                    authorization = "Bearer s3cr3t-bearer",
                    url.full = "https://psp.test/charge?amount=3&access_token=s3cr3t-token",
                    "charging"
                );
                tracing::error!(
                    error.message = "card declined",
                    http.response.status_code = 402u64,
                    "payment failed"
                );
                "paid"
            }),
        )
        .layer(observer.layer().traces(TraceOptions::new()))
        .merge(observer.router());
    let addr = serve(app).await;
    reqwest::Client::new()
        .get(format!("http://{addr}/pay"))
        .header("x-request-id", "pay-1")
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    store.flush();

    let (status, view) = get_json(&format!("http://{addr}/v1/requests/pay-1?token={TOKEN}")).await;
    assert_eq!(status, 200);
    let text = view.to_string();
    assert!(!text.contains("s3cr3t"), "{text}");
    assert!(text.contains("[REDACTED]"), "{text}");
    let search = reqwest::get(format!("http://{addr}/v1/logs?q=charging&token={TOKEN}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        search.contains("charging") && !search.contains("s3cr3t"),
        "{search}"
    );
    let res = reqwest::get(format!(
        "http://{addr}/v1/logs/export?request_id=pay-1&token={TOKEN}"
    ))
    .await
    .unwrap();
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    let export = res.text().await.unwrap();
    assert!(!export.contains("s3cr3t"), "{export}");
    let lines: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{export}");

    // The line without the made-up `authorization` field is ECS through and through.
    let ecs = ecs_fields();
    let failed = lines
        .iter()
        .find(|l| l["message"] == "payment failed")
        .unwrap();
    for (name, value) in failed.as_object().unwrap() {
        if name.starts_with("labels.") {
            assert!(value.is_string(), "{name} is a label: {failed}");
            continue;
        }
        let ty = ecs
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not an ECS field: {failed}"));
        let ok = match ty.as_str() {
            "long" => value.is_u64() || value.is_i64(),
            _ => value.is_string(),
        };
        assert!(ok, "{name} must be an ECS {ty}: {failed}");
    }
    assert_eq!(failed["http.request.id"], "pay-1");
    assert_eq!(failed["log.level"], "error");
    assert_eq!(failed["service.name"], "shop");
    assert_eq!(failed["labels.http_route"], "/pay");
    assert_eq!(failed["trace.id"].as_str().unwrap().len(), 32);
    assert_eq!(failed["span.id"].as_str().unwrap().len(), 16);

    // One audit line per export, with the selection and the lines returned, never the token
    // (the store keeps it too).
    store.flush();
    let audit = store.request("pay-1").unwrap();
    assert!(audit.is_some());
    let (_, page) = get_json(&format!(
        "http://{addr}/v1/logs?q=log%20export&token={TOKEN}"
    ))
    .await;
    let audits = page["logs"].as_array().unwrap();
    assert_eq!(audits.len(), 1, "{page}");
    assert_eq!(audits[0]["target"], "tower_observe::log_store");
    assert_eq!(audits[0]["fields"]["labels.selection"], "request_id=pay-1");
    assert_eq!(audits[0]["fields"]["labels.lines"], 2);
    assert!(!page.to_string().contains(TOKEN), "{page}");

    // The file itself never saw the secret.
    drop(_guard);
    drop(store);
    drop(observer);
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        !bytes.windows(6).any(|w| w == b"s3cr3t"),
        "the secret reached the file"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn log_n(store: &tower_observe::log_store::LogStoreHandle, from: u32, to: u32) {
    let subscriber = tracing_subscriber::registry().with(store.layer());
    tracing::subscriber::with_default(subscriber, || {
        for n in from..to {
            let span = tracing::info_span!("job", request_id = format!("job-{n}").as_str());
            let _e = span.enter();
            tracing::info!(n = u64::from(n), "working");
        }
    });
    store.flush();
}

#[test]
fn retention_by_age_on_the_observers_clock_and_by_size_oldest_first() {
    let clock = ManualClock::new();
    let observer = Observer::builder()
        .clock(clock.clone())
        .log_store(LogStoreOptions::in_memory())
        .build()
        .unwrap();
    let store = observer.log_store().unwrap();
    log_n(&store, 0, 10);
    assert_eq!(store.storage().unwrap().records, 20, "10 events, 10 spans");
    clock.advance(Duration::from_secs(13 * 24 * 3600));
    log_n(&store, 10, 12);
    assert_eq!(
        store.storage().unwrap().records,
        24,
        "nothing is 14 days old yet"
    );
    clock.advance(Duration::from_secs(2 * 24 * 3600));
    store.flush();
    assert_eq!(
        store.storage().unwrap().records,
        4,
        "the first ten are past 14 days"
    );
    assert!(store.request("job-3").unwrap().is_none());
    assert!(store.request("job-11").unwrap().is_some());

    let observer = Observer::builder()
        .log_store(LogStoreOptions::in_memory().max_bytes(20_000))
        .build()
        .unwrap();
    let store = observer.log_store().unwrap();
    log_n(&store, 0, 1000);
    let size = store.storage().unwrap();
    assert!(size.bytes <= 20_000, "{size:?}");
    assert!(size.records > 50, "{size:?}");
    assert!(store.request("job-0").unwrap().is_none(), "the oldest went");
    assert!(
        store.request("job-999").unwrap().is_some(),
        "the newest stayed"
    );
}

#[test]
fn a_full_buffer_drops_and_counts_instead_of_waiting() {
    let observer = Observer::builder()
        .log_store(
            LogStoreOptions::in_memory()
                .buffer(8)
                .flush_interval(Duration::from_secs(3600)),
        )
        .build()
        .unwrap();
    let store = observer.log_store().unwrap();
    let subscriber = tracing_subscriber::registry().with(store.layer());
    const BURST: u64 = 10_000;
    tracing::subscriber::with_default(subscriber, || {
        for n in 0..BURST {
            tracing::info!(n, "burst");
        }
    });
    // Eight fit in the buffer; the writer, woken as it fills, takes them a transaction at a
    // time and cannot keep pace with a tight loop: the rest are dropped, each counted.
    assert!(store.dropped() > 0, "{}", store.dropped());
    let metrics = observer.render_metrics().unwrap();
    assert_eq!(
        sample(&metrics, "tower_observe_log_store_dropped_total", &[]),
        Some(store.dropped() as f64)
    );
    store.flush();
    assert_eq!(store.storage().unwrap().records, BURST - store.dropped());
    let stats = serde_json::to_value(observer.stats()).unwrap();
    let section = &stats["log_store"];
    assert_eq!(section["durable"], false);
    assert_eq!(section["records"], BURST - store.dropped());
    assert_eq!(section["dropped"], store.dropped());
    assert_eq!(section["write_errors"], 0);
    assert!(section["bytes"].as_u64().unwrap() > 0);
}

#[test]
fn the_writer_drains_the_buffer_as_it_fills_not_only_each_interval() {
    // An hour between ticks: only the wake-ups from the capture can store these.
    let observer = Observer::builder()
        .log_store(
            LogStoreOptions::in_memory()
                .buffer(256)
                .flush_interval(Duration::from_secs(3600)),
        )
        .build()
        .unwrap();
    let store = observer.log_store().unwrap();
    let subscriber = tracing_subscriber::registry().with(store.layer());
    // Five bursts of 200, each more than the writer's wake-up step (64 records) and less
    // than the buffer; each is stored before the next starts.
    let mut sent = 0u64;
    tracing::subscriber::with_default(subscriber, || {
        for _ in 0..5 {
            for n in 0..200u64 {
                tracing::info!(n, "steady");
            }
            sent += 200;
            // What is left below the next wake-up point waits for the interval: at most one
            // step's worth.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while store.storage().unwrap().records + 64 < sent {
                assert!(
                    std::time::Instant::now() < deadline,
                    "stored {} of {sent}",
                    store.storage().unwrap().records
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    });
    assert_eq!(store.dropped(), 0);
    store.flush();
    assert_eq!(store.storage().unwrap().records, sent);
}

#[test]
fn a_failing_disk_degrades_to_memory() {
    // A directory where the file should be: it cannot be opened.
    let dir = temp_dir("disk");
    std::fs::create_dir_all(dir.join("logs.redb")).unwrap();
    let observer = Observer::builder()
        .log_store(LogStoreOptions::file(dir.join("logs.redb")))
        .build()
        .unwrap();
    let store = observer.log_store().unwrap();
    assert!(!store.is_durable());
    assert_eq!(store.write_errors(), 1);
    let metrics = observer.render_metrics().unwrap();
    assert_eq!(
        sample(&metrics, "tower_observe_log_store_write_errors_total", &[]),
        Some(1.0)
    );
    log_n(&store, 0, 3);
    assert!(store.request("job-1").unwrap().is_some(), "kept in memory");

    // Under a file: the parent directories cannot be made.
    let file = dir.join("plain");
    std::fs::write(&file, b"not a directory").unwrap();
    let observer = Observer::builder()
        .log_store(LogStoreOptions::file(file.join("sub/logs.redb")))
        .build()
        .unwrap();
    let store = observer.log_store().unwrap();
    assert!(!store.is_durable());
    log_n(&store, 0, 3);
    assert!(store.request("job-2").unwrap().is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The child half of the `kill -9` test: logs numbered events forever, flushing every 20,
/// and says on stdout which numbers a returned flush has made durable.
fn writer_child(path: &str) -> ! {
    use std::io::Write as _;
    let observer = Observer::builder()
        .log_store(LogStoreOptions::file(path).flush_interval(Duration::from_millis(20)))
        .build()
        .unwrap();
    let store = observer.log_store().unwrap();
    let subscriber = tracing_subscriber::registry().with(store.layer());
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let mut out = std::io::stdout();
    for n in 0u64.. {
        let span = tracing::info_span!("job", request_id = format!("kill-{n}").as_str());
        let _e = span.enter();
        tracing::info!(n, "working");
        drop(_e);
        drop(span);
        if n % 20 == 19 {
            store.flush();
            let _ = writeln!(out, "durable {n}");
            let _ = out.flush();
        }
    }
    unreachable!()
}

#[test]
fn kill_9_loses_at_most_one_flush_interval_and_never_corrupts_the_store() {
    if let Ok(path) = std::env::var("TOWER_OBSERVE_LOG_STORE_CHILD") {
        writer_child(&path);
    }
    use std::io::BufRead as _;
    let dir = temp_dir("kill");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("logs.redb");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kill_9_loses_at_most_one_flush_interval_and_never_corrupts_the_store",
            "--nocapture",
        ])
        .env("TOWER_OBSERVE_LOG_STORE_CHILD", &path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut durable = None;
    while let Some(Ok(line)) = lines.next() {
        if let Some(n) = line.strip_prefix("durable ") {
            let n: u64 = n.parse().unwrap();
            durable = Some(n);
            if n >= 2000 {
                break;
            }
        }
    }
    let durable = durable.expect("the child wrote and flushed");
    // SIGKILL: no destructor, no last flush.
    #[allow(unsafe_code)]
    let killed = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    assert_eq!(killed, 0);
    child.wait().unwrap();

    let observer = Observer::builder()
        .log_store(LogStoreOptions::file(&path))
        .build()
        .unwrap();
    let store = observer.log_store().unwrap();
    assert!(store.is_durable(), "the file opens after the kill");
    for n in 0..=durable {
        let view = store
            .request(&format!("kill-{n}"))
            .unwrap()
            .unwrap_or_else(|| panic!("event {n} was flushed before the kill, and is lost"));
        assert_eq!(view.logs.len(), 1);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "current_thread")]
async fn an_unsampled_request_keeps_its_lines_with_their_ids_but_not_its_spans_unless_asked() {
    for keep_spans in [false, true] {
        let observer = Observer::builder()
            .log_store(
                LogStoreOptions::in_memory()
                    .token(TOKEN)
                    .unsampled_spans(keep_spans),
            )
            .build()
            .unwrap();
        let store = observer.log_store().unwrap();
        let _guard =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(store.layer()));
        let addr = serve(app(&observer)).await;
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let res = reqwest::Client::new()
            .get(format!("http://{addr}/orders/5"))
            .header("x-request-id", "quiet-1")
            // Flags 00: the caller did not sample this trace.
            .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-00"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
        store.flush();
        let view = store
            .request("quiet-1")
            .unwrap()
            .expect("its lines are stored");
        let messages: Vec<&str> = view.logs.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(messages, ["loading order", "query done", "order loaded"]);
        for line in &view.logs {
            assert_eq!(line.request_id.as_deref(), Some("quiet-1"));
            assert_eq!(line.trace_id.as_deref(), Some(trace));
        }
        let names: Vec<&str> = view.spans.iter().map(|s| s.name.as_str()).collect();
        if keep_spans {
            assert!(
                names.contains(&"load") && names.contains(&"db"),
                "{names:?}"
            );
        } else {
            assert!(
                !names.contains(&"load") && !names.contains(&"db"),
                "{names:?}"
            );
        }
    }
}
