//! The cost of the LLM streaming layer next to passing the same response through untouched,
//! measured in one run.
//!
//! ```text
//! cargo bench --bench llm --features llm
//! ```
//!
//! Each iteration calls a service that answers at once with an OpenAI-style event stream
//! already in memory (`Bytes` frames, one event each, of about 200 bytes like OpenAI's), and
//! reads the response body to its end. No network, no runtime: the figures are the layer's
//! own cost.
//!
//! - `llm_stream_500`: a role chunk, 500 content events, a `usage` event and `[DONE]`
//!   (503 frames). `untouched` is the bare service; `server_layer` goes through
//!   `observer.llm_server_layer()` (the reading of every event, the time to first token, the
//!   tokens and durations recorded at the end).
//! - `llm_stream_1`: the same with one content event: the per-request part of the cost
//!   (labels, lookups, recording).
//!
//! Per chunk: (`server_layer` − `untouched`) of `llm_stream_500`, less that of `llm_stream_1`,
//! over 499 events.

#![allow(missing_docs)]

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::{Request, Response};
use http_body::{Body, Frame};
use tower::{Layer, Service};
use tower_observe::llm::LlmLabels;
use tower_observe::Observer;

/// A body that yields pre-built frames.
struct Frames(std::vec::IntoIter<Bytes>);

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.next().map(|b| Ok(Frame::data(b))))
    }
}

fn stream(tokens: usize) -> Vec<Bytes> {
    let event = |delta: &str, usage: &str| {
        Bytes::from(format!(
            "data: {{\"id\":\"chatcmpl-8xQ2fGz\",\"object\":\"chat.completion.chunk\",\"created\":1733480000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{delta}],\"usage\":{usage}}}\n\n"
        ))
    };
    let mut frames = vec![event(
        r#"{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}"#,
        "null",
    )];
    for i in 0..tokens {
        frames.push(event(
            &format!(r#"{{"index":0,"delta":{{"content":" tok{i}"}},"logprobs":null,"finish_reason":null}}"#),
            "null",
        ));
    }
    frames.push(event(
        "",
        &format!(
            r#"{{"prompt_tokens":42,"completion_tokens":{tokens},"total_tokens":{}}}"#,
            42 + tokens
        ),
    ));
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    frames
}

/// Polls a future that is ready at once (the services here never wait).
fn now<F: Future>(f: F) -> F::Output {
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => unreachable!("the service answers at once"),
    }
}

/// Reads a body to its end; returns the bytes read.
fn drain<B: Body<Data = Bytes>>(body: B) -> usize {
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut body = std::pin::pin!(body);
    let mut n = 0;
    while let Poll::Ready(Some(Ok(frame))) = body.as_mut().poll_frame(&mut cx) {
        if let Some(data) = frame.data_ref() {
            n += data.len();
        }
    }
    n
}

fn bench_stream(c: &mut Criterion, tokens: usize) {
    let frames = stream(tokens);
    let service = {
        let frames = frames.clone();
        tower::service_fn(move |_: Request<()>| {
            let res = Response::builder()
                .header("content-type", "text/event-stream")
                .body(Frames(frames.clone().into_iter()))
                .unwrap();
            std::future::ready(Ok::<_, Infallible>(res))
        })
    };
    let observer = Observer::new();
    let layered = observer
        .llm_server_layer()
        .provider("openai")
        .layer(service.clone());
    let request = || {
        let mut req = Request::new(());
        req.extensions_mut()
            .insert(LlmLabels::new().model("gpt-4o-mini"));
        req
    };

    let mut group = c.benchmark_group(format!("llm_stream_{tokens}"));
    group.throughput(Throughput::Elements(frames.len() as u64));
    let mut bare = service;
    group.bench_function("untouched", |b| {
        b.iter(|| {
            let res = now(bare.call(black_box(request()))).unwrap();
            black_box(drain(res.into_body()))
        })
    });
    let mut layered = layered;
    group.bench_function("server_layer", |b| {
        b.iter(|| {
            let res = now(layered.call(black_box(request()))).unwrap();
            black_box(drain(res.into_body()))
        })
    });
    group.finish();
    let stats = observer.stats().llm.unwrap();
    assert!(stats.server.models["gpt-4o-mini"].output_tokens > 0);
}

fn benches(c: &mut Criterion) {
    bench_stream(c, 500);
    bench_stream(c, 1);
}

criterion_group!(llm, benches);
criterion_main!(llm);
