//! Operations and queues, shared by the `gateway` and `demo` examples (feature `operations`): a
//! fake database, an external API and a job queue with three workers, behind
//! `GET /v1/users/{id}`.

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
pub fn router(observer: &Observer) -> Router {
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

pub fn traffic_url(addr: SocketAddr) -> String {
    format!("http://{addr}/v1/users/{}", fastrand::u64(1..1000))
}

/// `GET /v1/users/{id}` at `rps` per second.
pub async fn drive(addr: SocketAddr, rps: u32) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("reqwest client");
    super::drive(rps, 32, move || {
        let request = client.get(traffic_url(addr));
        async move {
            if let Ok(res) = request.send().await {
                let _ = res.bytes().await;
            }
        }
    })
    .await;
}
