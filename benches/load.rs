//! Loopback load test: the server CPU each stack spends per request, under load, next to
//! requests per second.
//!
//! ```text
//! cargo bench --bench load --all-features                        # every stack, 3 rounds of 3 s
//! LOAD_SECS=5 LOAD_ROUNDS=5 cargo bench --bench load --all-features -- bare ours_untraced
//! ```
//!
//! Each run is a fresh process (its own runtime, registry and global subscriber) serving one
//! stack over real TCP on 127.0.0.1 from a single-threaded Tokio runtime pinned to one core,
//! while a keep-alive HTTP/1.1 client with 32 connections drives it from the other core.
//! Server CPU per request is the serving thread's CPU time (user + system, from its
//! `CLOCK_THREAD_CPUTIME_ID`) over the measured window, divided by the requests answered in
//! it. The same window is also measured with the server's background threads counted: the
//! CPU time of every thread of the process but the load generator's (the serving thread,
//! the `tower-observe-*` threads — log store, history, alerts, process sampler, dashboard —,
//! an exporter's thread, Tokio's blocking pool), from each thread's CPU clock; the child
//! prints where it went, by thread name. Rounds are interleaved (every stack once, then again), so drift on a shared machine
//! hits all stacks alike; the report gives the median and the spread over rounds, and each
//! stack's added cost over the bare router of the same round, and, when `axum_prometheus`
//! (or the stack named by `LOAD_BASELINE`) ran, each stack's ratio to it. For stacks with a
//! log store it also reports the records the store dropped in the window (its buffer full),
//! per request: a store that drops records costs less than one that keeps them, so the CPU
//! figures compare only at equal drop rates. Bounded: every run stops itself after a short
//! warm-up and `LOAD_SECS`.
//!
//! `-- serve <stack> <secs>` only serves one stack (for an external load generator).

#![allow(missing_docs, unsafe_code)]

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "support/app.rs"]
mod app;
#[path = "support/stacks.rs"]
mod stacks;

const CONNECTIONS: usize = 32;
const WARM_UP: Duration = Duration::from_millis(700);

/// Pins the calling thread to `cpu` when the machine has more than one.
fn pin_to(cpu: usize) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        return;
    }
    // SAFETY: `set` is a plain bitmask owned by this frame; pid 0 is the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu % cpus, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The CPU clock of the calling thread, readable from any thread of the process.
fn this_thread_cpu_clock() -> libc::clockid_t {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `pthread_self` is always valid for the calling thread; `clock` is a local.
    let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
    assert_eq!(rc, 0, "no CPU clock for the serving thread");
    clock
}

/// CPU time consumed so far by the thread whose clock is `clock`.
fn cpu_time(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a local the call writes into.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The CPU clock of the thread `tid` of this process: the kernel's encoding of a per-thread
/// scheduler clock (`MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)`), what
/// `pthread_getcpuclockid` returns for a thread whose `pthread_t` we do not hold.
fn thread_cpu_clock(tid: libc::pid_t) -> libc::clockid_t {
    ((!tid) << 3) | 6
}

/// CPU time consumed so far by every thread of this process but `except` (the load
/// generator's), by thread ID, with the thread's name: the serving thread and every
/// background thread (`tower-observe-*`, an exporter's, Tokio's blocking pool).
fn server_threads_cpu(except: libc::pid_t) -> Vec<(libc::pid_t, String, Duration)> {
    let mut threads = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return threads;
    };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        if tid == except {
            continue;
        }
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a local the call writes into; a thread that has exited makes the
        // call fail, and it is skipped.
        if unsafe { libc::clock_gettime(thread_cpu_clock(tid), &mut ts) } != 0 {
            continue;
        }
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let cpu = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
        threads.push((tid, name.trim().to_owned(), cpu));
    }
    threads
}

