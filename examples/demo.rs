//! An instrumented axum service with every tower-observe capability: metrics, statistics,
//! health, ECS logs, traces, history, process metrics, alerts, the dashboard, the log store,
//! LLM traffic and operation timing.
//!
//! ```text
//! cargo run --all-features --example demo -- --traffic   # serve on 127.0.0.1:3000, drive it
//! cargo run --all-features --example demo -- --addr 127.0.0.1:8080 --traffic --exit-after 30
//! cargo run --all-features --example demo -- --traffic --fault errors   # a fault after 20 s
//! cargo run --all-features --example demo -- --traffic --admin 127.0.0.1:9464  # admin port
//! ```
//!
//! Then open `/dashboard` (feature `dashboard`), `/metrics`, `/v1/stats`, `/health` and
//! `/v1/alerts`. The routes have different latencies and error rates; `/api/chat/{model}`
//! reports `backend` and `model` dimensions (one request in 200 asks for a model named
//! `<script>alert(1)</script>`, which the dashboard shows as text).
//!
//! Alerts are on: the recommended rules, plus `DemoErrorRate` and `DemoSlowRequests` that move
//! within a couple of minutes. Make one fire by injecting a fault into the `/api` routes —
//! `curl -X POST 'http://127.0.0.1:3000/demo/fault?kind=errors&seconds=90'` (or
//! `kind=latency`) — and watch `GET /v1/alerts`: pending, then firing, then resolved once the
//! fault is over. Notifications go to the log (stdout); `--alert-webhook URL` sends them to a
//! webhook too (Alertmanager's payload), and `--alert-interval SECS` sets how often the rules
//! are evaluated (default 5).
//!
//! With `--features log-store` (or `--all-features`) the demo also stores its log lines and
//! spans (in memory, or in the redb file given with `--logs FILE`), behind a logs token it
//! prints; it prints the URL of one request's view (`/v1/requests/{id}`) as traffic flows.
//!
//! With `llm` and `operations` (both in `--all-features`) it is also an LLM gateway —
//! `POST /v1/chat/completions` streams from local model upstreams through the LLM client and
//! server layers (`gen_ai_*`, the `llm` section of `/v1/stats`) — and `GET /v1/users/{id}`
//! times a fake database call, an external API and a job queue with three workers
//! (`db_client_operation_duration_seconds`, `function_calls_total`, `queue_*`); `--traffic`
//! drives both. The same pieces serve the `gateway` example (`examples/common/`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use tower_observe::alerts::{notify, AlertRule, AlertRules, Alerts, Figure, Severity};
use tower_observe::trace::TraceOptions;
use tower_observe::{Dimensions, HttpServerRecord, Observer, RecordSink, RequestId};

mod common;

const SPEC: common::Spec = common::Spec {
    name: "demo",
    default_addr: SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 3000),
    default_rps: 40,
    max_rps: 2000,
    extra: &[
        ("--alert-webhook", "URL"),
        ("--alert-interval", "SECS"),
        ("--fault", "errors|latency"),
        ("--prefix", "PATH"),
        ("--logs", "FILE"),
        ("--admin", "HOST:PORT"),
    ],
};

/// The route `DemoSlowRequests` watches: 1–5 ms normally, the busiest route of the traffic.
const USERS_ROUTE: &str = "/api/users/{id}";
/// A scanner's model name that is markup: the chat route reports it as its `model` (this one
/// value only, so the label stays bounded), and the dashboard must show it as text.
const PROBE_MODEL: &str = "<script>alert(1)</script>";
/// How long `--fault` waits after start-up, and how long its fault lasts.
const BOOT_FAULT_DELAY: Duration = Duration::from_secs(20);
const BOOT_FAULT_SECONDS: u64 = 120;
/// `POST /demo/fault` without `seconds`, and the most it accepts.
const DEFAULT_FAULT_SECONDS: u64 = 120;
const MAX_FAULT_SECONDS: u64 = 600;

/// Counts slow requests per route: a `RecordSink` sees every request the metrics see.
struct SlowRequests;

impl RecordSink for SlowRequests {
    fn record_http_server(&self, r: &HttpServerRecord<'_>) {
        if r.duration > Duration::from_millis(350) {
            metrics::counter!("demo_slow_requests_total", "http_route" => r.route.to_owned())
                .increment(1);
        }
    }
}

