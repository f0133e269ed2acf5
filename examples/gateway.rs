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
            ops_demo::traffic_url(addr)
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

/// The models each local model upstream serves, and its provider label.
const LLM_MODELS: [(&str, &str); 3] = [
    ("gpt-4o-mini", "openai"),
    ("gpt-4o", "openai"),
    ("mistral-small", "mistral_ai"),
];

/// A local model upstream speaking OpenAI's streaming chat API: a role-only chunk, then 5 to
/// 40 tokens every `token_delay` (after a first-token delay of 8 × `token_delay`), a `usage`
/// event and `[DONE]`. 3 % of calls answer 500, 2 % stall for 10 s mid-stream, 2 % end
/// with an `error` event.
async fn start_llm_upstream(token_delay: Duration) -> SocketAddr {
    use axum::body::{Body, Bytes};
    use axum::routing::post;

    async fn chat(token_delay: Duration, body: Bytes) -> axum::response::Response {
        let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let model = request["model"].as_str().unwrap_or("unknown").to_owned();
        let roll = fastrand::u8(0..100);
        if roll < 3 {
            let error = r#"{"error":{"message":"upstream overloaded","type":"server_error"}}"#;
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                [("content-type", "application/json")],
                error,
            )
                .into_response();
        }
        let tokens = fastrand::u64(5..=40);
        let prompt_tokens = 8 + (body.len() as u64) / 4;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        tokio::spawn(async move {
            let id = fastrand::u64(..);
            let event = |delta: &str, usage: &str| {
                Bytes::from(format!(
                    "data: {{\"id\":\"chatcmpl-{id}\",\"object\":\"chat.completion.chunk\",\"model\":\"{model}\",\"choices\":[{delta}],\"usage\":{usage}}}\n\n"
                ))
            };
            let role = r#"{"index":0,"delta":{"role":"assistant","content":""}}"#;
            if tx.send(Ok(event(role, "null"))).await.is_err() {
                return;
            }
            tokio::time::sleep(token_delay * 8).await;
            for i in 0..tokens {
                if roll < 5 && i == tokens / 2 {
                    tokio::time::sleep(Duration::from_secs(10)).await; // a stall
                }
                if (5..7).contains(&roll) && i == tokens / 2 {
                    let error = Bytes::from_static(
                        b"data: {\"error\":{\"message\":\"model crashed\"}}\n\n",
                    );
                    let _ = tx.send(Ok(error)).await;
                    return;
                }
                let delta = format!(r#"{{"index":0,"delta":{{"content":"tok{i} "}}}}"#);
                if tx.send(Ok(event(&delta, "null"))).await.is_err() {
                    return; // the caller went away
                }
                tokio::time::sleep(token_delay).await;
            }
            let usage = format!(
                r#"{{"prompt_tokens":{prompt_tokens},"completion_tokens":{tokens},"total_tokens":{}}}"#,
                prompt_tokens + tokens
            );
            let _ = tx.send(Ok(event("", &usage))).await;
            let _ = tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n"))).await;
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        (
            [("content-type", "text/event-stream")],
            Body::from_stream(stream),
        )
            .into_response()
    }

    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |body: Bytes| chat(token_delay, body)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind model upstream");
    let addr = listener.local_addr().expect("model upstream address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// The HTTP client of the model upstreams, recorded by the LLM client layer.
type LlmUpstreamClient = tower_observe::llm::Llm<
    hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        axum::body::Body,
    >,
>;

#[derive(Clone)]
struct LlmGateway {
    /// Per provider, the upstream serving it.
    upstreams: Arc<[(&'static str, SocketAddr)]>,
    client: LlmUpstreamClient,
}

/// `POST /v1/chat/completions`: reads the model from the request, forwards the request to
/// the provider serving it, and streams the answer back untouched. The provider and model go
/// into the response's extensions for the server layer, and into the upstream request's for
/// the client layer.
async fn chat_completions(
    State(gw): State<LlmGateway>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use tower::ServiceExt;
    use tower_observe::llm::LlmLabels;

    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let model = request["model"].as_str().unwrap_or("").to_owned();
    let provider = LLM_MODELS
        .iter()
        .find(|(m, _)| *m == model)
        .map_or("openai", |(_, p)| p);
    let labels = LlmLabels::new().provider(provider).model(model);
    let Some((_, upstream)) = gw.upstreams.iter().find(|(p, _)| *p == provider) else {
        return (StatusCode::BAD_GATEWAY, "no upstream").into_response();
    };
    let mut upstream_request =
        axum::http::Request::post(format!("http://{upstream}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body))
            .expect("a valid request");
    upstream_request.extensions_mut().insert(labels.clone());
    match gw.client.oneshot(upstream_request).await {
        Ok(res) => {
            let (parts, body) = res.into_parts();
            let mut res = axum::http::Response::from_parts(parts, axum::body::Body::new(body));
            res.extensions_mut().insert(labels);
            res
        }
        Err(_) => (
            StatusCode::BAD_GATEWAY,
            Extension(labels),
            "upstream unreachable",
        )
            .into_response(),
    }
}

/// The LLM routes of the gateway, with their upstreams started.
async fn llm_routes(observer: &Observer) -> (Router, Vec<SocketAddr>) {
    use tower::Layer;

    let openai = start_llm_upstream(Duration::from_millis(15)).await;
    let mistral = start_llm_upstream(Duration::from_millis(35)).await;
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<axum::body::Body>();
    let models: Vec<&str> = LLM_MODELS.iter().map(|(m, _)| *m).collect();
    let gateway = LlmGateway {
        upstreams: Arc::from(vec![("openai", openai), ("mistral_ai", mistral)]),
        // The server layer counts the tokens of this traffic; counting them here too would
        // double `gen_ai_client_token_usage`.
        client: observer
            .llm_client_layer()
            .allowed_models(&models)
            .token_usage(false)
            .layer(http),
    };
    let router = Router::new()
        .route(
            "/v1/chat/completions",
            axum::routing::post(chat_completions),
        )
        .with_state(gateway)
        .layer(
            observer
                .llm_server_layer()
                .allowed_models(models)
                .allowed_providers(["openai", "mistral_ai"]),
        );
    (router, vec![openai, mistral])
}

/// Streamed chat completions at `rps` per second: one in ten asks for a model nobody serves,
/// and one in twenty is read half-way and dropped (a user closing the tab).
async fn drive_chat(addr: SocketAddr, rps: u32) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("reqwest client");
    common::drive(rps, 32, move || {
        let model = if fastrand::u8(0..10) == 0 {
            "gpt-unknown"
        } else {
            LLM_MODELS[fastrand::usize(..LLM_MODELS.len())].0
        };
        let drop_half_way = fastrand::u8(0..20) == 0;
        let body = format!(
            r#"{{"model":"{model}","stream":true,"stream_options":{{"include_usage":true}},"messages":[{{"role":"user","content":"Say something."}}]}}"#
        );
        let request = client
            .post(format!("http://{addr}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body);
        async move {
            let Ok(mut res) = request.send().await else {
                return;
            };
            let mut chunks = 0;
            while let Ok(Some(_)) = res.chunk().await {
                chunks += 1;
                if drop_half_way && chunks == 4 {
                    return;
                }
            }
        }
    })
    .await;
}

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
    let (llm, llm_upstreams) = llm_routes(&observer).await;
    let app = Router::new()
        .route("/v1/complete/{model}", get(complete))
        .route("/v1/models", get(models))
        .with_state(gateway)
        .merge(llm)
        .merge(ops_demo::router(&observer))
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
        tokio::spawn(drive_chat(addr, (args.rps / 4).max(2)));
    }
    common::serve(listener, app, args.exit_after).await;
}

/// Operations and queues (feature `operations`): a fake database, an external API and a job
/// queue with three workers, all in this module.
mod ops_demo {
    use std::net::SocketAddr;
    use std::time::Duration;

    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::get;
    use axum::Router;
    use tokio::sync::mpsc;
    use tower_observe::operations::{Enqueued, Operation, OperationHandle, Queue, QueueHandle};
    use tower_observe::Observer;

    #[derive(Debug)]
    struct DbTimeout;

    #[derive(Debug)]
    struct ApiUnavailable;

    #[derive(Clone)]
    struct Ops {
        select_user: OperationHandle,
        credit_check: OperationHandle,
        audit: QueueHandle,
        jobs: mpsc::Sender<(u64, Enqueued)>,
    }

    /// `select_user`: 1–10 ms, one call in 20 times out.
    async fn select_user(id: u64) -> Result<String, DbTimeout> {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(1..=10))).await;
        if fastrand::u8(0..100) < 5 {
            return Err(DbTimeout);
        }
        Ok(format!("user-{id}"))
    }

    /// An external API that answers in 5–40 ms and fails 3 % of the time.
    async fn credit_check(_user: &str) -> Result<u32, ApiUnavailable> {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(5..=40))).await;
        if fastrand::u8(0..100) < 3 {
            return Err(ApiUnavailable);
        }
        Ok(fastrand::u32(300..=850))
    }

    async fn user(State(ops): State<Ops>, Path(id): Path<u64>) -> impl IntoResponse {
        let user = match ops.select_user.run(select_user(id)).await {
            Ok(user) => user,
            Err(DbTimeout) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database timeout".to_owned(),
                )
            }
        };
        let score = ops.credit_check.run(credit_check(&user)).await;
        // The audit job: enqueued now, processed by a worker later (skipped when the queue is
        // full).
        if let Ok(slot) = ops.jobs.try_reserve() {
            slot.send((id, ops.audit.enqueued()));
        }
        match score {
            Ok(score) => (StatusCode::OK, format!("{user}: credit score {score}")),
            Err(ApiUnavailable) => (
                StatusCode::BAD_GATEWAY,
                format!("{user}: credit check unavailable"),
            ),
        }
    }

    /// One worker: takes audit jobs, 5–30 ms each, one in 25 fails; a heartbeat every second
    /// while it waits, so a hung worker would show as stuck.
    async fn worker(
        name: String,
        audit: QueueHandle,
        jobs: std::sync::Arc<tokio::sync::Mutex<mpsc::Receiver<(u64, Enqueued)>>>,
    ) {
        let me = audit.worker(name);
        loop {
            let next = {
                let mut jobs = jobs.lock().await;
                tokio::time::timeout(Duration::from_secs(1), jobs.recv()).await
            };
            me.heartbeat();
            match next {
                Ok(Some((id, job))) => {
                    let _ = me
                        .process(job, async move {
                            tokio::time::sleep(Duration::from_millis(fastrand::u64(5..=30))).await;
                            if fastrand::u8(0..100) < 4 {
                                Err(std::io::Error::other(format!("audit of {id} failed")))
                            } else {
                                Ok(())
                            }
                        })
                        .await;
                }
                Ok(None) => return,
                Err(_) => {} // no job this second
            }
        }
    }

    /// `GET /v1/users/{id}`, and the audit workers.
    pub(super) fn router(observer: &Observer) -> Router {
        let (tx, rx) = mpsc::channel(256);
        let audit = observer.queue(Queue::new("audit").stuck_after(Duration::from_secs(10)));
        let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
        for i in 1..=3 {
            tokio::spawn(worker(format!("auditor-{i}"), audit.clone(), rx.clone()));
        }
        let ops = Ops {
            select_user: observer
                .operation(Operation::db("postgresql", "select_user").collection("users")),
            credit_check: observer.operation(Operation::function("credit_api", "credit_check")),
            audit,
            jobs: tx,
        };
        Router::new()
            .route("/v1/users/{id}", get(user))
            .with_state(ops)
    }

    pub(super) fn traffic_url(addr: SocketAddr) -> String {
        format!("http://{addr}/v1/users/{}", fastrand::u64(1..1000))
    }
}
