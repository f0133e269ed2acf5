//! Process and runtime metrics (feature `process`): units checked against a thread that burns
//! one CPU, value ranges on `/metrics`, the `/v1/stats` and `/health` sections, the tokio
//! runtime's workers, and the sampler thread's lifetime.
#![cfg(feature = "process")]

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use tower_observe::endpoints::ObserveEndpoints;
use tower_observe::Observer;

/// The tests measure the whole process's CPU and threads: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

async fn get(observer: &Observer, path: &str) -> (u16, String) {
    let req = http::Request::get(path).body(()).unwrap();
    let res = ObserveEndpoints::new(observer).oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// The value of the unlabelled sample `name`, if present.
fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Spends CPU until `stop` is set.
fn burn(stop: &AtomicBool) {
    let mut x = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for i in 0..10_000u64 {
            x = black_box(x.wrapping_mul(31).wrapping_add(i));
        }
    }
    black_box(x);
}

/// CPU seconds of one thread of this process (Linux: `/proc/self/task/<tid>/stat`, in
/// clock ticks of 1/100 s).
#[cfg(target_os = "linux")]
fn thread_cpu_seconds(tid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

#[test]
fn one_busy_thread_reads_as_about_one_core() {
    let _serial = serial();
    let observer = Observer::builder().process_metrics().build().unwrap();
    let process = observer.process_metrics().unwrap();
    // Only this test's samples close windows.
    process.stop_sampler();

    let stop = Arc::new(AtomicBool::new(false));
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let burner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let tid = std::fs::read_link("/proc/thread-self")
                .ok()
                .and_then(|p| Some(p.file_name()?.to_str()?.to_owned()));
            let _ = tid_tx.send(tid);
            burn(&stop);
        })
    };
    let tid = tid_rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let before = process.sample();
    #[cfg(target_os = "linux")]
    let burner_before = tid.as_deref().and_then(thread_cpu_seconds);
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    let after = process.sample();
    let wall = started.elapsed().as_secs_f64();
    #[cfg(target_os = "linux")]
    let burner_after = tid.as_deref().and_then(thread_cpu_seconds);
    stop.store(true, Ordering::Relaxed);
    burner.join().unwrap();
    let _ = tid;

    let cpu_before = before.cpu_seconds_total.expect("CPU time is read");
    let cpu_after = after.cpu_seconds_total.expect("CPU time is read");
    assert!(cpu_after > cpu_before, "{cpu_before} → {cpu_after}");
    let cores_used = after.cpu_cores_used.expect("a window closed");
    // The same figure as Prometheus' rate() over the window.
    let rate = (cpu_after - cpu_before) / wall;
    assert!((cores_used - rate).abs() < 0.1, "{cores_used} vs {rate}");

    // The burner's own share of a CPU: on a busy shared machine it may get less than one.
    #[allow(unused_mut)]
    let mut burner_cores: Option<f64> = None;
    #[cfg(target_os = "linux")]
    if let (Some(b), Some(a)) = (burner_before, burner_after) {
        burner_cores = Some((a - b) / wall);
    }
    match burner_cores {
        Some(burner) if burner < 0.6 => {
            eprintln!("the burner got {burner:.2} of a CPU: the machine is busy");
            assert!(
                cores_used >= burner - 0.1 && cores_used <= burner + 0.6,
                "process {cores_used:.3} cores, burner {burner:.3}"
            );
        }
        _ => assert!(
            (0.6..=1.6).contains(&cores_used),
            "one busy thread read as {cores_used:.3} cores (burner {burner_cores:?})"
        ),
    }

    let cores = after.available_cores.expect("available CPUs are read") as f64;
    assert!(cores >= 1.0);
    let utilization = after.cpu_utilization.expect("a window closed");
    assert!((0.0..=1.0).contains(&utilization));
    assert!(
        (utilization - (cores_used / cores).min(1.0)).abs() < 1e-9,
        "utilization {utilization} = {cores_used} cores / {cores}"
    );

    // A scrape right after (within a second) reports the same window.
    let text = observer.render_metrics().unwrap();
    let exported = value(&text, "process_cpu_utilization_ratio").unwrap();
    assert!(
        (exported - utilization).abs() < 1e-9,
        "{exported} vs {utilization}"
    );
    assert_eq!(value(&text, "process_cpu_available_cores"), Some(cores));
}

#[test]
fn metrics_carry_every_process_figure_in_range() {
    let _serial = serial();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(metrics_in_range());
}