/// What an injected fault does to the `/api` routes, for half of their requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FaultKind {
    /// Fail with a 500 before the handler runs.
    Errors = 1,
    /// Sleep an extra 0.8–1.5 s before the handler runs.
    Latency = 2,
}

impl FaultKind {
    fn as_str(self) -> &'static str {
        match self {
            FaultKind::Errors => "errors",
            FaultKind::Latency => "latency",
        }
    }
}

impl std::str::FromStr for FaultKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "errors" => Ok(FaultKind::Errors),
            "latency" => Ok(FaultKind::Latency),
            _ => Err(format!("unknown fault kind {s:?} (errors or latency)")),
        }
    }
}

/// The injected fault, shared by the fault endpoint and every request: one atomic word
/// holding `deadline << 2 | kind` (the deadline in milliseconds since `epoch`; 0 when there
/// has been none), so the request path reads it without a lock, and kind and deadline always
/// change together.
struct Fault {
    epoch: Instant,
    word: AtomicU64,
}

impl Fault {
    fn new() -> Self {
        Fault {
            epoch: Instant::now(),
            word: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX >> 2)
    }

    /// Starts `kind` for `seconds` (replacing any active fault); 0 seconds ends it.
    fn start(&self, kind: FaultKind, seconds: u64) {
        let word = if seconds == 0 {
            0
        } else {
            ((self.now_ms() + seconds * 1000) << 2) | kind as u64
        };
        self.word.store(word, Ordering::Relaxed);
    }

    /// The active fault and the time it has left.
    fn active(&self) -> Option<(FaultKind, Duration)> {
        let word = self.word.load(Ordering::Relaxed);
        let kind = match word & 3 {
            1 => FaultKind::Errors,
            2 => FaultKind::Latency,
            _ => return None,
        };
        let left = (word >> 2)
            .checked_sub(self.now_ms())
            .filter(|&ms| ms > 0)?;
        Some((kind, Duration::from_millis(left)))
    }

    fn report(&self) -> serde_json::Value {
        match self.active() {
            Some((kind, left)) => serde_json::json!({
                "active": true,
                "kind": kind.as_str(),
                "remaining_seconds": left.as_secs(),
            }),
            None => serde_json::json!({ "active": false }),
        }
    }
}

/// The middleware of the `/api` routes: during a fault, half of the requests fail or are slow.
/// It runs inside the observer's layer, so the metrics, the logs and the alerts see it.
async fn inject_fault(State(fault): State<Arc<Fault>>, request: Request, next: Next) -> Response {
    match fault.active() {
        Some((FaultKind::Errors, _)) if fastrand::bool() => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "injected fault (see /demo/fault)",
            )
                .into_response();
        }
        Some((FaultKind::Latency, _)) if fastrand::bool() => sleep_ms(800..1500).await,
        _ => {}
    }
    next.run(request).await
}

/// `GET /demo/fault`: the active fault, if any.
async fn fault_status(State(fault): State<Arc<Fault>>) -> Response {
    axum::Json(fault.report()).into_response()
}

/// `POST /demo/fault?kind=errors|latency&seconds=N`: starts a fault (default 120 s, at most
/// 600; 0 ends the active one).
async fn start_fault(
    State(fault): State<Arc<Fault>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let kind = match params.get("kind").map(|k| k.parse::<FaultKind>()) {
        None => FaultKind::Errors,
        Some(Ok(kind)) => kind,
        Some(Err(e)) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let seconds = match params.get("seconds").map(|s| s.parse::<u64>()) {
        None => DEFAULT_FAULT_SECONDS,
        Some(Ok(s)) if s <= MAX_FAULT_SECONDS => s,
        _ => {
            let message = format!("seconds must be a whole number from 0 to {MAX_FAULT_SECONDS}\n");
            return (StatusCode::BAD_REQUEST, message).into_response();
        }
    };
    fault.start(kind, seconds);
    if seconds == 0 {
        tracing::warn!("injected fault ended");
    } else {
        tracing::warn!(
            fault.kind = kind.as_str(),
            fault.seconds = seconds,
            "injected fault: half of the /api requests {} for {seconds}s; watch GET /v1/alerts",
            match kind {
                FaultKind::Errors => "fail",
                FaultKind::Latency => "are 0.8-1.5 s slower",
            }
        );
    }
    axum::Json(fault.report()).into_response()
}

async fn sleep_ms(range: std::ops::Range<u64>) {
    tokio::time::sleep(Duration::from_millis(fastrand::u64(range))).await;
}

async fn user(Path(id): Path<u32>, request_id: RequestId) -> String {
    // A span of its own: the request's view (log store) shows it in the waterfall.
    tracing::Instrument::instrument(
        sleep_ms(1..5),
        tracing::info_span!("load user", db.system = "postgresql", user.id = id),
    )
    .await;
    format!("{{\"id\":{id},\"request_id\":\"{request_id}\"}}")
}

async fn search() -> &'static str {
    sleep_ms(20..80).await;
    "[]"
}

