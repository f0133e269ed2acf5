//! An LLM gateway's pieces, shared by the `gateway` and `demo` examples (feature `llm`): local
//! model upstreams streaming OpenAI-style chat completions, the gateway route forwarding to
//! them through the LLM client layer under the LLM server layer, and a driver of streamed
//! chats.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Router};
use tower_observe::Observer;

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
/// `token_delays`: the time between two tokens of the `openai` and the `mistral_ai` upstream
/// (a stream lasts up to 48 of them).
pub async fn llm_routes(
    observer: &Observer,
    token_delays: [Duration; 2],
) -> (Router, Vec<SocketAddr>) {
    use tower::Layer;

    let openai = start_llm_upstream(token_delays[0]).await;
    let mistral = start_llm_upstream(token_delays[1]).await;
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
pub async fn drive_chat(addr: SocketAddr, rps: u32) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("reqwest client");
    super::drive(rps, 32, move || {
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
