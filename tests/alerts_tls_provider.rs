//! The alert channels connect with the application's rustls crypto provider when one is
//! installed as the process default — not the crate's own fallback (`tls-ring`,
//! `tls-aws-lc-rs`), so an application on one provider builds and runs no other. The provider
//! installed here counts its draws of randomness (every TLS handshake draws). Its own test
//! binary, because the process default can be installed once.
#![cfg(feature = "alerts")]

#[path = "support/pki.rs"]
mod pki;
#[path = "support/receiver.rs"]
mod receiver;

use std::sync::atomic::{AtomicUsize, Ordering};

use receiver::{wait_until, Receiver};
use tokio_rustls::rustls::crypto::{ring, CryptoProvider, GetRandomFailed, SecureRandom};
use tower_observe::alerts::notify::{Notifier, Webhook};
use tower_observe::alerts::{AlertEvent, EventStatus, Severity};
use tower_observe::Observer;

/// Randomness drawn through the application's provider.
static DRAWS: AtomicUsize = AtomicUsize::new(0);

/// ring's randomness, counted.
#[derive(Debug)]
struct CountingRandom;

impl SecureRandom for CountingRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        DRAWS.fetch_add(1, Ordering::SeqCst);
        ring::default_provider().secure_random.fill(buf)
    }
}

fn event() -> AlertEvent {
    AlertEvent {
        rule: "HighErrorRate".into(),
        status: EventStatus::Firing,
        severity: Severity::Critical,
        labels: [("alertname".to_owned(), "HighErrorRate".to_owned())].into(),
        annotations: Default::default(),
        starts_at: std::time::SystemTime::now(),
        ends_at: None,
        value: 0.2,
        firing_value: None,
        fingerprint: "0123456789abcdef".into(),
        links: Vec::new(),
        generator_url: String::new(),
        failed_requests: Vec::new(),
    }
}

#[test]
fn webhook_uses_the_applications_crypto_provider() {
    let installed = CryptoProvider {
        secure_random: &CountingRandom,
        ..ring::default_provider()
    };
    installed
        .install_default()
        .expect("no provider installed before");

    let (ca_pem, cert, key) = pki::private_pki();
    let receiver = Receiver::start_tls(200, cert, key);
    let observer = Observer::new();
    // Built after the provider is installed, as an application does at start-up.
    let notifier = Notifier::new(
        vec![Webhook::new(receiver.https_url("/hook"))
            .root_certificate_pem(ca_pem)
            .into()],
        &observer,
        None,
    );
    let before = DRAWS.load(Ordering::SeqCst);
    notifier.dispatch(&event());
    let got = receiver.wait_for(1);
    assert_eq!(got[0].path, "/hook");
    wait_until("the success", || {
        let s = notifier.statuses().remove(0);
        (s.sent == 1).then_some(())
    });
    assert!(
        DRAWS.load(Ordering::SeqCst) > before,
        "the handshake did not use the installed provider"
    );
}