async fn metrics_in_range() {
    // Built inside a (current-thread) runtime: that runtime is watched.
    let observer = Observer::builder().process_metrics().build().unwrap();

    let (status, text) = get(&observer, "/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "process_cpu_seconds_total",
        "process_cpu_available_cores",
        "tokio_workers",
        "tokio_alive_tasks",
        "tokio_global_queue_depth",
    ] {
        assert!(text.contains(&format!("# HELP {name} ")), "{name}:\n{text}");
    }
    assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"));
    assert!(text.contains("# TYPE process_resident_memory_bytes gauge\n") || !cfg!(unix));
    assert_eq!(value(&text, "tokio_workers"), Some(1.0));
    assert!(value(&text, "tokio_alive_tasks").is_some());
    assert!(value(&text, "tokio_global_queue_depth").is_some());
    #[cfg(target_has_atomic = "64")]
    assert!(value(&text, "tokio_busy_duration_seconds_total").is_some_and(|v| v >= 0.0));
    let cores = value(&text, "process_cpu_available_cores").unwrap();
    assert!(cores >= 1.0 && cores.fract() == 0.0, "{cores}");

    #[cfg(target_os = "linux")]
    {
        let rss = value(&text, "process_resident_memory_bytes").unwrap();
        assert!(rss > 1e6 && rss < 100e9, "rss {rss}");
        let vms = value(&text, "process_virtual_memory_bytes").unwrap();
        assert!(vms >= rss, "vms {vms} < rss {rss}");
        if let Some(max) = value(&text, "process_virtual_memory_max_bytes") {
            assert!(max >= vms, "limit {max} below the size {vms}");
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = value(&text, "process_start_time_seconds").unwrap();
        assert!(
            start <= now + 1.0 && start > now - 86_400.0,
            "start {start}, now {now}"
        );
        let fds = value(&text, "process_open_fds").unwrap();
        assert!(fds >= 3.0, "{fds}");
        if let Some(max) = value(&text, "process_max_fds") {
            assert!(max >= fds, "{fds} open of {max}");
        }
        let threads = value(&text, "process_threads").unwrap();
        assert!((1.0..100_000.0).contains(&threads), "{threads}");

        // CPU seconds: fractional seconds, and rising with work.
        let cpu = value(&text, "process_cpu_seconds_total").unwrap();
        // (A fresh process may not have used a whole clock tick yet.)
        assert!((0.0..1e6).contains(&cpu), "{cpu}");
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| burn(&stop));
            std::thread::sleep(Duration::from_millis(200));
            stop.store(true, Ordering::Relaxed);
        });
        let (_, later) = get(&observer, "/metrics").await;
        let cpu_later = value(&later, "process_cpu_seconds_total").unwrap();
        assert!(cpu_later > cpu, "{cpu} → {cpu_later}");
    }

    // `/v1/stats` and `/health` have their `process` sections.
    let (_, stats) = get(&observer, "/v1/stats").await;
    let stats: Value = serde_json::from_str(&stats).unwrap();
    let process = &stats["process"];
    assert!(process["available_cores"].as_u64() >= Some(1), "{process}");
    assert_eq!(process["runtime"]["workers"], 1);
    #[cfg(target_os = "linux")]
    {
        assert!(process["resident_memory_bytes"].as_u64() > Some(1 << 20));
        assert!(process["start_time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')));
        assert!(process["threads"].as_u64() >= Some(1));
    }
    let (_, health) = get(&observer, "/health").await;
    let health: Value = serde_json::from_str(&health).unwrap();
    let section = &health["process"];
    assert!(section.get("cpu_utilization").is_some(), "{health}");
    #[cfg(target_os = "linux")]
    assert!(
        section["resident_memory_bytes"].as_u64() > Some(1 << 20),
        "{health}"
    );
}

#[test]
fn a_multi_thread_runtime_reports_its_workers() {
    let _serial = serial();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .enable_all()
        .build()
        .unwrap();
    let observer = Observer::builder()
        .tokio_runtime(runtime.handle().clone())
        .build()
        .unwrap();
    let process = observer.process_metrics().unwrap();

    let (release, wait) = tokio::sync::watch::channel(false);
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let mut wait = wait.clone();
            runtime.spawn(async move {
                let _ = wait.wait_for(|go| *go).await;
            })
        })
        .collect();

    let stats = process.sample();
    let rt = stats.runtime.expect("the runtime is watched");
    assert_eq!(rt.workers, 3);
    assert!(rt.alive_tasks >= 5, "{rt:?}");
    if let Some(ratio) = rt.busy_ratio {
        assert!((0.0..=1.0).contains(&ratio), "{ratio}");
    }
    let text = observer.render_metrics().unwrap();
    assert_eq!(value(&text, "tokio_workers"), Some(3.0));
    assert!(
        value(&text, "tokio_alive_tasks").is_some_and(|n| n >= 5.0),
        "{text}"
    );

    let _ = release.send(true);
    runtime.block_on(async {
        for task in tasks {
            task.await.unwrap();
        }
    });
    let json = serde_json::to_value(observer.stats()).unwrap();
    assert_eq!(json["process"]["runtime"]["workers"], 3);
}

/// Threads of this process whose name starts with `prefix` (Linux: `comm` of each task).
#[cfg(target_os = "linux")]
fn threads_named(prefix: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with(prefix))
        .count()
}

/// Waits (up to 10 s, the thread starts and ends on its own schedule) until `count()` is
/// `expected`; returns the last count.
#[cfg(target_os = "linux")]
fn settles_at(expected: usize, count: impl Fn() -> usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = count();
        if n == expected || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(target_os = "linux")]
#[test]
fn one_sampler_thread_per_observer_ending_with_it() {
    let _serial = serial();
    // Thread names are cut to 15 bytes.
    let sampler_threads = || threads_named("tower-observe-p");
    let before = sampler_threads();
    let observer = Observer::builder().process_metrics().build().unwrap();
    let _ = observer.render_metrics();
    let _ = observer.stats();
    assert_eq!(settles_at(before + 1, sampler_threads), before + 1);
    // It wakes as soon as the observer is gone.
    drop(observer);
    assert_eq!(settles_at(before, sampler_threads), before);

    // Stopped by hand, the same.
    let observer = Observer::builder().process_metrics().build().unwrap();
    let process = observer.process_metrics().unwrap();
    assert_eq!(settles_at(before + 1, sampler_threads), before + 1);
    process.stop_sampler();
    assert_eq!(settles_at(before, sampler_threads), before);
    // The figures are still read at scrape time.
    assert!(observer
        .render_metrics()
        .unwrap()
        .contains("process_cpu_available_cores"));
}