/// The CPU the threads of `after` spent since `before` (a thread born in between counts
/// from zero; one that ended in between is lost, which only undercounts), in total and by
/// thread name.
fn threads_cpu_delta(
    before: &[(libc::pid_t, String, Duration)],
    after: &[(libc::pid_t, String, Duration)],
) -> (Duration, Vec<(String, Duration)>) {
    let mut by_name: Vec<(String, Duration)> = Vec::new();
    let mut total = Duration::ZERO;
    for (tid, name, cpu) in after {
        let start = before
            .iter()
            .find(|(t, _, _)| t == tid)
            .map_or(Duration::ZERO, |(_, _, c)| *c);
        let spent = cpu.saturating_sub(start);
        total += spent;
        match by_name.iter_mut().find(|(n, _)| n == name) {
            Some((_, d)) => *d += spent,
            None => by_name.push((name.clone(), spent)),
        }
    }
    (total, by_name)
}

/// Serves `name` from a new thread pinned to core 0, on a single-threaded runtime (so all
/// of the server's work runs on that thread); returns its address and CPU clock.
fn serve(name: &str) -> (SocketAddr, libc::clockid_t) {
    let name = name.to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    let server = std::thread::Builder::new().name("server".into());
    server
        .spawn(move || {
            pin_to(0);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (app, subscriber) = stacks::stack(&name).expect("a known stack");
                let (dispatch, _provider) = stacks::dispatch(subscriber);
                if let Some(dispatch) = dispatch {
                    tracing::dispatcher::set_global_default(dispatch).unwrap();
                }
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send((listener.local_addr().unwrap(), this_thread_cpu_clock()))
                    .unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        })
        .expect("the server thread");
    rx.recv().unwrap()
}

/// One keep-alive connection sending GETs back to back until `stop`.
async fn connection(addr: SocketAddr, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let request = b"GET /users/42 HTTP/1.1\r\nhost: 127.0.0.1\r\nuser-agent: load/1.0\r\n\r\n";
    let mut buf = vec![0u8; 4096];
    while !stop.load(Relaxed) {
        stream.write_all(request).await.unwrap();
        // Read one response: headers, then content-length bytes of body.
        let mut filled = 0;
        loop {
            let n = stream.read(&mut buf[filled..]).await.unwrap();
            assert!(n > 0, "server closed the connection");
            filled += n;
            if let Some(end) = find(&buf[..filled], b"\r\n\r\n") {
                let head = std::str::from_utf8(&buf[..end])
                    .unwrap()
                    .to_ascii_lowercase();
                assert!(head.starts_with("http/1.1 200"), "not a 200: {head}");
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                while filled < end + 4 + len {
                    filled += stream.read(&mut buf[filled..]).await.unwrap();
                }
                break;
            }
        }
        done.fetch_add(1, Relaxed);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One measured run of `name`, in this process.
struct Run {
    requests: u64,
    /// The serving thread's CPU.
    serving_cpu: Duration,
    /// Every thread's CPU but the load generator's: the serving thread and the background.
    process_cpu: Duration,
    /// `process_cpu` by thread name.
    by_thread: Vec<(String, Duration)>,
    wall: Duration,
    /// Records the log store dropped in the window (a full buffer), for stacks with one.
    log_store_dropped: Option<u64>,
}

/// The log store's dropped-records counter, read from the stack's own `/metrics` (`None`
/// for a stack without a log store).
async fn log_store_dropped(addr: SocketAddr) -> Option<u64> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = b"GET /metrics HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n";
    stream.write_all(request).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    String::from_utf8_lossy(&response).lines().find_map(|line| {
        let value = line.strip_prefix("tower_observe_log_store_dropped_total ")?;
        value.trim().parse::<f64>().ok().map(|v| v as u64)
    })
}

/// One measured run of `name`, in this process; the load generator is this thread.
fn run(name: &str, secs: u64) -> Run {
    // SAFETY: `gettid` has no preconditions.
    let load_generator = unsafe { libc::gettid() };
    let (addr, clock) = serve(name);
    pin_to(1);
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    client.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..CONNECTIONS)
            .map(|_| tokio::spawn(connection(addr, stop.clone(), done.clone())))
            .collect();
        tokio::time::sleep(WARM_UP).await;
        // Read outside the window, so the scrape is not counted as the stack's work.
        let dropped_before = log_store_dropped(addr).await;
        let threads_before = server_threads_cpu(load_generator);
        let (start, cpu_before, before) = (Instant::now(), cpu_time(clock), done.load(Relaxed));
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let (wall, cpu_after, after) = (start.elapsed(), cpu_time(clock), done.load(Relaxed));
        let threads_after = server_threads_cpu(load_generator);
        let dropped_after = log_store_dropped(addr).await;
        stop.store(true, Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        let (process_cpu, by_thread) = threads_cpu_delta(&threads_before, &threads_after);
        Run {
            requests: after - before,
            serving_cpu: cpu_after - cpu_before,
            process_cpu,
            by_thread,
            wall,
            log_store_dropped: dropped_before
                .zip(dropped_after)
                .map(|(before, after)| after.saturating_sub(before)),
        }
    })
}

