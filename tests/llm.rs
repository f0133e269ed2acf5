//! LLM traffic end to end, through real servers on 127.0.0.1: a scripted upstream streams an
//! OpenAI-style chat completion one frame at a time while the test moves a `ManualClock`, so
//! the time to the first token, the time per output token and the durations the layers
//! record are exact — through the server layer (the gateway's own API) and through the client
//! layer (calls to the upstream). Comments and a role-only chunk come first and must not
//! count; the first content event is split across frames; a client that drops the stream
//! half-way is recorded as cancelled with the tokens seen; a JSON completion's `usage` is
//! read; model names taken from requests stay bounded; `promtool` accepts the exposition.

#![cfg(all(feature = "llm", feature = "axum"))]

mod support;

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;
use tower::{Layer, ServiceExt};
use tower_observe::clock::ManualClock;
use tower_observe::llm::{LlmLabels, LlmUsage};
use tower_observe::Observer;

use support::{eventually, sample, serve};

const MS: Duration = Duration::from_millis(1);

type Frames = mpsc::UnboundedSender<Bytes>;

/// An upstream whose every response is an event stream fed by the test: each request hands
/// the test the sender of its body.
fn scripted_upstream(senders: mpsc::UnboundedSender<Frames>) -> Router {
    Router::new()
        .route(
            "/v1/chat/completions",
            post(
                |State(senders): State<mpsc::UnboundedSender<Frames>>| async move {
                    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
                    let _ = senders.send(tx);
                    let body = StreamBody::new(
                        UnboundedReceiverStream::new(rx)
                            .map(|b| Ok::<_, Infallible>(Frame::data(b))),
                    );
                    Response::builder()
                        .header("content-type", "text/event-stream")
                        .body(Body::new(body))
                        .unwrap()
                },
            ),
        )
        .with_state(senders)
}

fn manual_observer() -> (Observer, ManualClock) {
    let clock = ManualClock::new();
    let observer = Observer::builder().clock(clock.clone()).build().unwrap();
    (observer, clock)
}

fn chunk(content: &str) -> String {
    format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}}}}]}}\n\n")
}

const ROLE: &str =
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n";
const USAGE_AND_DONE: &str = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}\n\ndata: [DONE]\n\n";

/// Reads the response until what it has read contains `marker`.
async fn read_until(res: &mut reqwest::Response, seen: &mut String, marker: &str) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while !seen.contains(marker) {
            match res.chunk().await.unwrap() {
                Some(bytes) => seen.push_str(&String::from_utf8_lossy(&bytes)),
                None => panic!("the stream ended before {marker:?}: {seen}"),
            }
        }
    })
    .await
    .expect("the frame arrives");
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// The script every streaming test plays, one frame at a time, the clock moved only while
/// no frame is in flight (so each reading the layer takes is exact):
///
/// | at | frame |
/// |---|---|
/// | 100 ms | `: keep-alive` comment |
/// | 200 ms | role-only chunk (`"content":""`) |
/// | 300 ms | first half of the first content event |
/// | 350 ms | its second half: the first token |
/// | 370 ms, 390 ms | two more content events |
/// | 400 ms | `usage` (7 in, 3 out) and `[DONE]`; the stream ends |
///
/// Expected: TTFT 350 ms, duration 400 ms, time per output token (400 − 350) / (3 − 1) = 25 ms.
struct Step {
    advance_ms: u64,
    frame: String,
    marker: &'static str,
}

fn script() -> Vec<Step> {
    let first = chunk("Hello");
    let (a, b) = first.split_at(first.find("Hel").unwrap() + 3);
    vec![
        Step {
            advance_ms: 100,
            frame: ": keep-alive\n\n".into(),
            marker: "keep-alive",
        },
        Step {
            advance_ms: 100,
            frame: ROLE.into(),
            marker: "assistant",
        },
        Step {
            advance_ms: 100,
            frame: a.into(),
            marker: "Hel",
        },
        Step {
            advance_ms: 50,
            frame: b.into(),
            marker: "lo\"",
        },
        Step {
            advance_ms: 20,
            frame: chunk(" wor"),
            marker: " wor",
        },
        Step {
            advance_ms: 20,
            frame: chunk("ld"),
            marker: "\"ld\"",
        },
        Step {
            advance_ms: 10,
            frame: USAGE_AND_DONE.into(),
            marker: "[DONE]",
        },
    ]
}

