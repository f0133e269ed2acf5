//! Every `OTEL_*` variable parsed, overridden by code and rejected when malformed (through an
//! injected lookup: the process environment is never touched).

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::Key;
use opentelemetry_sdk::trace::Sampler;

use super::*;

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

fn resolve(traces: &OtlpTraces, vars: &[(&str, &str)]) -> Result<Settings, OtlpError> {
    Settings::resolve(traces, &env(vars))
}

fn attr(resource: &Resource, key: &'static str) -> Option<String> {
    resource
        .get(&Key::from_static_str(key))
        .map(|v| v.to_string())
}

fn rejected(traces: &OtlpTraces, vars: &[(&str, &str)], variable: &str) -> String {
    match resolve(traces, vars) {
        Err(e @ OtlpError::InvalidVariable { .. }) => {
            let text = e.to_string();
            assert!(text.contains(variable), "{text} names {variable}");
            text
        }
        Err(e) => panic!("{vars:?}: {e}"),
        Ok(_) => panic!("{vars:?} accepted"),
    }
}

#[test]
fn endpoints_follow_the_per_signal_rules() {
    let unset = OtlpTraces::unset();
    let url = |vars: &[(&str, &str)]| resolve(&unset, vars).map(|s| s.url).unwrap();
    assert_eq!(url(&[]), "http://localhost:4318/v1/traces");
    assert_eq!(
        url(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "https://c.example:4318/base/"
        )]),
        "https://c.example:4318/base/v1/traces"
    );
    assert_eq!(
        url(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://generic"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://c.example/custom"
            ),
        ]),
        "https://c.example/custom"
    );
    // Code wins; its base URL gets the path unless it has one.
    let code = OtlpTraces::unset().endpoint("http://127.0.0.1:4318/");
    assert_eq!(
        resolve(
            &code,
            &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://x/y")]
        )
        .unwrap()
        .url,
        "http://127.0.0.1:4318/v1/traces"
    );
    let code = OtlpTraces::unset().endpoint("https://c.example/custom/path");
    assert_eq!(
        resolve(&code, &[]).unwrap().url,
        "https://c.example/custom/path"
    );
    assert!(matches!(
        resolve(&OtlpTraces::unset().endpoint("collector:4318"), &[]),
        Err(OtlpError::InvalidEndpoint(_))
    ));
    assert!(matches!(
        resolve(&OtlpTraces::unset().endpoint("http://"), &[]),
        Err(OtlpError::InvalidEndpoint(_))
    ));
    rejected(
        &unset,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    );
    rejected(
        &unset,
        &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://c")],
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    );
    assert!(config::endpoint_configured(
        Signal::Traces,
        &env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c")])
    ));
    assert!(!config::endpoint_configured(
        Signal::Traces,
        &env(&[("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://c")])
    ));
}

#[test]
fn service_name_and_resource_attributes() {
    let unset = OtlpTraces::unset();
    let name = |t: &OtlpTraces, vars: &[(&str, &str)]| {
        attr(&resolve(t, vars).unwrap().resource, "service.name").unwrap()
    };
    assert_eq!(name(&unset, &[]), "unknown_service");
    let mut fallback = OtlpTraces::unset();
    fallback.fallback_service_name = Some("demo".into());
    assert_eq!(name(&fallback, &[]), "demo");
    // The variable beats the crate's (or from_env's) default...
    assert_eq!(name(&fallback, &[("OTEL_SERVICE_NAME", "shop")]), "shop");
    assert_eq!(
        name(
            &fallback,
            &[("OTEL_RESOURCE_ATTRIBUTES", "service.name=cart,x=1")]
        ),
        "cart"
    );
    assert_eq!(
        name(
            &fallback,
            &[
                ("OTEL_RESOURCE_ATTRIBUTES", "service.name=cart"),
                ("OTEL_SERVICE_NAME", "shop")
            ]
        ),
        "shop"
    );
    // ...and code beats the variable.
    let code = OtlpTraces::unset().service_name("checkout");
    assert_eq!(name(&code, &[("OTEL_SERVICE_NAME", "shop")]), "checkout");

    let vars = [(
        "OTEL_RESOURCE_ATTRIBUTES",
        "deployment.environment.name=prod, team=a%20b,region=eu",
    )];
    let resource = resolve(
        &OtlpTraces::unset().resource_attribute("region", "us"),
        &vars,
    )
    .unwrap()
    .resource;
    assert_eq!(
        attr(&resource, "deployment.environment.name").unwrap(),
        "prod"
    );
    assert_eq!(attr(&resource, "team").unwrap(), "a b");
    assert_eq!(attr(&resource, "region").unwrap(), "us");
    for bad in ["novalue", "=x", "k=%zz"] {
        rejected(
            &unset,
            &[("OTEL_RESOURCE_ATTRIBUTES", bad)],
            "OTEL_RESOURCE_ATTRIBUTES",
        );
    }
}

