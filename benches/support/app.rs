//! Shared by the benchmarks: the application every stack wraps, and the request it serves.

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::Request;

/// One route with a path parameter, answering a short body.
pub(crate) fn base() -> Router {
    Router::new().route("/users/{id}", get(|| async { "user" }))
}

/// `GET /users/42` with the headers a real client sends.
#[allow(dead_code)] // the load benchmark sends its requests over TCP
pub(crate) fn request() -> Request<Body> {
    Request::get("/users/42")
        .header("host", "127.0.0.1:3000")
        .header("user-agent", "bench/1.0")
        .header("accept", "*/*")
        .body(Body::empty())
        .unwrap()
}