#[tokio::test]
async fn server_layer_times_the_first_content_token_not_the_first_byte() {
    let (observer, clock) = manual_observer();
    let (senders, mut bodies) = mpsc::unbounded_channel();
    let app = scripted_upstream(senders)
        .layer(
            observer
                .llm_server_layer()
                .provider("openai")
                .model("gpt-test"),
        )
        .merge(observer.router());
    let addr = serve(app).await;

    let mut res = reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat/completions"))
        .body("{\"model\":\"gpt-test\",\"stream\":true}")
        .send()
        .await
        .unwrap();
    let frames = bodies.recv().await.unwrap();
    let mut seen = String::new();
    for step in script() {
        clock.advance(MS * step.advance_ms as u32);
        frames.send(Bytes::from(step.frame)).unwrap();
        read_until(&mut res, &mut seen, step.marker).await;
    }
    drop(frames);
    assert!(res.chunk().await.unwrap().is_none());

    let labels = [
        ("gen_ai_provider_name", "openai"),
        ("gen_ai_request_model", "gpt-test"),
    ];
    eventually(|| {
        sample(
            &observer.render_metrics().unwrap(),
            "gen_ai_server_request_duration_seconds_count",
            &labels,
        ) == Some(1.0)
    })
    .await;
    let text = observer.render_metrics().unwrap();
    let get = |name: &str, extra: &[(&str, &str)]| {
        let mut all = labels.to_vec();
        all.extend_from_slice(extra);
        sample(&text, name, &all).unwrap_or_else(|| panic!("{name} {extra:?} in\n{text}"))
    };
    assert!(
        close(
            get("gen_ai_server_time_to_first_token_seconds_sum", &[]),
            0.35
        ),
        "{text}"
    );
    assert!(close(
        get("gen_ai_server_request_duration_seconds_sum", &[]),
        0.4
    ));
    assert!(close(
        get("gen_ai_server_time_per_output_token_seconds_sum", &[]),
        0.025
    ));
    assert_eq!(
        get("gen_ai_server_time_to_first_token_seconds_count", &[]),
        1.0
    );
    let tokens = |kind| {
        get(
            "gen_ai_client_token_usage_sum",
            &[("gen_ai_token_type", kind), ("usage_source", "provider")],
        )
    };
    assert_eq!((tokens("input"), tokens("output")), (7.0, 3.0));
    assert!(text.contains("gen_ai_operation_name=\"chat\""));
    // The advised buckets, exactly.
    assert!(text.contains("gen_ai_server_time_to_first_token_seconds_bucket{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\",gen_ai_request_model=\"gpt-test\",le=\"0.001\"} 0"));
    assert!(text.contains("le=\"81.92\""));
    assert!(text.contains("le=\"67108864\""));

    let stats = observer.stats().llm.unwrap();
    let openai = &stats.server.providers["openai"];
    assert_eq!(
        (openai.requests, openai.errors, openai.cancelled),
        (1, 0, 0)
    );
    assert_eq!(openai.ttft_ms.unwrap().min, 350.0);
    assert_eq!(openai.latency_ms.unwrap().max, 400.0);
    assert_eq!(
        (
            openai.input_tokens,
            openai.output_tokens,
            openai.estimated_tokens
        ),
        (7, 3, 0)
    );
    assert_eq!(stats.server.models["gpt-test"].requests, 1);
    assert!(stats.client.providers.is_empty());
}

