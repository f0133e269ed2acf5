//! The cost of timing one operation with `OperationHandle::run` next to a bare future and a
//! `tracing::Instrument`-ed one, in the same run; without a tracing subscriber (spans are
//! disabled: the metric and statistics alone) and with one (a `tracing_subscriber`
//! registry: every span is created and closed).
//!
//! ```text
//! cargo bench --bench operations --all-features -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Read "added cost" = variant − `bare`, and compare `operation` with `instrument`.

#![allow(missing_docs)]

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll};

use criterion::{criterion_group, criterion_main, Criterion};
use tower_observe::operations::Operation;
use tower_observe::Observer;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

/// Polls a future that is ready at once (no runtime in the measurement).
fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("the benchmarked futures are ready at once"),
    }
}

async fn work(n: u64) -> Result<u64, std::io::Error> {
    Ok(black_box(n) + 1)
}

fn bench(c: &mut Criterion) {
    let observer = Observer::new();
    let select = observer.operation(Operation::db("postgresql", "select_user").collection("users"));
    // First without a subscriber, then with a registry as the global default (set once, for
    // the rest of the process).
    for setting in ["no_subscriber", "registry"] {
        if setting == "registry" {
            tracing::subscriber::set_global_default(
                tracing_subscriber::registry().with(tracing_subscriber::filter::LevelFilter::INFO),
            )
            .expect("no subscriber yet");
        }
        // The setting is what it says: spans are recorded with the registry only.
        let probe = tracing::info_span!("probe");
        assert_eq!(probe.is_disabled(), setting == "no_subscriber");
        let mut group = c.benchmark_group(format!("operation/{setting}"));
        group.bench_function("bare", |b| b.iter(|| run(work(1)).unwrap()));
        group.bench_function("instrument", |b| {
            b.iter(|| {
                run(work(1).instrument(tracing::info_span!(
                    "select_user",
                    db.system.name = "postgresql"
                )))
                .unwrap()
            })
        });
        group.bench_function("operation", |b| {
            b.iter(|| run(select.run(work(1))).unwrap())
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
