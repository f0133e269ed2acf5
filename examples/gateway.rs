//! An API gateway in front of two local upstreams, one flaky and one slow, with retries,
//! failover, a response cache and pool health, all on `/metrics` and `/v1/stats`.
//!
//! ```text
//! cargo run --example gateway                      # gateway on http://127.0.0.1:3001
//! cargo run --example gateway -- --traffic         # …driven by a steady local load
//! cargo run --example gateway -- --addr 127.0.0.1:8081 --traffic --exit-after 30
//! ```
//!
//! - `GET /v1/complete/{model}` picks a healthy upstream round-robin, retries a failed
//!   attempt on the next one (hand-written loop: `observer.retries("complete")`), and labels
//!   the request with its `backend` and `model`.
//! - `GET /v1/models` is served from a 2 s in-process cache (`observer.cache("models")`);
//!   misses fetch from an upstream through `reqwest-retry` (`observer.retries("models")`).
//! - A health checker probes both upstreams every 500 ms (`observer.backend_pool(…)`).
//! - `POST /v1/chat/completions` (OpenAI's chat API, `"stream": true`) forwards to one of two
//!   local model upstreams by model — `openai` for `gpt-4o`/`gpt-4o-mini`, `mistral_ai` for
//!   `mistral-small` — which stream a role chunk, tokens at fixed delays, a `usage` event and
//!   `[DONE]`, and sometimes fail or stall. `observer.llm_client_layer()` records the upstream
//!   calls, `observer.llm_server_layer()` the gateway's own API (`gen_ai_*`, the `llm`
//!   section of `/v1/stats`).
//! - `GET /v1/users/{id}` (feature `operations`) times a fake database call
//!   (`db_client_operation_duration_seconds`), an external credit-check API
//!   (`function_calls_total`), and enqueues an audit job for three workers (`queue_depth`,
//!   `queue_wait_duration_seconds`, `messaging_process_duration_seconds`, `queue_workers`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Router};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_retry::{policies::ExponentialBackoff, RetryTransientMiddleware};
use tower_observe::cache::CacheHandle;
use tower_observe::pool::PoolHandle;
use tower_observe::retry::RetryHandle;
use tower_observe::{Dimensions, Observer};

mod common;

const SPEC: common::Spec = common::Spec {
    name: "gateway",
    default_addr: SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 3001),
    default_rps: 30,
    max_rps: 500,
    extra: &[],
};

/// An upstream on an ephemeral loopback port: `failure_percent` of answers are 503 and each
/// takes `latency` plus up to 50 % jitter.
async fn start_upstream(failure_percent: u8, latency: Duration) -> SocketAddr {
    let answer = move || async move {
        let jitter = latency.mul_f64(fastrand::f64() * 0.5);
        tokio::time::sleep(latency + jitter).await;
        if fastrand::u8(0..100) < failure_percent {
            (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response()
        } else {
            "ok".into_response()
        }
    };
    let app = Router::new()
        .route("/complete/{model}", get(answer))
        .route("/models", get(answer))
        .route("/health", get(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

#[derive(Clone)]
struct Gateway {
    upstreams: Arc<[SocketAddr]>,
    next: Arc<AtomicUsize>,
    pool: PoolHandle,
    /// Attempts of `/v1/complete`: one per try, no retry middleware.
    client: ClientWithMiddleware,
    complete_retries: RetryHandle,
    /// `/v1/models` fetches: retried by `reqwest-retry`.
    models_client: ClientWithMiddleware,
    models_cache: CacheHandle,
    cached_models: Arc<Mutex<Option<(Instant, String)>>>,
}

impl Gateway {
    /// Healthy upstreams first, in round-robin order from a rotating start.
    fn candidates(&self) -> Vec<SocketAddr> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.upstreams.len();
        let mut order: Vec<SocketAddr> = (0..n).map(|i| self.upstreams[(start + i) % n]).collect();
        order.sort_by_key(|a| !self.pool.is_healthy(&a.to_string()).unwrap_or(true));
        order
    }
}

async fn complete(State(gw): State<Gateway>, Path(model): Path<String>) -> impl IntoResponse {
    let mut call = gw.complete_retries.call();
    let candidates = gw.candidates();
    let mut last_status = StatusCode::BAD_GATEWAY;
    for (i, backend) in candidates.iter().cycle().take(3).enumerate() {
        if i > 0 {
            call.retry(&last_status.as_u16().to_string());
            let previous = candidates[(i - 1) % candidates.len()];
            if previous != *backend {
                call.failover(&previous.to_string(), &backend.to_string());
            }
        }
        let result = gw
            .client
            .get(format!("http://{backend}/complete/{model}"))
            .send()
            .await;
        match result {
            Ok(res) if res.status().is_success() => {
                call.succeeded();
                let body = res.text().await.unwrap_or_default();
                let dims = Dimensions::new()
                    .with("backend", backend.to_string())
                    .with("model", model);
                return (StatusCode::OK, Extension(dims), body).into_response();
            }
            Ok(res) => last_status = res.status(),
            Err(_) => last_status = StatusCode::BAD_GATEWAY,
        }
    }
    call.failed();
    let dims = Dimensions::new().with("model", model);
    (
        StatusCode::BAD_GATEWAY,
        Extension(dims),
        "all upstreams failed",
    )
        .into_response()
}

async fn models(State(gw): State<Gateway>) -> impl IntoResponse {
    const TTL: Duration = Duration::from_secs(2);
    if let Some((at, body)) = gw.cached_models.lock().unwrap().clone() {
        if at.elapsed() < TTL {
            gw.models_cache.hit();
            return (StatusCode::OK, body).into_response();
        }
    }
    gw.models_cache.miss();
    let backend = gw.candidates()[0];
    match gw
        .models_client
        .get(format!("http://{backend}/models"))
        .send()
        .await
    {
        Ok(res) if res.status().is_success() => {
            let body = res.text().await.unwrap_or_default();
            *gw.cached_models.lock().unwrap() = Some((Instant::now(), body.clone()));
            (StatusCode::OK, body).into_response()
        }
        _ => (StatusCode::BAD_GATEWAY, "models unavailable").into_response(),
    }
}

/// Probes every upstream's `/health` every 500 ms with a 300 ms timeout.
async fn check_health(pool: PoolHandle, upstreams: Arc<[SocketAddr]>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("reqwest client");
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        for addr in upstreams.iter() {
            let started = Instant::now();
            let passed = matches!(
                client.get(format!("http://{addr}/health")).send().await,
                Ok(res) if res.status().is_success()
            );
            pool.health_check(&addr.to_string(), started.elapsed(), passed);
        }
    }
}

/// A steady, bounded load: `rps` requests per second, at most 64 in flight.
async fn drive_traffic(addr: SocketAddr, rps: u32) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("reqwest client");
    let models = ["small", "large", "vision"];
    common::drive(rps, 64, move || {
        let dice = fastrand::u8(0..100);
        let url = if dice < 20 {
            common::ops::traffic_url(addr)
        } else if dice < 80 {
            format!("http://{addr}/v1/complete/{}", models[fastrand::usize(..3)])
        } else {
            format!("http://{addr}/v1/models")
        };
        let client = client.clone();
        async move {
            if let Ok(res) = client.get(url).send().await {
                let _ = res.bytes().await;
            }
        }
    })
    .await;
}

// --- LLM traffic (feature `llm`) --------------------------------------------------------------

fn main() {
    let args = SPEC.parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(args));
}