/// The client layer over hyper-util's client: the same script, read frame by frame by the
/// caller; the layer sees each frame when the caller polls for it.
#[tokio::test]
async fn client_layer_records_time_to_first_chunk_and_usage() {
    let (observer, clock) = manual_observer();
    let (senders, mut bodies) = mpsc::unbounded_channel();
    let addr = serve(scripted_upstream(senders)).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<String>();
    let client = observer.llm_client_layer().provider("openai").layer(client);

    let mut req = http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .body(String::from("{}"))
        .unwrap();
    req.extensions_mut()
        .insert(LlmLabels::new().model("gpt-up"));
    let res = client.clone().oneshot(req).await.unwrap();
    let frames = bodies.recv().await.unwrap();
    let mut body = res.into_body();
    let mut seen = String::new();
    for step in script() {
        clock.advance(MS * step.advance_ms as u32);
        frames.send(Bytes::from(step.frame)).unwrap();
        while !seen.contains(step.marker) {
            let frame = body.frame().await.unwrap().unwrap();
            seen.push_str(&String::from_utf8_lossy(frame.data_ref().unwrap()));
        }
    }
    drop(frames);
    assert!(body.frame().await.is_none());

    let text = observer.render_metrics().unwrap();
    let labels = [
        ("gen_ai_provider_name", "openai"),
        ("gen_ai_request_model", "gpt-up"),
    ];
    let get = |name: &str| sample(&text, name, &labels).unwrap_or_else(|| panic!("{name}\n{text}"));
    assert!(close(
        get("gen_ai_client_operation_time_to_first_chunk_seconds_sum"),
        0.35
    ));
    assert!(close(
        get("gen_ai_client_operation_duration_seconds_sum"),
        0.4
    ));
    assert!(!text.contains("gen_ai_server_"), "{text}");
    let stats = observer.stats().llm.unwrap();
    let up = &stats.client.models["gpt-up"];
    assert_eq!((up.input_tokens, up.output_tokens), (7, 3));
    assert_eq!(up.ttft_ms.unwrap().min, 350.0);
}

/// Dropping the body after two content events: recorded at once, as cancelled, with the two
/// tokens seen (estimated), its time to first token, and no time per output token.
#[tokio::test]
async fn a_stream_dropped_by_the_caller_is_cancelled_with_its_tokens() {
    let (observer, clock) = manual_observer();
    let (senders, mut bodies) = mpsc::unbounded_channel();
    let addr = serve(scripted_upstream(senders)).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<String>();
    let client = observer
        .llm_client_layer()
        .provider("openai")
        .model("m")
        .layer(client);
    let req = http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .body(String::new())
        .unwrap();
    let res = client.oneshot(req).await.unwrap();
    let frames = bodies.recv().await.unwrap();
    let mut body = res.into_body();
    for (at, frame) in [(10, ROLE.to_owned()), (20, chunk("a")), (30, chunk("b"))] {
        clock.advance(MS * at);
        frames.send(Bytes::from(frame)).unwrap();
        body.frame().await.unwrap().unwrap();
    }
    clock.advance(MS * 40);
    drop(body);

    let text = observer.render_metrics().unwrap();
    let cancelled = [("error_type", "cancelled")];
    assert_eq!(
        sample(
            &text,
            "gen_ai_client_operation_duration_seconds_count",
            &cancelled
        ),
        Some(1.0),
        "{text}"
    );
    assert!(close(
        sample(
            &text,
            "gen_ai_client_operation_duration_seconds_sum",
            &cancelled
        )
        .unwrap(),
        0.1
    ));
    assert_eq!(
        sample(
            &text,
            "gen_ai_client_token_usage_sum",
            &[
                ("gen_ai_token_type", "output"),
                ("usage_source", "estimated")
            ]
        ),
        Some(2.0)
    );
    let e = &observer.stats().llm.unwrap().client.providers["openai"];
    assert_eq!((e.requests, e.cancelled, e.errors), (1, 1, 0));
    assert_eq!((e.output_tokens, e.estimated_tokens), (2, 2));
    assert_eq!(e.ttft_ms.unwrap().min, 30.0);
}

