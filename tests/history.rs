//! History end to end: rollups against the raw data over days of simulated traffic (a manual
//! clock, requests served in process), retention, restart, `kill -9` during writes, CSV,
//! limits.
#![cfg(all(feature = "axum", feature = "history"))]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use tower_observe::clock::ManualClock;
use tower_observe::history::{HistoryOptions, Resolution};
use tower_observe::stats::LATENCY_RELATIVE_ERROR;
use tower_observe::Observer;

/// `/work?us=N&fail=0|1`: takes exactly N µs of manual time.
fn app(observer: &Observer, clock: &ManualClock) -> Router {
    let clock = clock.clone();
    Router::new()
        .route(
            "/work",
            get(move |Query(q): Query<BTreeMap<String, u64>>| {
                let clock = clock.clone();
                async move {
                    clock.advance(Duration::from_micros(q["us"]));
                    if q.get("fail") == Some(&1) {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        )
        .merge(observer.router())
        .layer(observer.layer())
}

async fn call(app: &Router, uri: &str) -> (StatusCode, String) {
    let res = app
        .clone()
        .oneshot(http::Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn unix(observer: &Observer) -> u64 {
    observer
        .clock()
        .wall()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One raw request: end time (Unix s), duration (µs), failed.
type Raw = (u64, u64, bool);

/// Three days: every 10 minutes a burst of 12 requests with spread latencies, 1 in 6 failing.
async fn simulate(app: &Router, observer: &Observer, clock: &ManualClock) -> Vec<Raw> {
    let mut raw = Vec::new();
    for step in 0..(3 * 24 * 6) {
        for i in 0..12u64 {
            let us = 200 + (step * 37 + i * 911) % 40_000;
            let fail = (step + i) % 6 == 0;
            call(app, &format!("/work?us={us}&fail={}", u8::from(fail))).await;
            raw.push((unix(observer), us, fail));
        }
        clock.advance(Duration::from_secs(600));
    }
    raw
}

fn quantile(sorted: &[u64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1] as f64
}

async fn query(app: &Router, q: &str) -> Value {
    let (status, body) = call(app, &format!("/v1/stats/history?{q}")).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn rollups_agree_with_raw_data_and_retention_purges() {
    let clock = ManualClock::new();
    let observer = Observer::builder()
        .clock(clock.clone())
        .history(
            HistoryOptions::in_memory()
                .retention(Resolution::Minute, Duration::from_secs(24 * 3600)),
        )
        .build()
        .unwrap();
    let app = app(&observer, &clock);
    let start = unix(&observer);
    let raw = simulate(&app, &observer, &clock).await;
    observer.history().unwrap().flush();
    let end = unix(&observer) + 1;

    for step in [
        Resolution::Minute,
        Resolution::FiveMinutes,
        Resolution::Hour,
        Resolution::Day,
    ] {
        let width = step.seconds();
        // The minute buckets older than the retention are gone.
        let keep_from = if step == Resolution::Minute {
            end - 24 * 3600
        } else {
            0
        };
        let mut expected: BTreeMap<u64, Vec<(u64, bool)>> = BTreeMap::new();
        for &(at, us, fail) in &raw {
            let bucket = at - at % 60;
            if bucket >= keep_from {
                expected
                    .entry(at - at % width)
                    .or_default()
                    .push((us, fail));
            }
        }
        let body = query(
            &app,
            &format!("from={start}&to={end}&step={}&route=/work", step.as_str()),
        )
        .await;
        let points = body["points"].as_array().unwrap();
        assert_eq!(points.len(), expected.len(), "{step:?}");
        for (point, (bucket, values)) in points.iter().zip(&expected) {
            assert_eq!(point["unix"].as_u64(), Some(*bucket), "{step:?}");
            assert_eq!(point["requests"].as_u64(), Some(values.len() as u64));
            let errors = values.iter().filter(|v| v.1).count() as u64;
            assert_eq!(point["errors"].as_u64(), Some(errors));
            let mut us: Vec<u64> = values.iter().map(|v| v.0).collect();
            us.sort_unstable();
            let latency = &point["latency_ms"];
            let ms = |v: u64| v as f64 / 1000.0;
            assert!((latency["min"].as_f64().unwrap() - ms(us[0])).abs() < 1e-9);
            assert!((latency["max"].as_f64().unwrap() - ms(*us.last().unwrap())).abs() < 1e-9);
            for (key, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
                let truth = quantile(&us, q) / 1000.0;
                let got = latency[key].as_f64().unwrap();
                assert!(
                    (got - truth).abs() <= truth * LATENCY_RELATIVE_ERROR + 1e-9,
                    "{step:?} {key}: {got} vs {truth}"
                );
            }
        }
    }

    // Retention: a query over the first day at 1m finds nothing, at 5m everything.
    let first_day = format!("from={start}&to={}", start + 20 * 3600);
    let minute = query(&app, &format!("{first_day}&step=1m")).await;
    assert!(minute["points"].as_array().unwrap().is_empty());
    let five = query(&app, &format!("{first_day}&step=5m")).await;
    assert!(!five["points"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn csv_round_trips_filters_and_limits() {
    let clock = ManualClock::new();
    let observer = Observer::builder()
        .clock(clock.clone())
        .history(HistoryOptions::in_memory())
        .build()
        .unwrap();
    let app = app(&observer, &clock);
    for i in 0..30u64 {
        call(
            &app,
            &format!("/work?us={}&fail={}", 1000 + i * 100, u8::from(i % 3 == 0)),
        )
        .await;
        clock.advance(Duration::from_secs(20));
    }
    // Not flushed: the pending minutes are part of the answer too.
    let json = query(&app, "route=/work").await;
    let (status, csv) = call(&app, "/v1/stats/history?route=/work&format=csv").await;
    assert_eq!(status, 200);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "time,unix,requests,errors,error_rate,min_ms,avg_ms,p50_ms,p95_ms,p99_ms,max_ms,aborted"
        )
    );
    let points = json["points"].as_array().unwrap();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), points.len());
    for (row, point) in rows.iter().zip(points) {
        assert_eq!(row[0], point["time"].as_str().unwrap());
        assert_eq!(
            row[2].parse::<u64>().unwrap(),
            point["requests"].as_u64().unwrap()
        );
        assert_eq!(
            row[3].parse::<u64>().unwrap(),
            point["errors"].as_u64().unwrap()
        );
        let p95: f64 = row[8].parse().unwrap();
        assert_eq!(p95, point["latency_ms"]["p95"].as_f64().unwrap());
        assert_eq!(
            row[11].parse::<u64>().unwrap(),
            point["aborted"].as_u64().unwrap()
        );
    }
    let total: u64 = points.iter().map(|p| p["requests"].as_u64().unwrap()).sum();
    assert_eq!(total, 30);
    // Filters: only the failures.
    let failed = query(&app, "route=/work&status_class=5xx").await;
    let failed: u64 = failed["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(failed, 10);
    assert!(query(&app, "route=/nope").await["points"]
        .as_array()
        .unwrap()
        .is_empty());

    // The plain endpoints service (hyper without axum) serves it too, CSV on `Accept`.
    let res = observer
        .endpoints()
        .oneshot(
            http::Request::get("/v1/stats/history?route=/work")
                .header("accept", "text/csv")
                .body(())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/csv; charset=utf-8");

    for (q, needle) in [
        ("from=0&step=1m", "the limit is 10000"),
        ("step=2m", "expected 1m, 5m, 1h or 1d"),
        ("from=yesterday", "RFC 3339"),
        ("colour=red", "unknown parameter"),
    ] {
        let (status, body) = call(&app, &format!("/v1/stats/history?{q}")).await;
        assert_eq!(status, 400, "{q}: {body}");
        assert!(body.contains(needle), "{q}: {body}");
    }
}

#[tokio::test]
async fn history_survives_a_restart() {
    let dir = tempdir();
    let path = dir.join("history.redb");
    let clock = ManualClock::new();
    let first = Observer::builder()
        .clock(clock.clone())
        .history(HistoryOptions::file(&path))
        .build()
        .unwrap();
    assert!(first.history().unwrap().is_durable());
    let app1 = app(&first, &clock);
    for _ in 0..5 {
        call(&app1, "/work?us=1500").await;
        clock.advance(Duration::from_secs(90));
    }
    // No explicit flush: dropping the observer writes what is pending.
    let range = format!("step=5m&route=/work&from={}", unix(&first) - 3600);
    let before = query(&app1, &range).await;
    drop(app1);
    drop(first);

    let second = Observer::builder()
        .clock(clock.clone())
        .history(HistoryOptions::file(&path))
        .build()
        .unwrap();
    let app2 = app(&second, &clock);
    let after = query(&app2, &range).await;
    assert_eq!(before["points"], after["points"]);
    let total: u64 = after["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 5);
}

#[test]
fn an_unusable_file_degrades_to_memory() {
    // A directory where the file should be (missing parent directories would be created).
    let dir = tempdir();
    let observer = Observer::builder()
        .history(HistoryOptions::file(&dir))
        .build()
        .unwrap();
    let history = observer.history().unwrap();
    assert!(!history.is_durable());
    assert!(history.not_durable_reason().is_some());
    history.flush();
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tower-observe-history-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const CHILD_ENV: &str = "TOWER_OBSERVE_HISTORY_CHILD";

/// In the child process only: records and flushes until killed.
#[test]
fn kill9_child_writer() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return; // the parent test runs this binary again with the variable set
    };
    // The parent's previous reader may still hold the file's lock for a moment (its last
    // flush runs as its history is dropped): wait for the file rather than fall back to memory.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let observer = loop {
        let observer = Observer::builder()
            .history(HistoryOptions::file(&path).flush_interval(Duration::from_millis(10)))
            .build()
            .unwrap();
        if observer.history().unwrap().is_durable() || std::time::Instant::now() > deadline {
            break observer;
        }
        drop(observer);
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        observer.history().unwrap().is_durable(),
        "the child opens the file"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let clock = ManualClock::new();
    let app = app(&observer, &clock);
    rt.block_on(async {
        for _ in 0..50 {
            call(&app, "/work?us=700").await;
        }
        // Tells the parent that requests are on disk, so the kill lands among writes that
        // carry data (a loaded machine can start this process slowly).
        observer.history().unwrap().flush();
        println!("{CHILD_READY}");
        loop {
            for _ in 0..50 {
                call(&app, "/work?us=700").await;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

const CHILD_READY: &str = "history child: first requests flushed";

#[test]
fn kill_9_during_writes_leaves_a_readable_store() {
    let dir = tempdir();
    let path = dir.join("history.redb");
    let mut last_total = 0;
    for round in 0..3 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "kill9_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (ready, readied) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                if line.is_ok_and(|l| l.contains(CHILD_READY)) {
                    let _ = ready.send(());
                }
            }
        });
        if readied.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            panic!("round {round}: the child wrote nothing within 60 s");
        }
        // Kill it in the middle of its writes: once the file has changed a few times more.
        let modified = || std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let mut changes = 0;
        let mut last = modified();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while changes < 5 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(15));
            let now = modified();
            if now != last {
                changes += 1;
                last = now;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let observer = Observer::builder()
            .history(HistoryOptions::file(&path))
            .build()
            .unwrap();
        let history = observer.history().unwrap();
        assert!(history.is_durable(), "round {round}: the store opens");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let body = rt.block_on(async {
            let from = unix(&observer) - 100 * 86_400;
            let uri = format!("/v1/stats/history?from={from}&step=1d");
            let (status, body) = call(&observer.router(), &uri).await;
            assert_eq!(status, 200, "{body}");
            serde_json::from_str::<Value>(&body).unwrap()
        });
        let total: u64 = body["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["requests"].as_u64().unwrap())
            .sum();
        assert!(
            total > last_total,
            "round {round}: history grew ({last_total} → {total})"
        );
        last_total = total;
        drop(observer);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The wall clock steps (NTP, an operator) while the monotonic clock runs on: history follows
/// the wall clock, and a step back puts requests into the buckets their times name, merged
/// with what is there — no bucket is written twice over, no request is lost.
#[tokio::test]
async fn wall_clock_steps_keep_history_buckets_whole() {
    let clock = ManualClock::new();
    let path =
        std::env::temp_dir().join(format!("tower-observe-steps-{}.redb", std::process::id()));
    let observer = Observer::builder()
        .clock(clock.clone())
        .history(HistoryOptions::file(&path))
        .build()
        .unwrap();
    let app = app(&observer, &clock);
    let history = observer.history().unwrap();
    let minute_of = |observer: &Observer| unix(observer) / 60 * 60;
    // Minute A: 5 requests, written.
    let a = minute_of(&observer);
    for _ in 0..5 {
        call(&app, "/work?us=100").await;
    }
    history.flush();
    // One hour ahead: minute B, 7 requests, written.
    clock.step_wall_forward(Duration::from_secs(3600));
    let b = minute_of(&observer);
    assert_eq!(b - a, 3600);
    for _ in 0..7 {
        call(&app, "/work?us=100&fail=1").await;
    }
    history.flush();
    // Back the same hour: minute A again, 3 more requests.
    clock.step_wall_back(Duration::from_secs(3600));
    assert_eq!(minute_of(&observer), a);
    for _ in 0..3 {
        call(&app, "/work?us=100").await;
    }
    history.flush();
    let json = query(
        &app,
        &format!("from={}&to={}&step=1m&route=/work", a - 60, b + 120),
    )
    .await;
    let points: BTreeMap<u64, (u64, u64)> = json["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["unix"].as_u64().unwrap(),
                (
                    p["requests"].as_u64().unwrap(),
                    p["errors"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(points.get(&a), Some(&(8, 0)), "{json}");
    assert_eq!(points.get(&b), Some(&(7, 7)), "{json}");
    assert_eq!(points.values().map(|(r, _)| r).sum::<u64>(), 15, "{json}");
    // The 1 h rollups add up the same.
    let json = query(
        &app,
        &format!("from={}&to={}&step=1h&route=/work", a - 3600, b + 3600),
    )
    .await;
    let total: u64 = json["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 15);
    drop((app, history, observer));
    let _ = std::fs::remove_file(&path);
}
