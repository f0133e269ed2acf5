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
//! it. Rounds are interleaved (every stack once, then again), so drift on a shared machine
//! hits all stacks alike; the report gives the median and the spread over rounds, and each
//! stack's added cost over the bare router of the same round. Bounded: every run stops
//! itself after a short warm-up and `LOAD_SECS`.
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

/// Serves `name` from a new thread pinned to core 0, on a single-threaded runtime (so all
/// of the server's work runs on that thread); returns its address and CPU clock.
fn serve(name: &str) -> (SocketAddr, libc::clockid_t) {
    let name = name.to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
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
    });
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

/// One measured run of `name`, in this process: (requests, server CPU, wall time).
fn run(name: &str, secs: u64) -> (u64, Duration, Duration) {
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
        let (start, cpu_before, before) = (Instant::now(), cpu_time(clock), done.load(Relaxed));
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let (wall, cpu_after, after) = (start.elapsed(), cpu_time(clock), done.load(Relaxed));
        stop.store(true, Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        (after - before, cpu_after - cpu_before, wall)
    })
}

/// The measurements of one stack over the rounds.
#[derive(Default)]
struct Samples {
    cpu_micros_per_request: Vec<f64>,
    requests_per_second: Vec<f64>,
}

/// The median and the range of `values`, as `median [min–max]`.
fn summary(values: &[f64]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = if sorted.is_empty() {
        f64::NAN
    } else if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
    };
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
            let (requests, cpu, wall) = run(&args[1], secs);
            println!("RESULT {requests} {} {}", cpu.as_nanos(), wall.as_nanos());
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
    for round in 1..=rounds {
        let mut bare = f64::NAN;
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
            let numbers: Vec<f64> = line.split(' ').map(|n| n.parse().unwrap()).collect();
            let (requests, cpu_nanos, wall_nanos) = (numbers[0], numbers[1], numbers[2]);
            let cpu_micros = cpu_nanos / 1000.0 / requests;
            let rps = requests / (wall_nanos / 1e9);
            if *name == "bare" {
                bare = cpu_micros;
            }
            samples[i].cpu_micros_per_request.push(cpu_micros);
            samples[i].requests_per_second.push(rps);
            added[i].push(cpu_micros - bare);
            eprintln!("round {round}: {name:<28} {cpu_micros:>7.2} µs CPU/req {rps:>9.0} req/s");
        }
    }
    println!();
    println!(
        "{:<28} {:>22} {:>22} {:>10}",
        "stack", "server µs CPU/req", "added over bare µs", "req/s"
    );
    for (i, name) in names.iter().enumerate() {
        let mut rps = samples[i].requests_per_second.clone();
        rps.sort_by(f64::total_cmp);
        println!(
            "{name:<28} {:>22} {:>22} {:>10.0}",
            summary(&samples[i].cpu_micros_per_request),
            summary(&added[i]),
            rps[rps.len() / 2]
        );
    }
}
