//! The HTTP client the exporters send with: ureq (blocking, run on the export thread the SDK's
//! batch processors own), rustls with the application's crypto provider (`crate::tls`),
//! Mozilla's roots or the roots the configuration names, and the configured headers set on
//! every request (over any the exporter adds itself).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};
use opentelemetry_http::{HttpClient, HttpError};

use super::OtlpError;

/// A ureq agent and the headers every export carries. `Debug` shows the header names only.
#[derive(Clone)]
pub(super) struct UreqClient {
    agent: ureq::Agent,
    headers: Arc<[(HeaderName, HeaderValue)]>,
}

impl fmt::Debug for UreqClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UreqClient")
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl UreqClient {
    /// A client for `url` trusting `roots` (DER certificates) instead of Mozilla's when some
    /// are given, giving up on a request after `timeout`. An `https://` URL needs a rustls
    /// crypto provider (`crate::tls::crypto_provider`); without one this fails.
    pub(super) fn new(
        url: &str,
        roots: &[Vec<u8>],
        timeout: Duration,
        headers: Vec<(HeaderName, HeaderValue)>,
    ) -> Result<Self, OtlpError> {
        let mut config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0);
        // A plain `http://` endpoint needs no provider (no redirects are followed).
        if crate::tls::is_https(url) {
            let provider = crate::tls::crypto_provider()
                .ok_or_else(|| OtlpError::Tls(crate::tls::NO_PROVIDER.to_owned()))?;
            config = config.tls_config(crate::tls::ureq_config(provider, roots));
        }
        Ok(Self {
            agent: config.build().into(),
            headers: headers.into(),
        })
    }
}

#[async_trait::async_trait]
impl HttpClient for UreqClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (mut parts, body) = request.into_parts();
        for (name, value) in self.headers.iter() {
            parts.headers.insert(name.clone(), value.clone());
        }
        let request = Request::from_parts(parts, body.to_vec());
        let response = self.agent.run(request)?;
        let (parts, mut body) = response.into_parts();
        // A collector's answer is small; more than this is not read.
        let bytes = body.with_config().limit(4 * 1024 * 1024).read_to_vec()?;
        Ok(Response::from_parts(parts, Bytes::from(bytes)))
    }
}

impl UreqClient {
    /// POSTs `body` as `application/x-protobuf` from the calling thread (the metrics exporter's
    /// background thread), with the configured headers. `Err` says why the collector did not
    /// take it: a status, or the transport error (never a header value).
    pub(super) fn post_protobuf(&self, url: &str, body: Vec<u8>) -> Result<(), String> {
        let mut request = Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body)
            .map_err(|e| e.to_string())?;
        for (name, value) in self.headers.iter() {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let response = self.agent.run(request).map_err(|e| e.to_string())?;
        let status = response.status();
        // Read (a bounded part of) the answer, so the connection can be reused.
        let _ = response
            .into_body()
            .with_config()
            .limit(64 * 1024)
            .read_to_vec();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the collector answered {status}"))
        }
    }
}
