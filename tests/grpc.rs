//! gRPC end to end: a real tonic server and client over loopback, both instrumented.
//! Its own test binary for the trace-propagation check (no subscriber is installed, so the
//! layer's own IDs are used).
#![cfg(all(feature = "tonic", feature = "axum"))]

mod support;

#[allow(clippy::all, unreachable_pub, missing_docs)]
#[path = "../proto/echo_v1.rs"]
mod echo;

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use echo::echo_client::EchoClient;
use echo::echo_server::{Echo, EchoServer};
use echo::{CountRequest, SayReply, SayRequest};
use support::{eventually, sample, serve};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};
use tower_observe::grpc::GrpcClient;
use tower_observe::trace::{TraceContext, TraceOptions};
use tower_observe::Observer;

const SERVER_COUNT: &str = "rpc_server_call_duration_seconds_count";
const CLIENT_COUNT: &str = "rpc_client_call_duration_seconds_count";

#[derive(Default)]
struct EchoService;

type ReplyStream = Pin<Box<dyn Stream<Item = Result<SayReply, Status>> + Send>>;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn say(&self, request: Request<SayRequest>) -> Result<Response<SayReply>, Status> {
        let metadata = request.metadata().clone();
        let req = request.into_inner();
        if let Some(ms) = req.message.strip_prefix("sleep:") {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
        }
        if req.message == "panic" {
            panic!("echo gave up");
        }
        if req.fail_with != 0 {
            return Err(Status::new(req.fail_with.into(), "asked to fail"));
        }
        let message = if req.message == "headers" {
            // What the caller sent, and the trace the server continued.
            let get = |k: &str| {
                metadata
                    .get(k)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned()
            };
            let trace = TraceContext::current()
                .map(|c| c.span.trace_id.iter().map(|b| format!("{b:02x}")).collect())
                .unwrap_or_else(|| "-".to_owned());
            format!("{}|{}|{trace}", get("x-request-id"), get("traceparent"))
        } else {
            req.message
        };
        Ok(Response::new(SayReply { message }))
    }

    type CountStream = ReplyStream;

    async fn count(
        &self,
        request: Request<CountRequest>,
    ) -> Result<Response<Self::CountStream>, Status> {
        let req = request.into_inner();
        let interval = Duration::from_millis(u64::from(req.interval_ms));
        let replies = tokio_stream::iter(0..req.count).then(move |i| async move {
            tokio::time::sleep(interval).await;
            Ok(SayReply {
                message: i.to_string(),
            })
        });
        let end =
            (req.fail_with != 0).then(|| Err(Status::new(req.fail_with.into(), "stream failed")));
        Ok(Response::new(Box::pin(
            replies.chain(tokio_stream::iter(end)),
        )))
    }
}

async fn start(observer: &Observer) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let layer = observer
        .grpc_server_layer()
        .service(<EchoServer<EchoService> as tonic::server::NamedService>::NAME)
        .traces(TraceOptions::new());
    let server = Server::builder()
        .layer(layer)
        .add_service(EchoServer::new(EchoService))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);
    addr
}

async fn client(observer: &Observer, addr: SocketAddr) -> EchoClient<GrpcClient<Channel>> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    EchoClient::new(
        tower::ServiceBuilder::new()
            .layer(observer.grpc_client_layer())
            .service(channel),
    )
}

fn say(message: &str, fail_with: i32) -> SayRequest {
    SayRequest {
        message: message.into(),
        fail_with,
    }
}

fn metrics(observer: &Observer) -> String {
    observer.render_metrics().unwrap()
}

fn count(text: &str, name: &str, method: &str, code: &str) -> Option<f64> {
    sample(
        text,
        name,
        &[
            ("rpc_system_name", "grpc"),
            ("rpc_method", method),
            ("rpc_status_code", code),
        ],
    )
}

const SAY: &str = "echo.v1.Echo/Say";
const COUNT: &str = "echo.v1.Echo/Count";

