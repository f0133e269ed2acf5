//! What the examples share: their command-line flags, serving until Ctrl-C (or
//! `--exit-after`), and a bounded self-driven load. Not an example itself.
#![allow(dead_code, unreachable_pub, missing_docs)]

#[cfg(feature = "llm")]
pub mod llm;
#[cfg(feature = "operations")]
pub mod ops;

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;

/// The flags an example takes.
pub struct Spec {
    pub name: &'static str,
    pub default_addr: SocketAddr,
    pub default_rps: u32,
    pub max_rps: u32,
    /// Further `--flag VALUE` options, with their placeholder for the usage line.
    pub extra: &'static [(&'static str, &'static str)],
}

pub struct Args {
    pub addr: SocketAddr,
    pub traffic: bool,
    pub rps: u32,
    pub exit_after: Option<Duration>,
    pub extra: HashMap<&'static str, String>,
}

impl Args {
    /// The value of the extra flag `flag` parsed as a `T`, or `None` when it was not given;
    /// on a bad value, prints why and exits with 2 (as a bad built-in flag does).
    pub fn extra_parsed<T>(&self, flag: &str) -> Option<T>
    where
        T: FromStr,
        T::Err: Display,
    {
        let v = self.extra.get(flag)?;
        match v.parse() {
            Ok(value) => Some(value),
            Err(e) => {
                eprintln!("{flag} {v}: {e}");
                std::process::exit(2);
            }
        }
    }
}

impl Spec {
    fn usage(&self) -> String {
        let mut usage = format!(
            "usage: {} [--addr HOST:PORT] [--traffic] [--rps N] [--exit-after SECONDS]",
            self.name
        );
        for (flag, value) in self.extra {
            usage.push_str(&format!(" [{flag} {value}]"));
        }
        usage
    }

    fn try_parse(&self, mut it: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut args = Args {
            addr: self.default_addr,
            traffic: false,
            rps: self.default_rps,
            exit_after: None,
            extra: HashMap::new(),
        };
        while let Some(arg) = it.next() {
            let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
            match arg.as_str() {
                "--addr" => {
                    let v = value("--addr")?;
                    args.addr = v.parse().map_err(|e| format!("--addr {v}: {e}"))?;
                }
                "--traffic" => args.traffic = true,
                "--rps" => {
                    let v = value("--rps")?;
                    args.rps = v.parse().map_err(|e| format!("--rps {v}: {e}"))?;
                    if !(1..=self.max_rps).contains(&args.rps) {
                        return Err(format!("--rps must be between 1 and {}", self.max_rps));
                    }
                }
                "--exit-after" => {
                    let v = value("--exit-after")?;
                    let secs: u64 = v.parse().map_err(|e| format!("--exit-after {v}: {e}"))?;
                    args.exit_after = Some(Duration::from_secs(secs));
                }
                "-h" | "--help" => return Err(self.usage()),
                other => match self.extra.iter().find(|(flag, _)| *flag == other) {
                    Some((flag, _)) => {
                        let v = value(flag)?;
                        args.extra.insert(flag, v);
                    }
                    None => return Err(format!("unknown argument {other:?}\n{}", self.usage())),
                },
            }
        }
        Ok(args)
    }

    /// The process's flags; on a bad one, prints why with the usage and exits with 2.
    pub fn parse(&self) -> Args {
        self.try_parse(std::env::args().skip(1))
            .unwrap_or_else(|message| {
                eprintln!("{message}");
                std::process::exit(2);
            })
    }
}

/// Binds `addr`, or says why not and exits with 1.
pub async fn bind(addr: SocketAddr) -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        })
}

/// Ctrl-C, or SIGTERM (what `docker stop` and Kubernetes send to stop a container).
pub async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                return;
            }
            Err(e) => eprintln!("cannot watch SIGTERM ({e}); stopping on Ctrl-C only"),
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Serves `app` until Ctrl-C or SIGTERM, or for `exit_after`.
pub async fn serve(listener: tokio::net::TcpListener, app: Router, exit_after: Option<Duration>) {
    let shutdown = async move {
        match exit_after {
            Some(after) => tokio::time::sleep(after).await,
            None => stop_signal().await,
        }
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        eprintln!("server error: {e}");
        std::process::exit(1);
    }
}

/// A steady, bounded load: `rps` calls of `next()` per second, at most `max_in_flight` at
/// once; when the target is saturated a tick is skipped rather than queued without bound.
pub async fn drive<F, Fut>(rps: u32, max_in_flight: usize, mut next: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let limit = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rps.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            continue;
        };
        let call = next();
        tokio::spawn(async move {
            call.await;
            drop(permit);
        });
    }
}