async fn run(args: common::Args) {
    let observer = match Observer::builder()
        .dimension("backend")
        .dimension("model")
        .build()
    {
        Ok(observer) => observer,
        Err(e) => {
            eprintln!("observer: {e}");
            std::process::exit(1);
        }
    };
    let flaky = start_upstream(35, Duration::from_millis(5)).await;
    let slow = start_upstream(2, Duration::from_millis(80)).await;
    let upstreams: Arc<[SocketAddr]> = Arc::from(vec![flaky, slow]);
    let pool = observer.backend_pool("upstreams", "round_robin");
    for addr in upstreams.iter() {
        pool.set_healthy(&addr.to_string(), true);
    }
    tokio::spawn(check_health(pool.clone(), upstreams.clone()));

    let plain = || {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("reqwest client")
    };
    let models_retries = observer.retries("models");
    let gateway = Gateway {
        upstreams,
        next: Arc::default(),
        pool,
        client: ClientBuilder::new(plain())
            .with(
                observer
                    .client_layer()
                    .target("complete")
                    .label("strategy", "round_robin")
                    .expect("a valid label")
                    .middleware(),
            )
            .build(),
        complete_retries: observer.retries("complete"),
        models_client: ClientBuilder::new(plain())
            .with(models_retries.reqwest_middleware())
            .with(RetryTransientMiddleware::new_with_policy(
                ExponentialBackoff::builder()
                    .retry_bounds(Duration::from_millis(5), Duration::from_millis(50))
                    .build_with_max_retries(2),
            ))
            .with(observer.client_layer().target("models").middleware())
            .build(),
        models_cache: observer.cache("models"),
        cached_models: Arc::default(),
    };
    let (llm, llm_upstreams) = common::llm::llm_routes(
        &observer,
        [Duration::from_millis(15), Duration::from_millis(35)],
    )
    .await;
    let app = Router::new()
        .route("/v1/complete/{model}", get(complete))
        .route("/v1/models", get(models))
        .with_state(gateway)
        .merge(llm)
        .merge(common::ops::router(&observer))
        .merge(observer.router())
        .layer(observer.layer());

    let listener = common::bind(args.addr).await;
    let addr = listener.local_addr().expect("bound address");
    println!("tower-observe gateway listening on http://{addr}");
    println!("  upstreams: flaky http://{flaky}, slow http://{slow}");
    println!(
        "  models:    openai http://{}, mistral_ai http://{}",
        llm_upstreams[0], llm_upstreams[1]
    );
    println!("  try:       http://{addr}/v1/complete/small  http://{addr}/v1/models");
    println!(
        "  operations: http://{addr}/v1/users/42 (a database call, an external API, a job queue)"
    );
    println!("  metrics:   http://{addr}/metrics");
    println!("  stats:     http://{addr}/v1/stats");
    if args.traffic {
        println!("  traffic:   {} requests/s to http://{addr}", args.rps);
        tokio::spawn(drive_traffic(addr, args.rps));
        tokio::spawn(common::llm::drive_chat(addr, (args.rps / 4).max(2)));
    }
    common::serve(listener, app, args.exit_after).await;
}