#[test]
fn headers_merge_and_never_show_their_values() {
    let vars = [
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=generic-s3cr3t,x-a=1"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "x-a=2,x-b=hello%20world",
        ),
    ];
    let traces = OtlpTraces::unset().header("X-B", "code");
    let export = config::export(Signal::Traces, &traces.export, &env(&vars)).unwrap();
    let headers: Vec<(String, String)> = export
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    assert!(headers.contains(&("api-key".into(), "generic-s3cr3t".into())));
    assert!(headers.contains(&("x-a".into(), "2".into())));
    assert!(headers.contains(&("x-b".into(), "code".into())));
    assert_eq!(headers.len(), 3);
    assert!(export.headers.iter().all(|(_, v)| v.is_sensitive()));
    // Neither Debug nor an error repeats a value.
    let shown = format!(
        "{:?} {:?}",
        traces.header("k", "s3cr3t-code"),
        resolve(&OtlpTraces::unset(), &vars).unwrap().client
    );
    assert!(!shown.contains("s3cr3t"), "{shown}");
    let text = rejected(
        &OtlpTraces::unset(),
        &[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "api-key=ok,s3cr3t-without-equals",
        )],
        "OTEL_EXPORTER_OTLP_HEADERS",
    );
    assert!(!text.contains("s3cr3t"), "{text}");
    rejected(
        &OtlpTraces::unset(),
        &[("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "bad header=1")],
        "OTEL_EXPORTER_OTLP_HEADERS",
    );
}

#[test]
fn timeout_protocol_and_certificate() {
    let unset = OtlpTraces::unset();
    let timeout = |t: &OtlpTraces, vars: &[(&str, &str)]| resolve(t, vars).unwrap().timeout;
    assert_eq!(timeout(&unset, &[]), Duration::from_secs(10));
    assert_eq!(
        timeout(&unset, &[("OTEL_EXPORTER_OTLP_TIMEOUT", "2500")]),
        Duration::from_millis(2500)
    );
    assert_eq!(
        timeout(
            &unset,
            &[
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
                ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700")
            ]
        ),
        Duration::from_millis(700)
    );
    let code = OtlpTraces::unset().timeout(Duration::from_secs(1));
    assert_eq!(
        timeout(&code, &[("OTEL_EXPORTER_OTLP_TIMEOUT", "2500")]),
        Duration::from_secs(1)
    );
    rejected(
        &unset,
        &[("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")],
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    );
    rejected(
        &unset,
        &[("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "-1")],
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    );

    assert!(resolve(&unset, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]).is_ok());
    let text = rejected(
        &unset,
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    );
    assert!(text.contains("http/protobuf"), "{text}");
    rejected(
        &unset,
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
        ],
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    );

    rejected(
        &unset,
        &[("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem")],
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
    );
    let dir = std::env::temp_dir().join(format!("tower-observe-otlp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    rejected(
        &unset,
        &[(
            "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
            not_pem.to_str().unwrap(),
        )],
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
    );
    assert!(matches!(
        resolve(&OtlpTraces::unset().root_certificate_pem("nope"), &[]),
        Err(OtlpError::Certificate(_))
    ));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn batch_settings() {
    let unset = OtlpTraces::unset();
    let batch = |t: &OtlpTraces, vars: &[(&str, &str)]| resolve(t, vars).unwrap().batch;
    assert_eq!(batch(&unset, &[]), (2048, 512, Duration::from_secs(5)));
    let vars = [
        ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "50"),
        ("OTEL_BSP_SCHEDULE_DELAY", "250"),
        ("OTEL_BSP_EXPORT_TIMEOUT", "1000"),
    ];
    assert_eq!(batch(&unset, &vars), (100, 50, Duration::from_millis(250)));
    let code = OtlpTraces::unset()
        .max_queue_size(10)
        .max_export_batch_size(5)
        .export_interval(Duration::from_secs(1));
    assert_eq!(batch(&code, &vars), (10, 5, Duration::from_secs(1)));
    // A batch never exceeds the queue.
    assert_eq!(batch(&unset, &[("OTEL_BSP_MAX_QUEUE_SIZE", "10")]).1, 10);
    for (variable, bad) in [
        ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "many"),
        ("OTEL_BSP_SCHEDULE_DELAY", "5s"),
        ("OTEL_BSP_EXPORT_TIMEOUT", "x"),
    ] {
        rejected(&unset, &[(variable, bad)], variable);
    }
    // The log processor reads its own variables.
    let logs = OtlpLogs::new("http://c", "s");
    let (_, _, (queue, batch, delay)) = logs
        .resolve(&env(&[
            ("OTEL_BLRP_MAX_QUEUE_SIZE", "64"),
            ("OTEL_BLRP_SCHEDULE_DELAY", "20"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "9"),
        ]))
        .unwrap();
    assert_eq!((queue, batch, delay), (64, 64, Duration::from_millis(20)));
    assert!(matches!(
        logs.resolve(&env(&[("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "x")])),
        Err(OtlpError::InvalidVariable { variable, .. }) if variable == "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE"
    ));
}

#[test]
fn logs_endpoints_and_variables() {
    let logs = OtlpLogs::unset();
    let (export, _, _) = logs
        .resolve(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]))
        .unwrap();
    assert_eq!(export.url, "http://c:4318/v1/logs");
    let (export, _, _) = logs
        .resolve(&env(&[
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://l/ingest"),
            ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "30"),
        ]))
        .unwrap();
    assert_eq!(
        (export.url.as_str(), export.timeout),
        ("http://l/ingest", Duration::from_millis(30))
    );
    assert!(matches!(
        logs.resolve(&env(&[("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "grpc")])),
        Err(OtlpError::InvalidVariable { variable, .. }) if variable == "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"
    ));
}

#[test]
fn samplers() {
    let unset = OtlpTraces::unset();
    let sampler =
        |t: &OtlpTraces, vars: &[(&str, &str)]| format!("{:?}", resolve(t, vars).unwrap().sampler);
    assert_eq!(
        sampler(&unset, &[]),
        format!("{:?}", Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
    );
    assert_eq!(
        sampler(&unset, &[("OTEL_TRACES_SAMPLER", "always_off")]),
        format!("{:?}", Sampler::AlwaysOff)
    );
    assert_eq!(
        sampler(&unset, &[("OTEL_TRACES_SAMPLER", "always_on")]),
        format!("{:?}", Sampler::AlwaysOn)
    );
    assert_eq!(
        sampler(
            &unset,
            &[
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25")
            ]
        ),
        format!("{:?}", Sampler::TraceIdRatioBased(0.25))
    );
    assert_eq!(
        sampler(
            &unset,
            &[
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.5")
            ]
        ),
        format!(
            "{:?}",
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(0.5)))
        )
    );
    assert_eq!(
        sampler(&unset, &[("OTEL_TRACES_SAMPLER", "parentbased_always_off")]),
        format!("{:?}", Sampler::ParentBased(Box::new(Sampler::AlwaysOff)))
    );
    let code = OtlpTraces::unset().sampler(Sampler::AlwaysOn);
    assert_eq!(
        sampler(&code, &[("OTEL_TRACES_SAMPLER", "always_off")]),
        format!("{:?}", Sampler::AlwaysOn)
    );
    rejected(
        &unset,
        &[("OTEL_TRACES_SAMPLER", "jaeger_remote")],
        "OTEL_TRACES_SAMPLER",
    );
    rejected(
        &unset,
        &[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
        ],
        "OTEL_TRACES_SAMPLER_ARG",
    );
}

#[test]
fn log_records_are_redacted_like_the_ecs_lines() {
    use opentelemetry::logs::{AnyValue, Severity};
    use opentelemetry_sdk::logs::{InMemoryLogExporter, SdkLoggerProvider};
    use tracing_subscriber::layer::SubscriberExt;

    let exporter = InMemoryLogExporter::default();
    let provider = SdkLoggerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let layer = OtlpLogLayer::new(&provider)
        .redact_field("card_number")
        .redact_query_param("session");
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::warn!(
            http.request.header.authorization = "Bearer s3cr3t-bearer",
            card_number = "4111111111111111",
            url.query = "page=2&api_key=s3cr3t-key&session=s3cr3t-session",
            url.full = "https://shop.test/p?x=1",
            rows = 3_u64,
            ratio = 0.5,
            cached = true,
            "slow query"
        );
    });
    let logs = exporter.get_emitted_logs().unwrap();
    assert_eq!(logs.len(), 1);
    let record = &logs[0].record;
    assert_eq!(
        record.body(),
        Some(&AnyValue::from("slow query".to_owned()))
    );
    assert_eq!(record.severity_number(), Some(Severity::Warn));
    assert_eq!(record.severity_text(), Some("WARN"));
    let attr = |key: &str| {
        record
            .attributes_iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v.clone())
    };
    let text = |key: &str| match attr(key) {
        Some(AnyValue::String(s)) => s.to_string(),
        other => panic!("{key}: {other:?}"),
    };
    assert_eq!(text("http.request.header.authorization"), REDACTED_VALUE);
    assert_eq!(text("card_number"), REDACTED_VALUE);
    assert_eq!(
        text("url.query"),
        format!("page=2&api_key={REDACTED_VALUE}&session={REDACTED_VALUE}")
    );
    assert_eq!(text("url.full"), "https://shop.test/p?x=1");
    assert_eq!(attr("rows"), Some(AnyValue::Int(3)));
    assert_eq!(attr("ratio"), Some(AnyValue::Double(0.5)));
    assert_eq!(attr("cached"), Some(AnyValue::Boolean(true)));
    assert!(!format!("{record:?}").contains("s3cr3t"));
    // Logged outside any request or span: no trace context.
    assert!(record.trace_context().is_none());
}

const REDACTED_VALUE: &str = crate::logs::REDACTED;