async fn checkout(body: Bytes) -> Response {
    sleep_ms(100..400).await;
    if fastrand::u8(0..100) < 5 {
        tracing::error!(payment.provider = "acme-pay", "payment provider timed out");
        metrics::counter!("demo_checkouts_total", "result" => "failed").increment(1);
        return (StatusCode::INTERNAL_SERVER_ERROR, "payment provider failed").into_response();
    }
    // The application's own metrics go through the same registry and show up on /metrics.
    metrics::counter!("demo_checkouts_total", "result" => "accepted").increment(1);
    format!("{{\"accepted_bytes\":{}}}", body.len()).into_response()
}

async fn chat(Path(model): Path<String>) -> Response {
    let (base, spread) = match model.as_str() {
        "small" => (30, 40),
        "large" => (150, 250),
        // The probe is labelled as asked for; every other unknown model is not (unbounded).
        PROBE_MODEL => {
            let dims = Extension(Dimensions::new().with("model", PROBE_MODEL));
            return (StatusCode::NOT_FOUND, dims, "unknown model").into_response();
        }
        _ => return (StatusCode::NOT_FOUND, "unknown model").into_response(),
    };
    let backend = if fastrand::bool() { "eu-1" } else { "us-1" };
    sleep_ms(base..base + spread).await;
    let dims = Extension(
        Dimensions::new()
            .with("backend", backend)
            .with("model", model),
    );
    if backend == "us-1" && fastrand::u8(0..100) < 4 {
        return (StatusCode::SERVICE_UNAVAILABLE, dims, "backend overloaded").into_response();
    }
    (dims, "{\"reply\":\"hello\"}").into_response()
}

/// Ten chunks, 50 ms apart: its latency is measured to the last chunk, not the headers.
async fn stream() -> Body {
    let chunks = futures_util::stream::unfold(0u8, |i| async move {
        if i == 10 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        Some((
            Ok::<_, std::io::Error>(Bytes::from(format!("chunk {i}\n"))),
            i + 1,
        ))
    });
    Body::from_stream(chunks)
}

/// `--prefix /ops`: the observer's routes nested under a path (`/ops/dashboard`, …), as a
/// service that keeps its own root does; `None`: at the root.
fn prefix(args: &common::Args) -> Option<String> {
    let prefix = args.extra.get("--prefix")?.trim_end_matches('/').to_owned();
    if !prefix.starts_with('/') || prefix.len() < 2 {
        eprintln!("--prefix {prefix}: a path such as /ops");
        std::process::exit(2);
    }
    Some(prefix)
}

/// `extra`: the routes of the LLM gateway and the operations (features `llm`, `operations`).
fn app(observer: &Observer, fault: Arc<Fault>, prefix: Option<&str>, extra: Router) -> Router {
    let app = Router::new()
        .route(USERS_ROUTE, get(user))
        .route("/api/search", get(search))
        .route("/api/checkout", post(checkout))
        .route("/api/chat/{model}", get(chat))
        .route("/api/stream", get(stream))
        // Only the routes above get the injected faults.
        .route_layer(middleware::from_fn_with_state(fault.clone(), inject_fault))
        .route("/", get(index))
        .route("/demo/fault", get(fault_status).post(start_fault))
        .with_state(fault)
        .merge(extra);
    // /metrics, /v1/stats, /health, /v1/alerts (and /v1/stats/history with `history`).
    let app = match prefix {
        Some(prefix) => app.nest(prefix, observer.router()),
        None => app.merge(observer.router()),
    };
    app.layer(
        observer
            .layer()
            .traces(TraceOptions::new().access_log(true)),
    )
}