/// The gateway's client goes away mid-stream: hyper drops the response body at its next
/// write, and the server layer records the request as cancelled with the tokens it passed.
#[tokio::test]
async fn server_layer_records_a_client_that_went_away() {
    let observer = Observer::new();
    let (senders, mut bodies) = mpsc::unbounded_channel();
    let app =
        scripted_upstream(senders).layer(observer.llm_server_layer().provider("openai").model("m"));
    let addr = serve(app).await;
    let mut res = reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    let frames = bodies.recv().await.unwrap();
    let mut seen = String::new();
    for (frame, marker) in [(chunk("one"), "one"), (chunk("two"), "two")] {
        frames.send(Bytes::from(frame)).unwrap();
        read_until(&mut res, &mut seen, marker).await;
    }
    drop(res);
    // Comments carry no content: they only make the server notice the closed connection.
    let cancelled = || {
        observer
            .stats()
            .llm
            .and_then(|l| l.server.providers.get("openai").map(|e| e.cancelled))
            == Some(1)
    };
    for _ in 0..500 {
        if cancelled() {
            break;
        }
        let _ = frames.send(Bytes::from_static(b": ping\n\n"));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let e = &observer.stats().llm.unwrap().server.providers["openai"];
    assert_eq!((e.requests, e.cancelled), (1, 1));
    assert_eq!((e.output_tokens, e.estimated_tokens), (2, 2));
    let text = observer.render_metrics().unwrap();
    assert_eq!(
        sample(
            &text,
            "gen_ai_server_request_duration_seconds_count",
            &[("error_type", "cancelled")]
        ),
        Some(1.0)
    );
    assert!(
        !text.contains("gen_ai_server_time_per_output_token"),
        "{text}"
    );
}

/// A non-streamed completion: tokens from the JSON body's `usage`, labels from the
/// response's extensions, no time to first token (streams only).
#[tokio::test]
async fn a_json_completion_records_its_usage() {
    let observer = Observer::new();
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            post(|| async {
                (
                    [("content-type", "application/json")],
                    Extension(LlmLabels::new().provider("anthropic").model("claude-test")),
                    r#"{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}"#,
                )
            }),
        )
        .route(
            "/v1/embeddings",
            post(|| async {
                (
                    Extension(LlmLabels::new().operation("embeddings").provider("openai")),
                    Extension(LlmUsage::estimated(5, 0)),
                    "[]",
                )
            }),
        )
        .layer(observer.llm_server_layer());
    let addr = serve(app).await;
    let http = reqwest::Client::new();
    for path in ["/v1/chat/completions", "/v1/embeddings"] {
        let text = http
            .post(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            text.starts_with("{\"id\"") || text == "[]",
            "the body is untouched"
        );
    }
    eventually(|| {
        observer
            .stats()
            .llm
            .is_some_and(|l| l.server.providers.values().map(|e| e.requests).sum::<u64>() == 2)
    })
    .await;
    let stats = observer.stats().llm.unwrap();
    let claude = &stats.server.models["claude-test"];
    assert_eq!(
        (
            claude.input_tokens,
            claude.output_tokens,
            claude.estimated_tokens
        ),
        (9, 12, 0)
    );
    assert!(claude.ttft_ms.is_none());
    let text = observer.render_metrics().unwrap();
    assert!(!text.contains("time_to_first_token"), "{text}");
    assert_eq!(
        sample(
            &text,
            "gen_ai_client_token_usage_sum",
            &[
                ("gen_ai_operation_name", "embeddings"),
                ("usage_source", "estimated"),
                ("gen_ai_token_type", "input")
            ]
        ),
        Some(5.0)
    );
    assert_eq!(stats.server.providers["openai"].estimated_tokens, 5);
}

#[derive(serde::Deserialize)]
struct ModelQuery {
    model: String,
}

