#![doc = include_str!("../docs/admin.md")]

use std::any::Any;
use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::observer::{Part, Pending, RecordSink};
use crate::response::not_found;
use crate::server::ObserverEndpoint;
use crate::{Observer, ObserverBuilder};

/// How long the admin listener waits, once its shutdown future has resolved, for the requests
/// it is serving to finish (a scrape, a `/health` with slow checks) before it closes the
/// connections left: a dashboard's event stream never ends by itself.
pub const ADMIN_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The admin address configured on the builder or in `TOWER_OBSERVE_ADMIN_ADDR`.
#[derive(Debug, Default)]
pub(crate) struct AdminPending {
    addr: Option<SocketAddr>,
    /// From the environment ([`crate::env`]); the code's address wins.
    pub(crate) env_addr: Option<SocketAddr>,
}

impl Pending for AdminPending {
    fn attach(self: Box<Self>, observer: &Observer) -> Option<Arc<dyn RecordSink>> {
        if let Some(addr) = self.addr.or(self.env_addr) {
            observer.part(move || AdminPart { addr });
        }
        None
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// The admin listener's address, attached when one is configured.
#[derive(Debug)]
struct AdminPart {
    addr: SocketAddr,
}

impl Part for AdminPart {}

impl ObserverBuilder {
    /// The address [`Observer::serve_admin`] binds (feature `admin`): `0.0.0.0:9464` to be
    /// reached from other pods, `127.0.0.1:9464` for the host only. Over
    /// `TOWER_OBSERVE_ADMIN_ADDR` (read by
    /// [`configure_from_env`](ObserverBuilder::configure_from_env)).
    pub fn admin_addr(mut self, addr: impl Into<SocketAddr>) -> Self {
        self.pending::<AdminPending>().addr = Some(addr.into());
        self
    }
}

impl Observer {
    /// The address configured for the admin listener (in code or in
    /// `TOWER_OBSERVE_ADMIN_ADDR`), if any.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.attached::<AdminPart>().map(|part| part.addr)
    }

    /// What the admin listener serves: the observer's routes ([`Observer::router`]: `/metrics`,
    /// `/v1/*`, `/health`, `/health/live`, `/dashboard`, the reset and log routes) behind
    /// [`Observer::layer`], so they are recorded as the observer's own endpoints
    /// ([`OwnEndpoints::Apart`](crate::server::OwnEndpoints::Apart)); any other path answers
    /// 404, recorded apart too, so a scanner on the admin port never reaches the
    /// application's `_UNMATCHED` figures. For serving it yourself (TLS, a Unix socket, other
    /// layers).
    pub fn admin_router(&self) -> Router {
        self.endpoints_router(true)
            .fallback(|| async {
                let mut response = not_found();
                response.extensions_mut().insert(ObserverEndpoint);
                response
            })
            .layer(self.layer())
    }

    /// Serves [`admin_router`](Self::admin_router) on the configured
    /// [`admin_addr`](ObserverBuilder::admin_addr) (or `TOWER_OBSERVE_ADMIN_ADDR`) until
    /// `shutdown` resolves, then ends gracefully: no new connections, the requests in progress
    /// given up to [`ADMIN_SHUTDOWN_GRACE`] to finish. Returns once the address is bound, with
    /// the bound address (port `0` picks a free one) and a future that resolves when the
    /// listener has ended.
    ///
    /// Errors: no address configured ([`io::ErrorKind::InvalidInput`]), or the bind failed.
    /// Runs on the current Tokio runtime.
    pub async fn serve_admin<F>(&self, shutdown: F) -> io::Result<AdminHandle>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Some(addr) = self.admin_addr() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no admin address: set ObserverBuilder::admin_addr or TOWER_OBSERVE_ADMIN_ADDR (with ObserverBuilder::configure_from_env)",
            ));
        };
        let listener = TcpListener::bind(addr).await?;
        self.serve_admin_on(listener, shutdown)
    }

    /// [`serve_admin`](Self::serve_admin) on a listener already bound (to any address, the
    /// configured one or not). Must be called within a Tokio runtime (an error otherwise).
    pub fn serve_admin_on<F>(&self, listener: TcpListener, shutdown: F) -> io::Result<AdminHandle>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let local_addr = listener.local_addr()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            io::Error::other(format!("the admin listener needs a Tokio runtime: {e}"))
        })?;
        let router = self.admin_router();
        let task = runtime.spawn(run(listener, router, shutdown, ADMIN_SHUTDOWN_GRACE));
        tracing::info!(target: "tower_observe::admin", { "server.address" = %local_addr }, "admin listener started");
        Ok(AdminHandle { local_addr, task })
    }
}

/// Serves `router` until `shutdown`, then for at most `grace` more.
async fn run<F>(
    listener: TcpListener,
    router: Router,
    shutdown: F,
    grace: Duration,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut stopped_for_serve = stopped;
    let serve = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            // An error means the sender is gone: stop too.
            let _ = stopped_for_serve.wait_for(|stop| *stop).await;
        })
        .into_future();
    let mut serve = std::pin::pin!(serve);
    let mut shutdown = std::pin::pin!(shutdown);
    tokio::select! {
        ended = &mut serve => return ended,
        () = &mut shutdown => {}
    }
    let _ = stop.send(true);
    match tokio::time::timeout(grace, serve).await {
        Ok(ended) => ended,
        // The connections still open (an event stream) are closed with the task.
        Err(_) => Ok(()),
    }
}

/// The running admin listener, returned by [`Observer::serve_admin`]: its bound address, and
/// a future that resolves when the listener has ended (after its shutdown future resolved
/// and the requests in progress finished, or the accept loop failed). Dropping the handle
/// leaves the listener running.
#[derive(Debug)]
#[must_use = "the handle gives the bound address and waits for the end; drop it to detach"]
pub struct AdminHandle {
    local_addr: SocketAddr,
    task: JoinHandle<io::Result<()>>,
}

impl AdminHandle {
    /// The address the listener is bound to (with the port chosen when `0` was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Future for AdminHandle {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.task)
            .poll(cx)
            .map(|joined| match joined {
                Ok(ended) => ended,
                Err(e) => Err(io::Error::other(format!(
                    "the admin listener's task failed: {e}"
                ))),
            })
    }
}