/// The measurements of one stack over the rounds.
#[derive(Default)]
struct Samples {
    cpu_micros_per_request: Vec<f64>,
    /// With the background threads: every thread's CPU but the load generator's.
    process_micros_per_request: Vec<f64>,
    requests_per_second: Vec<f64>,
    /// The log store's dropped records per request served in the window (stacks with one).
    dropped_per_request: Vec<f64>,
}

/// The median of `values` (NaN when empty).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        f64::NAN
    } else if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
    }
}

/// The median and the range of `values`, as `median [min–max]`.
fn summary(values: &[f64]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = median(&sorted);
    let (min, max) = (sorted.first(), sorted.last());
    format!(
        "{median:>7.2} [{:.2}–{:.2}]",
        min.copied().unwrap_or(f64::NAN),
        max.copied().unwrap_or(f64::NAN)
    )
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let secs = env_number("LOAD_SECS", 3);
    match args.first().map(String::as_str) {
        // A child: one run of one stack, one line on stdout.
        Some("child") => {
            let r = run(&args[1], secs);
            println!(
                "RESULT {} {} {} {}",
                r.requests,
                r.serving_cpu.as_nanos(),
                r.wall.as_nanos(),
                r.process_cpu.as_nanos()
            );
            let threads: Vec<String> = (r.by_thread.iter())
                .map(|(name, cpu)| format!("{name}={:.1}ms", cpu.as_secs_f64() * 1e3))
                .collect();
            println!("THREADS {}", threads.join(" "));
            if let Some(dropped) = r.log_store_dropped {
                println!("DROPPED {dropped}");
            }
            return;
        }
        Some("serve") => {
            let (addr, _) = serve(&args[1]);
            println!("{} http://{addr}/users/42", args[1]);
            std::thread::sleep(Duration::from_secs(
                args.get(2).and_then(|s| s.parse().ok()).unwrap_or(60),
            ));
            return;
        }
        _ => {}
    }
    let names: Vec<&str> = if args.is_empty() {
        stacks::STACKS.to_vec()
    } else {
        let mut names = vec!["bare"];
        names.extend(args.iter().map(String::as_str).filter(|n| *n != "bare"));
        names
    };
    for name in &names {
        assert!(stacks::STACKS.contains(name), "unknown stack {name}");
    }
    let rounds = env_number("LOAD_ROUNDS", 3);
    let exe = std::env::current_exe().unwrap();
    let mut samples: Vec<Samples> = names.iter().map(|_| Samples::default()).collect();
    let mut added: Vec<Vec<f64>> = names.iter().map(|_| Vec::new()).collect();
    let mut added_process: Vec<Vec<f64>> = names.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        let (mut bare, mut bare_process) = (f64::NAN, f64::NAN);
        for (i, name) in names.iter().enumerate() {
            let out = Command::new(&exe)
                .args(["child", name])
                .env("LOAD_SECS", secs.to_string())
                .output()
                .expect("the benchmark runs itself");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT "));
            let Some(line) = line.filter(|_| out.status.success()) else {
                panic!(
                    "{name} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            };
            let threads = stdout.lines().find_map(|l| l.strip_prefix("THREADS "));
            let numbers: Vec<f64> = line.split(' ').map(|n| n.parse().unwrap()).collect();
            let (requests, cpu_nanos, wall_nanos) = (numbers[0], numbers[1], numbers[2]);
            let process_nanos = numbers[3];
            let cpu_micros = cpu_nanos / 1000.0 / requests;
            let process_micros = process_nanos / 1000.0 / requests;
            let rps = requests / (wall_nanos / 1e9);
            if *name == "bare" {
                (bare, bare_process) = (cpu_micros, process_micros);
            }
            samples[i].cpu_micros_per_request.push(cpu_micros);
            samples[i].process_micros_per_request.push(process_micros);
            samples[i].requests_per_second.push(rps);
            let dropped = stdout.lines().find_map(|l| l.strip_prefix("DROPPED "));
            if let Some(dropped) = dropped.and_then(|d| d.parse::<f64>().ok()) {
                samples[i].dropped_per_request.push(dropped / requests);
                eprintln!("         log store: {dropped} records dropped (buffer full)");
            }
            added[i].push(cpu_micros - bare);
            added_process[i].push(process_micros - bare_process);
            eprintln!(
                "round {round}: {name:<28} {cpu_micros:>7.2} µs CPU/req serving, \
                 {process_micros:>7.2} with background {rps:>9.0} req/s"
            );
            eprintln!("         threads: {}", threads.unwrap_or(""));
        }
    }
    println!();
    println!("Server µs CPU per request: the serving thread; and with the background threads");
    println!("(every thread of the server's process but the load generator's). Median [range].");
    println!(
        "{:<28} {:>20} {:>20} {:>20} {:>20} {:>10}",
        "stack", "serving thread", "added over bare", "with background", "added over bare", "req/s"
    );
    for (i, name) in names.iter().enumerate() {
        println!(
            "{name:<28} {:>20} {:>20} {:>20} {:>20} {:>10.0}",
            summary(&samples[i].cpu_micros_per_request),
            summary(&added[i]),
            summary(&samples[i].process_micros_per_request),
            summary(&added_process[i]),
            median(&samples[i].requests_per_second)
        );
    }
    // A store that drops records costs less than one that keeps them all: say how many went.
    if samples.iter().any(|s| !s.dropped_per_request.is_empty()) {
        println!();
        println!("Log store records dropped in the window (buffer full), per request served:");
        for (i, name) in names.iter().enumerate() {
            if !samples[i].dropped_per_request.is_empty() {
                println!(
                    "{name:<28} {:>20}",
                    summary(&samples[i].dropped_per_request)
                );
            }
        }
    }
    // Ratios against a baseline, round by round (both ran in the same round), then the median.
    let baseline = std::env::var("LOAD_BASELINE").unwrap_or_else(|_| "axum_prometheus".into());
    if let Some(b) = names.iter().position(|n| *n == baseline) {
        println!();
        println!("Ratio to {baseline}, median over rounds of the ratio in each round:");
        println!(
            "{:<28} {:>20} {:>20}",
            "stack", "serving thread", "with background"
        );
        let ratio = |of: &[f64], to: &[f64]| -> Vec<f64> {
            of.iter().zip(to).map(|(a, b)| a / b).collect()
        };
        for (i, name) in names.iter().enumerate() {
            println!(
                "{name:<28} {:>20} {:>20}",
                summary(&ratio(
                    &samples[i].cpu_micros_per_request,
                    &samples[b].cpu_micros_per_request
                )),
                summary(&ratio(
                    &samples[i].process_micros_per_request,
                    &samples[b].process_micros_per_request
                )),
            );
        }
    }
}
