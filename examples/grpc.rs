//! A tonic gRPC server with a unary and a server-streaming method, instrumented, and a client
//! that calls it; metrics and statistics of both sides on one HTTP port.
//!
//! ```text
//! cargo run --example grpc --all-features                # server + a client calling it
//! cargo run --example grpc --all-features -- --addr 127.0.0.1:8082 --grpc-addr 127.0.0.1:50052 --exit-after 30
//! ```
//!
//! The client calls `Say` (now and then asking for `NOT_FOUND` or `INTERNAL`), reads
//! `Count` streams to their end (some end with `INTERNAL` in the trailers), cancels one now and
//! then, and calls a method the server does not have. Watch `rpc_server_call_duration_seconds`
//! and `rpc_client_call_duration_seconds` on `/metrics`, and `grpc` in `/v1/stats`.

#[allow(clippy::all, unreachable_pub, missing_docs)]
#[path = "../proto/echo_v1.rs"]
mod echo;

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use echo::echo_client::EchoClient;
use echo::echo_server::{Echo, EchoServer};
use echo::{CountRequest, SayReply, SayRequest};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};
use tower_observe::grpc::GrpcClient;
use tower_observe::trace::TraceOptions;
use tower_observe::Observer;

mod common;

const SPEC: common::Spec = common::Spec {
    name: "grpc",
    default_addr: SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 3002),
    default_rps: 20,
    max_rps: 500,
    extra: &[("--grpc-addr", "HOST:PORT")],
};

struct EchoService;

type ReplyStream = Pin<Box<dyn Stream<Item = Result<SayReply, Status>> + Send>>;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn say(&self, request: Request<SayRequest>) -> Result<Response<SayReply>, Status> {
        let req = request.into_inner();
        tokio::time::sleep(Duration::from_millis(fastrand::u64(1..20))).await;
        if req.fail_with != 0 {
            return Err(Status::new(req.fail_with.into(), "asked to fail"));
        }
        Ok(Response::new(SayReply {
            message: req.message,
        }))
    }

    type CountStream = ReplyStream;

    async fn count(
        &self,
        request: Request<CountRequest>,
    ) -> Result<Response<Self::CountStream>, Status> {
        let req = request.into_inner();
        if req.count > 10_000 {
            return Err(Status::invalid_argument("count must be at most 10000"));
        }
        let interval = Duration::from_millis(u64::from(req.interval_ms.min(1000)));
        let replies = tokio_stream::iter(0..req.count).then(move |i| async move {
            tokio::time::sleep(interval).await;
            Ok(SayReply {
                message: i.to_string(),
            })
        });
        let end = (req.fail_with != 0).then(|| Err(Status::new(req.fail_with.into(), "failed")));
        Ok(Response::new(Box::pin(
            replies.chain(tokio_stream::iter(end)),
        )))
    }
}

/// One call of the client's mix.
async fn call_once(client: &mut EchoClient<GrpcClient<Channel>>, channel: &Channel) {
    let say = |fail_with| SayRequest {
        message: "hello".into(),
        fail_with,
    };
    match fastrand::u8(0..100) {
        0..=54 => {
            let _ = client.say(say(0)).await;
        }
        55..=64 => {
            let _ = client.say(say(5)).await; // NOT_FOUND, trailers-only
        }
        65..=69 => {
            let _ = client.say(say(13)).await; // INTERNAL, trailers-only
        }
        70..=89 => {
            let fail_with = if fastrand::u8(0..4) == 0 { 13 } else { 0 };
            let request = CountRequest {
                count: fastrand::u32(1..6),
                interval_ms: 10,
                fail_with,
            };
            if let Ok(response) = client.count(request).await {
                let mut stream = response.into_inner();
                while let Ok(Some(_)) = stream.message().await {}
            }
        }
        90..=95 => {
            // Read one message of a long stream, then walk away: CANCELLED on both sides.
            let request = CountRequest {
                count: 100,
                interval_ms: 10,
                fail_with: 0,
            };
            if let Ok(response) = client.count(request).await {
                let _ = response.into_inner().message().await;
            }
        }
        _ => {
            // A method the server does not serve: UNIMPLEMENTED, labelled _OTHER.
            let mut grpc = tonic::client::Grpc::new(channel.clone());
            if grpc.ready().await.is_ok() {
                let _ = grpc
                    .unary::<SayRequest, SayReply, _>(
                        Request::new(say(0)),
                        http::uri::PathAndQuery::from_static("/echo.v1.Echo/Shout"),
                        tonic_prost::ProstCodec::default(),
                    )
                    .await;
            }
        }
    }
}

async fn drive_client(observer: Observer, grpc_addr: SocketAddr, rps: u32) {
    let channel = loop {
        match Channel::from_shared(format!("http://{grpc_addr}"))
            .expect("valid URI")
            .connect()
            .await
        {
            Ok(channel) => break channel,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let service = tower::ServiceBuilder::new()
        // tonic's clients send path-only URIs: the layer is told the server it talks to.
        .layer(
            observer
                .grpc_client_layer()
                .server(&grpc_addr.ip().to_string(), grpc_addr.port()),
        )
        .service(channel.clone());
    common::drive(rps, 32, move || {
        let mut client = EchoClient::new(service.clone());
        let channel = channel.clone();
        async move { call_once(&mut client, &channel).await }
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
    // One observer for both sides: server calls under `grpc.server`, client calls under
    // `grpc.client` in /v1/stats.
    let observer = Observer::new();
    let grpc_addr: SocketAddr = match args.extra.get("--grpc-addr").map(|v| v.parse()) {
        None => ([127, 0, 0, 1], 50051).into(),
        Some(Ok(addr)) => addr,
        Some(Err(e)) => {
            eprintln!("--grpc-addr: {e}");
            std::process::exit(2);
        }
    };
    let grpc_listener = common::bind(grpc_addr).await;
    let grpc_addr = grpc_listener.local_addr().expect("bound address");
    let server = Server::builder()
        .layer(
            observer
                .grpc_server_layer()
                .service(<EchoServer<EchoService> as tonic::server::NamedService>::NAME)
                .traces(TraceOptions::new()),
        )
        .add_service(EchoServer::new(EchoService))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(
            grpc_listener,
        ));
    tokio::spawn(async move {
        if let Err(e) = server.await {
            eprintln!("gRPC server error: {e}");
        }
    });

    let listener = common::bind(args.addr).await;
    let addr = listener.local_addr().expect("bound address");
    println!("tower-observe gRPC example");
    println!("  gRPC:     http://{grpc_addr} (echo.v1.Echo: Say, Count)");
    println!("  metrics:  http://{addr}/metrics");
    println!("  stats:    http://{addr}/v1/stats");
    println!("  client:   {} calls/s", args.rps);
    tokio::spawn(drive_client(observer.clone(), grpc_addr, args.rps));

    common::serve(listener, observer.router(), args.exit_after).await;
}
