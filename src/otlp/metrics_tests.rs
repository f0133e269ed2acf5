//! Every variable of the metrics export parsed, overridden by code and rejected when
//! malformed (through an injected lookup: the process environment is never touched).

use std::collections::HashMap;
use std::time::Duration;

use super::*;

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

fn resolve(metrics: &OtlpMetrics, vars: &[(&str, &str)]) -> Result<Settings, OtlpError> {
    metrics.resolve(&env(vars))
}

fn rejected(metrics: &OtlpMetrics, vars: &[(&str, &str)], variable: &str) -> String {
    match resolve(metrics, vars) {
        Err(e @ OtlpError::InvalidVariable { .. }) => {
            let text = e.to_string();
            assert!(text.contains(variable), "{text} names {variable}");
            text
        }
        Err(e) => panic!("{vars:?}: {e}"),
        Ok(_) => panic!("{vars:?} accepted"),
    }
}

fn attribute(settings: &Settings, key: &str) -> Option<String> {
    settings
        .resource
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(any_value::Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
}

#[test]
fn endpoints_follow_the_per_signal_rules() {
    let unset = OtlpMetrics::unset();
    let url = |vars: &[(&str, &str)]| resolve(&unset, vars).unwrap().url;
    assert_eq!(url(&[]), "http://localhost:4318/v1/metrics");
    assert_eq!(
        url(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c.example:4318")]),
        "https://c.example:4318/v1/metrics"
    );
    // The signal's variable is used as is.
    assert_eq!(
        url(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://generic"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "https://c.example/custom"
            ),
        ]),
        "https://c.example/custom"
    );
    let code = OtlpMetrics::unset().endpoint("http://127.0.0.1:4318");
    assert_eq!(
        resolve(
            &code,
            &[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "https://x/y")]
        )
        .unwrap()
        .url,
        "http://127.0.0.1:4318/v1/metrics"
    );
    rejected(
        &unset,
        &[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "collector:4318")],
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    );
    assert!(config::endpoint_configured(
        Signal::Metrics,
        &env(&[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://c")])
    ));
    assert!(!config::endpoint_configured(
        Signal::Metrics,
        &env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c")])
    ));
}

#[test]
fn interval_timeout_and_temporality_from_variables_and_code() {
    let unset = OtlpMetrics::unset();
    let s = resolve(&unset, &[]).unwrap();
    assert_eq!(s.interval, Duration::from_secs(60));
    assert_eq!(s.temporality, Temporality::Cumulative);

    let s = resolve(
        &unset,
        &[
            ("OTEL_METRIC_EXPORT_INTERVAL", "1500"),
            ("OTEL_METRIC_EXPORT_TIMEOUT", "2000"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "3000"),
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "Delta"),
        ],
    )
    .unwrap();
    assert_eq!(s.interval, Duration::from_millis(1500));
    assert_eq!(s.temporality, Temporality::Delta);
    for (value, expected) in [
        ("cumulative", Temporality::Cumulative),
        ("LOWMEMORY", Temporality::LowMemory),
    ] {
        let s = resolve(
            &unset,
            &[("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", value)],
        )
        .unwrap();
        assert_eq!(s.temporality, expected);
    }

    // Code wins.
    let code = OtlpMetrics::unset()
        .export_interval(Duration::from_millis(250))
        .temporality(Temporality::LowMemory)
        .export_timeout(Duration::from_secs(1));
    let s = resolve(
        &code,
        &[
            ("OTEL_METRIC_EXPORT_INTERVAL", "1500"),
            ("OTEL_METRIC_EXPORT_TIMEOUT", "not a number"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                "nonsense",
            ),
        ],
    )
    .unwrap();
    assert_eq!(s.interval, Duration::from_millis(250));
    assert_eq!(s.temporality, Temporality::LowMemory);

    rejected(
        &unset,
        &[("OTEL_METRIC_EXPORT_INTERVAL", "60s")],
        "OTEL_METRIC_EXPORT_INTERVAL",
    );
    rejected(
        &unset,
        &[("OTEL_METRIC_EXPORT_TIMEOUT", "-1")],
        "OTEL_METRIC_EXPORT_TIMEOUT",
    );
    rejected(
        &unset,
        &[("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "soon")],
        "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
    );
    let text = rejected(
        &unset,
        &[(
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
            "sometimes",
        )],
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
    );
    assert!(text.contains("lowmemory"), "{text}");
}

#[test]
fn protocol_headers_and_certificate() {
    let unset = OtlpMetrics::unset();
    resolve(
        &unset,
        &[("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf")],
    )
    .unwrap();
    rejected(
        &unset,
        &[("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc")],
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    );
    rejected(
        &unset,
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    );
    // A malformed header never shows its value.
    let text = rejected(
        &unset,
        &[("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "api-key=s3cr%ZZet")],
        "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    );
    assert!(!text.contains("s3cr"), "{text}");
    let s = resolve(
        &unset.clone().header("x-api-key", "from-code"),
        &[(
            "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
            "x-api-key=hunter2,x-b=2",
        )],
    )
    .unwrap();
    let shown = format!("{s:?} {:?}", unset.clone().header("x-api-key", "hunter2"));
    assert!(
        !shown.contains("hunter2") && !shown.contains("from-code"),
        "{shown}"
    );
    assert!(shown.contains("x-api-key"), "{shown}");
    rejected(
        &unset,
        &[(
            "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE",
            "/nonexistent/ca.pem",
        )],
        "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE",
    );
}

#[test]
fn resource_service_name_version_and_instance() {
    let mut fallback = OtlpMetrics::unset();
    fallback.fallback_service_name = Some("demo".into());
    let s = resolve(&fallback, &[]).unwrap();
    assert_eq!(attribute(&s, "service.name").as_deref(), Some("demo"));
    let id = attribute(&s, "service.instance.id").unwrap();
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(&id[14..15], "4", "a version 4 UUID: {id}");
    // Stable within the process.
    assert_eq!(
        attribute(&resolve(&fallback, &[]).unwrap(), "service.instance.id"),
        Some(id)
    );

    let vars = [
        ("OTEL_SERVICE_NAME", "shop"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.version=1.0,deployment.environment.name=prod,service.instance.id=pod-7",
        ),
    ];
    let s = resolve(&fallback, &vars).unwrap();
    assert_eq!(attribute(&s, "service.name").as_deref(), Some("shop"));
    assert_eq!(attribute(&s, "service.version").as_deref(), Some("1.0"));
    assert_eq!(
        attribute(&s, "service.instance.id").as_deref(),
        Some("pod-7")
    );
    assert_eq!(
        attribute(&s, "deployment.environment.name").as_deref(),
        Some("prod")
    );

    let code = OtlpMetrics::new("http://c:4318", "checkout").service_version("2.1.0");
    let s = resolve(&code, &vars).unwrap();
    assert_eq!(attribute(&s, "service.name").as_deref(), Some("checkout"));
    assert_eq!(attribute(&s, "service.version").as_deref(), Some("2.1.0"));

    rejected(
        &fallback,
        &[("OTEL_RESOURCE_ATTRIBUTES", "novalue")],
        "OTEL_RESOURCE_ATTRIBUTES",
    );
}

#[test]
fn the_endpoint_shown_has_no_credentials() {
    assert_eq!(
        shown_endpoint("https://user:pw@c.example:4318/v1/metrics?token=x"),
        "https://c.example:4318/v1/metrics"
    );
    assert_eq!(shown_endpoint("http://c:4318"), "http://c:4318");
}

#[test]
fn an_observer_without_a_registry_cannot_export() {
    let observer = Observer::builder()
        .recorder(metrics::NoopRecorder)
        .build()
        .unwrap();
    assert!(matches!(
        observer.export_metrics_with(OtlpMetrics::new("http://127.0.0.1:9", "x"), &env(&[])),
        Err(OtlpError::NoRegistry)
    ));
}