/// Model names copied from requests: an allow-list labels the rest `_OTHER`; without one,
/// the observer's label limit folds the excess into the overflow series.
#[tokio::test]
async fn model_names_from_requests_stay_bounded() {
    let observer = Observer::builder()
        .max_label_sets_per_metric(4)
        .build()
        .unwrap();
    let echo_model = |Query(q): Query<ModelQuery>| async move {
        (
            [("content-type", "text/event-stream")],
            Extension(LlmLabels::new().provider("openai").model(q.model)),
            format!("{}data: [DONE]\n\n", chunk("x")),
        )
            .into_response()
    };
    let app = Router::new()
        .route("/open", post(echo_model))
        .layer(observer.llm_server_layer())
        .route(
            "/listed",
            post(echo_model).layer(observer.llm_server_layer().allowed_models(["good"])),
        );
    let addr = serve(app).await;
    let http = reqwest::Client::new();
    for i in 0..30 {
        for path in ["open", "listed"] {
            http.post(format!("http://{addr}/{path}?model=user-{i}"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
        }
    }
    http.post(format!("http://{addr}/listed?model=good"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    eventually(|| {
        observer.stats().llm.is_some_and(|l| {
            l.server
                .providers
                .get("openai")
                .map(|e| e.requests)
                .unwrap_or(0)
                + l.server
                    .providers
                    .get("_OTHER")
                    .map(|e| e.requests)
                    .unwrap_or(0)
                == 61
        })
    })
    .await;
    let text = observer.render_metrics().unwrap();
    let series = support::series_count(&text, "gen_ai_server_request_duration_seconds_count");
    assert!(series <= 5, "{series} series:\n{text}");
    assert!(text.contains("otel_metric_overflow=\"true\""));
    assert!(
        sample(
            &text,
            "tower_observe_cardinality_overflow_total",
            &[("metric", "gen_ai_server_request_duration_seconds")]
        )
        .unwrap()
            > 0.0
    );
    let models = observer.stats().llm.unwrap().server.models;
    assert!(models.len() <= 5, "{:?}", models.keys());
    assert!(models.contains_key("_OTHER"));
}

/// `promtool check metrics` accepts the GenAI exposition (skipped without promtool unless
/// `TOWER_OBSERVE_E2E=1`).
#[tokio::test]
async fn promtool_accepts_the_llm_exposition() {
    let Some(promtool) = support::promtool() else {
        return;
    };
    let observer = Observer::new();
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            post(|| async {
                (
                    [("content-type", "text/event-stream")],
                    format!("{ROLE}{}{}{USAGE_AND_DONE}", chunk("a"), chunk("b")),
                )
            }),
        )
        .layer(observer.llm_server_layer().provider("openai").model("m"));
    let addr = serve(app).await;
    reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat/completions"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    eventually(|| {
        observer
            .render_metrics()
            .unwrap()
            .contains("gen_ai_client_token_usage")
    })
    .await;
    let text = observer.render_metrics().unwrap();
    support::promtool_check_metrics(&promtool, &text);
}

/// The alert figures over the GenAI metrics, evaluated by the in-process engine on the
/// registry the layers record into: a TTFT p99 above 1 ms and any output token rate fire
/// while a scripted upstream streams.
#[cfg(feature = "alerts")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_llm_alert_figures_fire_on_recorded_traffic() {
    use tower_observe::alerts::{AlertRule, AlertRules, Alerts, Figure};

    let window = Duration::from_secs(10);
    let rules = AlertRules::new()
        .rule(
            AlertRule::new(
                "SlowFirstToken",
                Figure::time_to_first_token_quantile(0.99, window),
            )
            .for_each("gen_ai_request_model")
            .above(0.001)
            .min_requests(1),
        )
        .rule(
            AlertRule::new("Tokens", Figure::token_rate(window))
                .matching("gen_ai_token_type", "output")
                .above(0.0),
        );
    let observer = Observer::builder()
        .alerts(Alerts::new(rules))
        .unwrap()
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            post(|| async {
                let frames = [
                    ROLE.to_owned(),
                    chunk("a"),
                    chunk("b"),
                    USAGE_AND_DONE.to_owned(),
                ];
                let stream = tokio_stream::iter(frames).then(|f| async move {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    Ok::<_, Infallible>(Frame::data(Bytes::from(f)))
                });
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Body::new(StreamBody::new(stream)))
                    .unwrap()
            }),
        )
        .layer(observer.llm_server_layer().provider("openai").model("m"))
        .merge(observer.router());
    let addr = serve(app).await;
    let http = reqwest::Client::new();
    let started = std::time::Instant::now();
    let firing = loop {
        http.post(format!("http://{addr}/v1/chat/completions"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let alerts: serde_json::Value = http
            .get(format!("http://{addr}/v1/alerts"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let states: Vec<String> = alerts["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["state"].as_str().unwrap_or("").to_owned())
            .collect();
        if states.iter().all(|s| s == "firing") || started.elapsed() > Duration::from_secs(40) {
            break (states, alerts);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(firing.0, ["firing", "firing"], "{}", firing.1);
}