async fn index() -> &'static str {
    "tower-observe demo\n\n/metrics     Prometheus text\n/v1/stats    JSON statistics\n\
     /health      health, with the firing alerts and the process\n\
     /v1/alerts   alert rules, alerts, transitions, channels\n\
     /demo/fault  the injected fault (POST ?kind=errors|latency&seconds=N starts one)\n\n\
     /api/users/{id}  /api/search  POST /api/checkout  /api/chat/{small|large}  /api/stream\n\
     POST /v1/chat/completions (llm)  /v1/users/{id} (operations)\n"
}

/// The recommended rules, and two that a fault makes fire within a minute or so. Under the
/// normal traffic the error rate is about 1 % (checkout 5 %, chat on `us-1` 4 %; the scanners'
/// 404s are not failures) and `/api/users/{id}` answers in 1–5 ms, so neither moves unless a
/// fault is injected.
fn alert_rules() -> AlertRules {
    let minute = Duration::from_secs(60);
    let half = Duration::from_secs(30);
    AlertRules::recommended()
        .rule(
            AlertRule::new("DemoErrorRate", Figure::error_rate(minute))
                .above(0.20)
                .for_duration(half)
                .keep_firing_for(half)
                .min_requests(10)
                .severity(Severity::Critical)
                .summary("Error rate is {{ $value | humanizePercentage }}")
                .description(
                    "More than 20% of the requests failed over the last minute, for 30 seconds \
                     (try POST /demo/fault?kind=errors).",
                ),
        )
        .rule(
            AlertRule::new("DemoSlowRequests", Figure::latency_quantile(0.95, minute))
                .route(USERS_ROUTE)
                .above(0.5)
                .for_duration(half)
                .min_requests(10)
                .severity(Severity::Warning)
                .summary("p95 latency of /api/users/{id} is {{ $value | humanizeDuration }}")
                .description(
                    "The 95th percentile of /api/users/{id} over the last minute has been above \
                     500ms for 30 seconds (try POST /demo/fault?kind=latency).",
                ),
        )
}

/// The alert settings from the flags: notifications to the log, and to `--alert-webhook`;
/// evaluated every `--alert-interval` seconds (default 5).
fn alerts(args: &common::Args, addr: SocketAddr) -> Alerts {
    let prefix = prefix(args).unwrap_or_default();
    let mut alerts = Alerts::new(alert_rules())
        .channel(notify::Log::new())
        .external_url(format!("http://{addr}{prefix}"));
    if let Some(url) = args.extra.get("--alert-webhook") {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            eprintln!("--alert-webhook {url}: not an http:// or https:// URL");
            std::process::exit(2);
        }
        alerts = alerts.channel(notify::Webhook::new(url.clone()));
    }
    alerts.evaluation_interval(alert_interval(args))
}

fn alert_interval(args: &common::Args) -> Duration {
    match args.extra_parsed::<f64>("--alert-interval") {
        None => tower_observe::alerts::DEFAULT_EVALUATION_INTERVAL,
        // The 1-minute windows need two evaluations in them.
        Some(secs) if (0.1..=30.0).contains(&secs) => Duration::from_secs_f64(secs),
        Some(_) => {
            eprintln!("--alert-interval must be from 0.1 to 30 seconds");
            std::process::exit(2);
        }
    }
}

/// A steady, bounded load against our own address: `rps` requests per second, each with a
/// 5 s timeout, at most 64 in flight.
async fn drive_traffic(addr: SocketAddr, rps: u32) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("reqwest client");
    let base = format!("http://{addr}");
    // The markup probe: the first request, then one in 200.
    let probe = format!("{base}/api/chat/%3Cscript%3Ealert(1)%3C%2Fscript%3E");
    let mut sent: u64 = 0;
    common::drive(rps, 64, move || {
        sent += 1;
        let request = match fastrand::u8(0..100) {
            _ if sent % 200 == 1 => client.get(&probe),
            0..=39 => client.get(format!("{base}/api/users/{}", fastrand::u32(1..500))),
            40..=59 => client.get(format!("{base}/api/search")),
            60..=69 => {
                client
                    .post(format!("{base}/api/checkout"))
                    .body(vec![b'x'; fastrand::usize(100..4000)])
            }
            70..=87 => client.get(format!(
                "{base}/api/chat/{}",
                if fastrand::bool() { "small" } else { "large" }
            )),
            88..=91 => client.get(format!("{base}/api/stream")),
            92..=95 => client.get(format!("{base}/wp-admin/{}", fastrand::u32(..))), // scanners
            _ => client
                .get(format!("{base}/api/users/7"))
                .header("x-request-id", "bad id\twith tab"),
        };
        async move {
            if let Ok(res) = request.send().await {
                let _ = res.bytes().await;
            }
        }
    })
    .await;
}

