//! Outgoing TLS, shared by the alert channels and the OTLP exporter: rustls with the
//! application's crypto provider, and Mozilla's roots or the private roots a channel or
//! exporter was given.
//!
//! The provider is the process default the application installed
//! (`rustls::crypto::CryptoProvider::install_default`, read when a client is built); only when
//! there is none, the crate's own: `aws-lc-rs` with the feature `tls-aws-lc-rs`, else `ring`
//! with `tls-ring`. Neither feature is on by default, so an application that already runs one
//! provider (reqwest's default is `aws-lc-rs`) builds no second crypto library. Without a
//! provider, a client for `https://` is refused with [`NO_PROVIDER`] when it is built — ureq
//! and lettre would panic on their first TLS connection instead.

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

/// Why a TLS client cannot be built: no provider installed and no fallback compiled in.
pub(crate) const NO_PROVIDER: &str = "no rustls crypto provider: install the application's \
     (rustls::crypto::CryptoProvider::install_default) before this is built, or enable the \
     tower-observe feature `tls-aws-lc-rs` or `tls-ring`";

/// The crypto provider outgoing TLS uses: the application's process default when one is
/// installed, else the crate's own fallback (features `tls-aws-lc-rs`, `tls-ring`), else none.
pub(crate) fn crypto_provider() -> Option<Arc<CryptoProvider>> {
    match CryptoProvider::get_default() {
        Some(installed) => Some(Arc::clone(installed)),
        None => fallback_provider(),
    }
}

/// The crate's own provider, made once.
fn fallback_provider() -> Option<Arc<CryptoProvider>> {
    static FALLBACK: OnceLock<Option<Arc<CryptoProvider>>> = OnceLock::new();
    FALLBACK
        .get_or_init(|| {
            #[cfg(feature = "tls-aws-lc-rs")]
            let provider = Some(Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
            #[cfg(all(feature = "tls-ring", not(feature = "tls-aws-lc-rs")))]
            let provider = Some(Arc::new(rustls::crypto::ring::default_provider()));
            #[cfg(not(any(feature = "tls-ring", feature = "tls-aws-lc-rs")))]
            let provider = None;
            provider
        })
        .clone()
}

/// Whether `url` needs TLS (its scheme is `https`, in any case).
pub(crate) fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

/// The certificates of a PEM text (one certificate or a bundle; other items, such as keys,
/// are skipped), as DER, each checked to be usable as a trust anchor. The reason never quotes
/// the text.
pub(crate) fn pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut certificates = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => {
                let der = cert.der().to_vec();
                let mut store = rustls::RootCertStore::empty();
                store
                    .add(der.clone().into())
                    .map_err(|e| format!("certificate {}: {e}", certificates.len() + 1))?;
                certificates.push(der);
            }
            Ok(_) => {}
            Err(e) => return Err(format!("not PEM: {e}")),
        }
    }
    if certificates.is_empty() {
        return Err("no PEM certificate found".to_owned());
    }
    Ok(certificates)
}

/// ureq's TLS settings: `provider`, and `roots` (DER) instead of Mozilla's when some are given.
pub(crate) fn ureq_config(
    provider: Arc<CryptoProvider>,
    roots: &[Vec<u8>],
) -> ureq::tls::TlsConfig {
    use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
    let roots = if roots.is_empty() {
        RootCerts::WebPki
    } else {
        RootCerts::new_with_certs(
            &roots
                .iter()
                .map(|der| Certificate::from_der(der).to_owned())
                .collect::<Vec<_>>(),
        )
    };
    TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(provider)
        .root_certs(roots)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_pem_is_checked() {
        assert_eq!(
            pem_certificates(b"").unwrap_err(),
            "no PEM certificate found"
        );
        assert_eq!(
            pem_certificates(b"not a certificate").unwrap_err(),
            "no PEM certificate found"
        );
        let garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(pem_certificates(garbage)
            .unwrap_err()
            .starts_with("certificate 1:"));
        assert!(is_https("HTTPS://x") && !is_https("http://x") && !is_https("http"));
    }
}
