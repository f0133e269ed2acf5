//! Allocations per request of each stack, counted exactly, and a loop to count instructions
//! per request with callgrind (repeatable on a noisy machine, unlike time).
//!
//! ```text
//! cargo bench --bench per_request --all-features                  # allocations, every stack
//! cargo bench --bench per_request --all-features -- ours_untraced 2000   # N requests of one
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*serve_measured*' \
//!   --callgrind-out-file=/dev/null target/release/deps/per_request-* ours_untraced 2000
//!   # instructions per request: the "Collected" count over 2050 (the warm-up is measured too)
//! ```
//!
//! Each stack serves `GET /users/42` in process (the router called directly, its body read to
//! the end), the way the `layers` benchmark does; the subscribers write to a sink.

#![allow(missing_docs, unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;

/// Counts every allocation the process makes.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: delegates every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[path = "support/app.rs"]
mod app;
#[path = "support/stacks.rs"]
mod stacks;

use app::request;

/// Polls `future` to its end on this thread. Every stack here answers without waiting, so no
/// runtime is needed, and none adds its own (timing-dependent) work to the count.
fn finish<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = futures_util::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// Serves `n` requests; returns the allocations they made.
fn serve(router: &Router, n: u64) -> u64 {
    let router = router.clone().with_state::<()>(());
    // Warm up: first label sets, thread-locals, caches.
    serve_measured(&router, 50);
    let before = ALLOCATIONS.load(Relaxed);
    serve_measured(&router, n);
    ALLOCATIONS.load(Relaxed) - before
}

/// The measured loop, by name for callgrind's `--toggle-collect`.
#[inline(never)]
fn serve_measured(router: &Router, n: u64) {
    for _ in 0..n {
        finish(async {
            let res = router.clone().oneshot(request()).await.unwrap();
            res.into_body().collect().await.unwrap();
        });
    }
}

/// Serves `n` requests of the stack `name` with its subscriber installed as the global
/// default (the way a service installs it); returns the allocations.
fn run(name: &str, n: u64) -> u64 {
    let (router, subscriber) = stacks::stack(name).expect("a stack name");
    let (dispatch, provider) = stacks::dispatch(subscriber);
    if let Some(dispatch) = dispatch {
        tracing::dispatcher::set_global_default(dispatch).expect("the first subscriber");
    }
    let allocations = serve(&router, n);
    if let Some(provider) = provider {
        let _ = provider.shutdown();
    }
    allocations
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // axum-prometheus spawns its upkeep task when its layer is made.
    let _guard = rt.enter();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    match args.as_slice() {
        // One stack, N requests: for callgrind.
        [name, n] => {
            let n: u64 = n.parse().expect("a number of requests");
            let allocations = run(name, n);
            println!("{name}: {n} requests, {allocations} allocations");
        }
        // Every stack, each in a fresh process (axum-prometheus installs a global recorder,
        // and each stack gets its subscriber as the global default, as a service would).
        _ => {
            let exe = std::env::current_exe().expect("the benchmark's own path");
            let n = 2000;
            println!("{:<28} {:>12}", "stack", "allocs/req");
            for &name in stacks::STACKS {
                let out = std::process::Command::new(&exe)
                    .args([name, &n.to_string()])
                    .output()
                    .expect("the benchmark runs itself");
                let stdout = String::from_utf8_lossy(&out.stdout);
                let allocations: Option<f64> = stdout
                    .split_whitespace()
                    .rev()
                    .nth(1)
                    .and_then(|count| count.parse().ok());
                match allocations {
                    Some(count) => println!("{name:<28} {:>12.2}", count / n as f64),
                    None => panic!("{name}: {}", String::from_utf8_lossy(&out.stderr)),
                }
            }
        }
    }
}