/// JSON logs (ECS) on stdout — the application's lines and failed requests' access-log lines,
/// each carrying its request ID and trace ID — and, with the `otlp` feature and
/// `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans and log records to that collector.
fn init_telemetry() -> (Option<Box<dyn FnOnce()>>, StoreSlot) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    let filter = Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("tower_observe::access", LevelFilter::WARN);
    // The log store's layer comes from the observer, built later: a slot filled then.
    #[cfg(feature = "log-store")]
    let (store_layer, slot) = tracing_subscriber::reload::Layer::new(None);
    #[cfg(not(feature = "log-store"))]
    let (store_layer, slot) = (tracing_subscriber::layer::Identity::new(), ());
    let registry = tracing_subscriber::registry()
        .with(tower_observe::logs::EcsJsonLayer::new("demo"))
        .with(store_layer)
        .with(filter);

    #[cfg(feature = "otlp")]
    {
        use tower_observe::opentelemetry::trace::TracerProvider as _;
        use tower_observe::otlp::{OtlpLogLayer, OtlpLogs, OtlpTraces};
        use tracing_subscriber::Layer as _;
        // Each signal is exported when its endpoint (or the generic one) is set; the other
        // `OTEL_*` variables apply (service name, headers, TLS root, sampler, batches).
        let traces = OtlpTraces::from_env("demo").map(|o| o.build()).transpose();
        let logs = OtlpLogs::from_env("demo").map(|o| o.build()).transpose();
        match (traces, logs) {
            (Ok(traces), Ok(logs)) if traces.is_some() || logs.is_some() => {
                // Spans only: events go out as log records, redacted, not as span events.
                let spans = traces.as_ref().map(|(provider, _)| {
                    tower_observe::tracing_opentelemetry::layer()
                        .with_tracer(provider.tracer("demo"))
                        .with_filter(tracing_subscriber::filter::filter_fn(|meta| meta.is_span()))
                });
                let records = logs
                    .as_ref()
                    .map(|(provider, _)| OtlpLogLayer::new(provider));
                let _ = tracing::subscriber::set_global_default(registry.with(spans).with(records));
                let shown = |set: bool| if set { "OTLP" } else { "off" };
                println!(
                    "  OTLP:     traces {}, logs {} (OTEL_EXPORTER_OTLP_*ENDPOINT)",
                    shown(traces.is_some()),
                    shown(logs.is_some())
                );
                return (
                    Some(Box::new(move || {
                        if let Some((provider, _)) = traces {
                            let _ = provider.shutdown();
                        }
                        if let Some((provider, _)) = logs {
                            let _ = provider.shutdown();
                        }
                    })),
                    slot,
                );
            }
            (Err(e), _) | (_, Err(e)) => eprintln!("OTLP export disabled: {e}"),
            _ => {}
        }
    }
    #[cfg(not(feature = "otlp"))]
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        eprintln!(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the demo was built without the `otlp` feature"
        );
    }
    let _ = tracing::subscriber::set_global_default(registry);
    (None, slot)
}

/// Where the log store's layer goes once the observer is built.
#[cfg(feature = "log-store")]
type StoreSlot = tracing_subscriber::reload::Handle<
    Option<tower_observe::log_store::LogStoreLayer>,
    tracing_subscriber::layer::Layered<
        tower_observe::logs::EcsJsonLayer,
        tracing_subscriber::Registry,
    >,
>;
#[cfg(not(feature = "log-store"))]
type StoreSlot = ();

/// The logs token of this run (random, so a demo left running does not serve its logs to
/// anyone who knows the source).
#[cfg(feature = "log-store")]
fn logs_token() -> String {
    let mut token = String::from("demo-");
    for _ in 0..4 {
        token.push_str(&format!("{:08x}", fastrand::u32(..)));
    }
    token
}