#[tokio::test]
async fn statuses_come_from_trailers_and_trailers_only_responses() {
    let server_observer = Observer::new();
    let client_observer = Observer::new();
    let addr = start(&server_observer).await;
    let mut client = client(&client_observer, addr).await;

    client.say(say("hi", 0)).await.unwrap();
    let err = client.say(say("", 5)).await.unwrap_err(); // trailers-only NOT_FOUND
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = client.say(say("", 13)).await.unwrap_err(); // trailers-only INTERNAL
    assert_eq!(err.code(), tonic::Code::Internal);
    // INTERNAL in the trailers after two messages.
    let mut stream = client
        .count(CountRequest {
            count: 2,
            interval_ms: 1,
            fail_with: 13,
        })
        .await
        .unwrap()
        .into_inner();
    let mut received = 0;
    let end = loop {
        match stream.message().await {
            Ok(Some(_)) => received += 1,
            Ok(None) => break None,
            Err(status) => break Some(status.code()),
        }
    };
    assert_eq!((received, end), (2, Some(tonic::Code::Internal)));
    drop(stream);

    let check = |text: &str, name: &str| {
        assert_eq!(count(text, name, SAY, "OK"), Some(1.0), "{text}");
        assert_eq!(count(text, name, SAY, "NOT_FOUND"), Some(1.0), "{text}");
        assert_eq!(count(text, name, SAY, "INTERNAL"), Some(1.0), "{text}");
        assert_eq!(count(text, name, COUNT, "INTERNAL"), Some(1.0), "{text}");
    };
    eventually(|| count(&metrics(&server_observer), SERVER_COUNT, COUNT, "INTERNAL").is_some())
        .await;
    let server = metrics(&server_observer);
    check(&server, SERVER_COUNT);
    let client_text = metrics(&client_observer);
    check(&client_text, CLIENT_COUNT);
    // Server side, NOT_FOUND is the caller's business; INTERNAL is the server's.
    assert!(
        !server.contains(r#"rpc_status_code="NOT_FOUND",error_type"#),
        "{server}"
    );
    assert!(server.contains(r#"rpc_status_code="INTERNAL",error_type="INTERNAL""#));
    assert!(client_text.contains(r#"rpc_status_code="NOT_FOUND",error_type="NOT_FOUND""#));
    assert_eq!(
        sample(
            &server,
            "rpc_server_responses_per_rpc_sum",
            &[("rpc_method", COUNT)]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &server,
            "rpc_server_requests_per_rpc_sum",
            &[("rpc_method", SAY)]
        ),
        Some(3.0)
    );

    let stats = server_observer.stats();
    let say_stats = &stats.grpc.server[SAY];
    assert_eq!(say_stats.calls, 3);
    assert_eq!(say_stats.errors, 1);
    assert_eq!(say_stats.status_codes["OK"], 1);
    assert_eq!(say_stats.status_codes["NOT_FOUND"], 1);
    assert_eq!(client_observer.stats().grpc.client[SAY].errors, 2);
    // /health counts gRPC calls served: 2 of 4 failed with server-fault codes.
    let health = server_observer.health().await;
    assert_eq!(health.requests_last_minute, 4);
    assert_eq!(health.error_rate, Some(0.5));
}

#[tokio::test]
async fn streaming_is_timed_to_its_end_and_cancellation_is_recorded() {
    let server_observer = Observer::new();
    let client_observer = Observer::new();
    let addr = start(&server_observer).await;
    let mut client = client(&client_observer, addr).await;

    let mut stream = client
        .count(CountRequest {
            count: 3,
            interval_ms: 100,
            fail_with: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while stream.message().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 3);
    eventually(|| count(&metrics(&server_observer), SERVER_COUNT, COUNT, "OK").is_some()).await;
    let text = metrics(&server_observer);
    let sum = sample(
        &text,
        "rpc_server_call_duration_seconds_sum",
        &[("rpc_method", COUNT)],
    )
    .unwrap();
    assert!(sum >= 0.3, "timed to the end of the stream: {sum}");
    let client_sum = sample(
        &metrics(&client_observer),
        "rpc_client_call_duration_seconds_sum",
        &[("rpc_method", COUNT)],
    )
    .unwrap();
    assert!(client_sum >= 0.3, "{client_sum}");

    // The client reads one message of an endless-ish stream and goes away.
    let mut stream = client
        .count(CountRequest {
            count: 1000,
            interval_ms: 20,
            fail_with: 0,
        })
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap();
    drop(stream);
    eventually(|| count(&metrics(&server_observer), SERVER_COUNT, COUNT, "CANCELLED").is_some())
        .await;
    assert_eq!(
        count(&metrics(&client_observer), CLIENT_COUNT, COUNT, "CANCELLED"),
        Some(1.0)
    );
    let stats = server_observer.stats();
    assert_eq!(stats.grpc.server[COUNT].cancelled, 1);
}

#[tokio::test]
async fn calls_dropped_before_the_handler_answers_are_recorded_once() {
    let server_observer = Observer::new();
    let client_observer = Observer::new();
    let addr = start(&server_observer).await;
    let mut client = client(&client_observer, addr).await;
    let calls = |o: &Observer| o.stats().grpc.server.get(SAY).map_or(0, |e| e.calls);

    // A client that cancels while the handler sleeps: the server drops the call.
    let call = tokio::spawn({
        let mut client = client.clone();
        async move { client.say(say("sleep:2000", 0)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    call.abort();
    eventually(|| calls(&server_observer) == 1).await;
    let text = metrics(&server_observer);
    assert_eq!(
        count(&text, SERVER_COUNT, SAY, "CANCELLED"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        count(&metrics(&client_observer), CLIENT_COUNT, SAY, "CANCELLED"),
        Some(1.0)
    );

    // Short deadlines (1 ms, and 50 ms while the handler sleeps): each call is recorded once.
    for timeout in [1u64; 20].into_iter().chain([50]) {
        let mut req = Request::new(say("sleep:300", 0));
        req.set_timeout(Duration::from_millis(timeout));
        let status = client.say(req).await.unwrap_err();
        assert!(
            matches!(
                status.code(),
                tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
            ),
            "{status:?}"
        );
    }
    eventually(|| calls(&server_observer) == 22).await;
    // Let any late recording show before counting.
    tokio::time::sleep(Duration::from_millis(400)).await;
    // A deadline call is DEADLINE_EXCEEDED once its deadline has passed on the server's
    // clock; when the client's cancellation (sent at its own deadline, which started before
    // the server saw the call) arrives a moment earlier, it is CANCELLED.
    let stats = server_observer.stats();
    let say_stats = &stats.grpc.server[SAY];
    assert_eq!(say_stats.calls, 22, "each call exactly once");
    let codes = &say_stats.status_codes;
    let code = |name| codes.get(name).copied().unwrap_or(0);
    let (deadline, cancelled) = (code("DEADLINE_EXCEEDED"), code("CANCELLED"));
    assert_eq!(deadline + cancelled, 22, "{codes:?}");
    assert!(deadline >= 15, "deadlines are recognised: {codes:?}");
    let text = metrics(&server_observer);
    assert_eq!(
        count(&text, SERVER_COUNT, SAY, "DEADLINE_EXCEEDED"),
        Some(deadline as f64),
        "{text}"
    );
    let client_text = metrics(&client_observer);
    let client_code = |name| count(&client_text, CLIENT_COUNT, SAY, name).unwrap_or(0.0);
    let client_deadline = client_code("DEADLINE_EXCEEDED");
    assert_eq!(
        client_deadline + client_code("CANCELLED"),
        22.0,
        "{client_text}"
    );
    assert!(client_deadline >= 15.0, "{client_text}");
}

#[tokio::test]
async fn the_client_layer_labels_the_server_it_calls() {
    let server_observer = Observer::new();
    let client_observer = Observer::new();
    let addr = start(&server_observer).await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = EchoClient::new(
        tower::ServiceBuilder::new()
            .layer(
                client_observer
                    .grpc_client_layer()
                    .server("127.0.0.1", addr.port()),
            )
            .service(channel),
    );
    client.say(say("hi", 0)).await.unwrap();
    let port = addr.port().to_string();
    let text = metrics(&client_observer);
    assert_eq!(
        sample(
            &text,
            CLIENT_COUNT,
            &[
                ("rpc_method", SAY),
                ("server_address", "127.0.0.1"),
                ("server_port", &port)
            ]
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn unknown_methods_are_other() {
    let server_observer = Observer::new();
    let addr = start(&server_observer).await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    for path in ["/echo.v1.Echo/Nope", "/scanner.Probe/Anything"] {
        grpc.ready().await.unwrap();
        let status = grpc
            .unary::<SayRequest, SayReply, _>(
                Request::new(say("x", 0)),
                path.parse().unwrap(),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unimplemented);
    }
    eventually(|| {
        count(
            &metrics(&server_observer),
            SERVER_COUNT,
            "_OTHER",
            "UNIMPLEMENTED",
        ) == Some(2.0)
    })
    .await;
    let text = metrics(&server_observer);
    assert!(
        !text.contains("Nope") && !text.contains("scanner"),
        "{text}"
    );
}

#[tokio::test]
async fn request_id_and_traceparent_reach_the_server() {
    let grpc_observer = Observer::new();
    let addr = start(&grpc_observer).await;
    // An HTTP front whose handler calls the gRPC backend.
    let front_observer = Observer::new();
    let grpc_client = client(&front_observer, addr).await;
    let app = axum::Router::new()
        .route(
            "/call",
            axum::routing::get(move || {
                let mut grpc_client = grpc_client.clone();
                async move {
                    grpc_client
                        .say(say("headers", 0))
                        .await
                        .unwrap()
                        .into_inner()
                        .message
                }
            }),
        )
        .layer(front_observer.layer().traces(TraceOptions::new()));
    let front = serve(app).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let seen = reqwest::Client::new()
        .get(format!("http://{front}/call"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .header("x-request-id", "req-grpc-7")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let parts: Vec<&str> = seen.split('|').collect();
    assert_eq!(parts[0], "req-grpc-7", "{seen}");
    assert!(parts[1].starts_with(&format!("00-{trace_id}-")), "{seen}");
    assert_eq!(parts[2], trace_id, "the server continued the trace: {seen}");
}

#[tokio::test]
async fn a_panicking_handler_answers_internal_and_the_server_keeps_serving() {
    let server_observer = Observer::new();
    let client_observer = Observer::new();
    let addr = start(&server_observer).await;
    let mut client = client(&client_observer, addr).await;

    let err = client.say(say("panic", 0)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Internal);
    assert_eq!(err.message(), "panic");
    // Same connection, next call served.
    let reply = client.say(say("hi", 0)).await.unwrap();
    assert_eq!(reply.into_inner().message, "hi");

    eventually(|| {
        server_observer
            .stats()
            .grpc
            .server
            .get(SAY)
            .map_or(0, |e| e.calls)
            == 2
    })
    .await;
    let text = metrics(&server_observer);
    assert_eq!(
        count(&text, SERVER_COUNT, SAY, "INTERNAL"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(count(&text, SERVER_COUNT, SAY, "OK"), Some(1.0), "{text}");
    assert_eq!(server_observer.stats().grpc.server[SAY].errors, 1);
}