fn main() {
    let args = SPEC.parse();
    // Before the async runtime: the OTLP exporter's HTTP client blocks.
    let (shutdown_telemetry, slot) = init_telemetry();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    runtime.block_on(run(args, slot));
    drop(runtime);
    if let Some(shutdown) = shutdown_telemetry {
        shutdown();
    }
}

async fn run(args: common::Args, slot: StoreSlot) {
    let boot_fault: Option<FaultKind> = args.extra_parsed("--fault");
    // Bound first: the alerts' links point at the address actually listened on.
    let listener = common::bind(args.addr).await;
    let addr = listener.local_addr().expect("bound address");
    let alerts = alerts(&args, addr);
    let interval = alert_interval(&args);
    let webhook = args.extra.contains_key("--alert-webhook");
    let prefix = prefix(&args);
    let ops = format!("http://{addr}{}", prefix.as_deref().unwrap_or(""));

    let builder = Observer::builder()
        .dimension("backend")
        .dimension("model")
        .service_version(env!("CARGO_PKG_VERSION"))
        .sink(Arc::new(SlowRequests))
        // process_* and tokio_* (this runtime) on /metrics, `process` in /v1/stats and /health.
        .process_metrics()
        .alerts(alerts)
        .unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(2);
        });
    // With `--features history` (or `--all-features`): history kept in memory for the demo.
    #[cfg(feature = "history")]
    let builder = builder.history(tower_observe::history::HistoryOptions::in_memory());
    // With `--features dashboard`: the live page at /dashboard and its stream.
    #[cfg(feature = "dashboard")]
    let builder = builder.dashboard(tower_observe::dashboard::DashboardOptions::new());
    // With `--features log-store`: log lines and spans stored (in memory, or `--logs FILE`),
    // served behind a logs token.
    #[cfg(feature = "log-store")]
    let token = logs_token();
    #[cfg(feature = "log-store")]
    let builder = builder.log_store(
        match args.extra.get("--logs") {
            Some(path) => tower_observe::log_store::LogStoreOptions::file(path),
            None => tower_observe::log_store::LogStoreOptions::in_memory(),
        }
        .token(token.clone())
        .service_name("demo"),
    );
    // With `--features admin` and `--admin HOST:PORT`: the observability routes also on a
    // port of their own (what a deployment keeps off the public listener).
    #[cfg(feature = "admin")]
    let admin_addr: Option<std::net::SocketAddr> = args.extra_parsed("--admin");
    #[cfg(feature = "admin")]
    let builder = match admin_addr {
        Some(admin) => builder.admin_addr(admin),
        None => builder,
    };
    let observer = builder.build().expect("valid observer configuration");
    #[cfg(feature = "admin")]
    let admin = match admin_addr {
        Some(_) => match observer.serve_admin(common::stop_signal()).await {
            Ok(handle) => Some(handle.local_addr()),
            Err(e) => {
                eprintln!("--admin: {e}");
                std::process::exit(1);
            }
        },
        None => None,
    };
    // Metrics pushed over OTLP too when an OTEL_EXPORTER_OTLP_*ENDPOINT is set.
    #[cfg(feature = "otlp")]
    let _otlp_metrics = tower_observe::otlp::OtlpMetrics::from_env("demo").map(|m| {
        observer
            .export_metrics(m)
            .map_err(|e| eprintln!("OTLP metrics disabled: {e}"))
    });
    #[cfg(feature = "log-store")]
    if let Some(store) = observer.log_store() {
        let _ = slot.reload(Some(store.layer()));
    }
    #[cfg(not(feature = "log-store"))]
    let () = slot;
    // The application's own `metrics::counter!` calls land on /metrics too.
    if let Some(registry) = observer.registry() {
        let _ = metrics::set_global_recorder(registry.clone());
        metrics::describe_counter!("demo_checkouts_total", "Checkouts, by result.");
        metrics::describe_counter!(
            "demo_slow_requests_total",
            "Requests slower than 350 ms, by route."
        );
    }

    let extra = Router::new();
    let rules = alert_rules();
    let names: Vec<&str> = rules.rules().iter().map(AlertRule::name).collect();
    println!("tower-observe demo listening on http://{addr}");
    println!("  metrics:  {ops}/metrics");
    println!("  stats:    {ops}/v1/stats");
    println!("  health:   {ops}/health");
    println!(
        "  alerts:   {ops}/v1/alerts ({}, every {interval:?}; notifications to the log{})",
        names.join(", "),
        if webhook { " and the webhook" } else { "" }
    );
    if cfg!(feature = "history") {
        println!("  history:  {ops}/v1/stats/history?step=1m (add &format=csv)");
    }
    if cfg!(feature = "dashboard") {
        println!("  dashboard: {ops}/dashboard (live, from /v1/stats/stream)");
    }
    #[cfg(feature = "log-store")]
    {
        println!("  logs:     {ops}/v1/logs?token={token} (newest first; &request_id=, &trace_id=, &level=warn, &q=)");
        println!("  request:  {ops}/v1/requests/<request or trace ID>?token={token}");
        println!("            (every response's x-request-id; export: {ops}/v1/logs/export?token={token})");
    }
    #[cfg(feature = "admin")]
    match admin {
        Some(admin) => println!(
            "  admin:    http://{admin}/metrics, /v1/stats, /health, /dashboard (their own port)"
        ),
        None => println!("  admin:    --admin 127.0.0.1:9464 serves them on a port of their own"),
    }
    println!("  fault:    http://{addr}/demo/fault");
    #[cfg(feature = "llm")]
    let extra = {
        // Fast models (streams under 0.2 s, apart from the rare stall), so that the
        // recommended p99 rule stays quiet until a fault is injected.
        let delays = [Duration::from_millis(2), Duration::from_millis(4)];
        let (llm, _) = common::llm::llm_routes(&observer, delays).await;
        println!("  llm:      POST http://{addr}/v1/chat/completions (streamed from local model upstreams; the llm section of /v1/stats)");
        extra.merge(llm)
    };
    #[cfg(feature = "operations")]
    let extra = {
        println!(
            "  ops:      http://{addr}/v1/users/42 (a database call, an external API, a job queue)"
        );
        extra.merge(common::ops::router(&observer))
    };
    println!("  routes:   http://{addr}/");
    if args.traffic {
        println!("  traffic:  {} requests/s to http://{addr}", args.rps);
        tokio::spawn(drive_traffic(addr, args.rps));
        #[cfg(feature = "llm")]
        tokio::spawn(common::llm::drive_chat(addr, (args.rps / 10).max(2)));
        #[cfg(feature = "operations")]
        tokio::spawn(common::ops::drive(addr, (args.rps / 10).max(2)));
    }
    println!();
    println!("Make an alert fire: fail half of the /api requests for 90 s,");
    println!("  curl -X POST 'http://{addr}/demo/fault?kind=errors&seconds=90'");
    println!("then watch DemoErrorRate go pending, firing, and resolved once the fault is over:");
    println!("  curl -s http://{addr}/v1/alerts");
    println!("(kind=latency makes DemoSlowRequests fire instead.)");
    if !args.traffic {
        println!("Start with --traffic, or send requests yourself: alerts need traffic.");
    }
    println!();

    let fault = Arc::new(Fault::new());
    if let Some(kind) = boot_fault {
        let fault = fault.clone();
        tokio::spawn(async move {
            tokio::time::sleep(BOOT_FAULT_DELAY).await;
            fault.start(kind, BOOT_FAULT_SECONDS);
            tracing::warn!(
                fault.kind = kind.as_str(),
                fault.seconds = BOOT_FAULT_SECONDS,
                "injected fault (--fault): half of the /api requests are affected; watch GET /v1/alerts"
            );
        });
    }

    // One request of our own, to print the URL of its view once it is stored.
    #[cfg(feature = "log-store")]
    tokio::spawn(show_one_request(addr, ops.clone(), token));

    common::serve(
        listener,
        app(&observer, fault, prefix.as_deref(), extra),
        args.exit_after,
    )
    .await;
}

/// Sends one request with a known request ID and prints the URL of its stored view (spans,
/// timings and log lines) once the store has flushed it.
#[cfg(feature = "log-store")]
async fn show_one_request(addr: SocketAddr, ops: String, token: String) {
    let id = "demo-first-request";
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = reqwest::Client::new()
        .get(format!("http://{addr}/api/users/42"))
        .header("x-request-id", id)
        .send()
        .await;
    if sent.is_ok() {
        // The store writes every second.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        println!("What happened to request {id}: {ops}/v1/requests/{id}?token={token}");
    }
}
