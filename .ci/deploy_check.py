#!/usr/bin/env python3
"""Cross-check the deploy kit (deploy/) against what the demo really serves.

Usage: python3 .ci/deploy_check.py [--demo PATH] [--update]

Parses deploy/docker-compose.yml, the configurations it mounts (Prometheus, Alertmanager,
Grafana provisioning, the OpenTelemetry collector, Vector), deploy/demo/Dockerfile and the
Kubernetes manifests of deploy/kubernetes/, and checks that they agree with each other and
with the code:

- the demo's flags (in the compose `command`, the Dockerfile's CMD and the Deployment's
  `args`) are flags the demo takes (examples/common/mod.rs, examples/demo.rs), and its
  `--addr` port is the port published, exposed, scraped and probed;
- the paths scraped and probed are the router's constants (METRICS_PATH in
  src/endpoints/mod.rs, HEALTH_PATH and LIVE_PATH in src/health.rs): liveness /health/live,
  readiness /health;
- every host a configuration sends to is a compose service, on the port that service
  listens on; every file mounted exists; every config path a command names is mounted;
- images are pinned (no `latest`), under the publishers' names, and listed in docs/deploy.md;
- Grafana's data source points at Prometheus with its scrape interval;
- the PrometheusRule carries exactly the rules of deploy/prometheus/alerts.rules.yml
  (`--update` regenerates deploy/kubernetes/prometheusrule.yaml from it).

With `--demo PATH` (a built demo, target/debug/examples/demo) it also starts the demo with
the compose file's flags on a free 127.0.0.1 port and requests every scraped and probed path:
each must answer 200 (readiness: 200 or 503), and /metrics in OpenMetrics when asked for it.

The syntax of each file is checked by its own tool elsewhere in CI (promtool, amtool).
Needs PyYAML (Debian: python3-yaml) and Python 3.11 (tomllib). Exits 1 on any problem.
"""

import glob
import os
import re
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request

try:
    import yaml
except ImportError:  # pragma: no cover - reported, not hidden
    sys.exit("PyYAML is missing: apt-get install python3-yaml (or pip install pyyaml)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")
K8S = os.path.join(DEPLOY, "kubernetes")
RULES = os.path.join(DEPLOY, "prometheus", "alerts.rules.yml")
PROMETHEUS_RULE = os.path.join(K8S, "prometheusrule.yaml")

# The services the kit brings up, and the port each listens on inside the compose network.
SERVICE_PORTS = {
    "prometheus": 9090,
    "alertmanager": 9093,
    "grafana": 3000,
    "otel-collector": 4318,
    "jaeger": 16686,
    "elasticsearch": 9200,
    "kibana": 5601,
    "vector": None,
}
# Further ports a service listens on (Jaeger's OTLP gRPC receiver).
EXTRA_PORTS = {"jaeger": {4317, 4318, 16686}}
# The publishers' image names (Docker Hub unless a registry is named).
IMAGES = {
    "prometheus": "prom/prometheus",
    "alertmanager": "prom/alertmanager",
    "grafana": "grafana/grafana",
    "otel-collector": "otel/opentelemetry-collector-contrib",
    "jaeger": "jaegertracing/all-in-one",
    "elasticsearch": "docker.elastic.co/elasticsearch/elasticsearch",
    "kibana": "docker.elastic.co/kibana/kibana",
    "vector": "timberio/vector",
}
# Hosts that are placeholders for the user's own (checked as such, not as services).
PLACEHOLDER_HOSTS = {"alert-receiver", "smtp.example.com", "localhost"}

problems = []


def problem(msg):
    problems.append(msg)


def rel(path):
    return os.path.relpath(path, ROOT)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


# ---------------------------------------------------------------------------------------------
# What the code says


def rust_const(path, name):
    m = re.search(rf'pub const {name}: &str = "([^"]+)";', read(os.path.join(ROOT, path)))
    if not m:
        sys.exit(f"{path}: no `pub const {name}`")
    return m.group(1)


METRICS_PATH = rust_const("src/endpoints/mod.rs", "METRICS_PATH")
STATS_PATH = rust_const("src/endpoints/mod.rs", "STATS_PATH")
HEALTH_PATH = rust_const("src/health.rs", "HEALTH_PATH")
LIVE_PATH = rust_const("src/health.rs", "LIVE_PATH")


def demo_flags():
    """{flag: takes a value} for the demo: the shared flags and the demo's own."""
    common = read(os.path.join(ROOT, "examples", "common", "mod.rs"))
    flags = {}
    for flag in re.findall(r'"(--[a-z-]+)" =>', common):
        flags[flag] = flag != "--traffic" and not re.search(rf'"{flag}" => args\.\w+ = true', common)
    demo = read(os.path.join(ROOT, "examples", "demo.rs"))
    extra = demo[demo.index("const SPEC"):]
    extra = extra[extra.index("extra: &["): extra.index("],")]
    for flag in re.findall(r'\("(--[a-z-]+)",', extra):
        flags[flag] = True
    if "--addr" not in flags or "--traffic" not in flags or "--exit-after" not in flags:
        sys.exit(f"could not read the demo's flags ({sorted(flags)})")
    return flags


FLAGS = demo_flags()


def demo_args(where, args):
    """Checks the demo's arguments; returns the port of --addr (the default 3000 if absent)."""
    port = 3000
    i = 0
    while i < len(args):
        flag = args[i]
        if flag not in FLAGS:
            problem(f"{where}: the demo has no flag {flag!r} (it has {', '.join(sorted(FLAGS))})")
            i += 1
            continue
        if FLAGS[flag]:
            if i + 1 >= len(args):
                problem(f"{where}: {flag} needs a value")
                break
            value = str(args[i + 1])
            if flag == "--addr":
                m = re.fullmatch(r"(\d+\.\d+\.\d+\.\d+|\[[0-9a-f:]+\]):(\d+)", value)
                if not m:
                    problem(f"{where}: --addr {value!r} is not IP:PORT")
                else:
                    port = int(m.group(2))
                    if m.group(1) in ("127.0.0.1", "[::1]"):
                        problem(f"{where}: --addr {value} listens on loopback only: nothing outside the container reaches it")
            i += 2
        else:
            i += 1
    return port


def split_host_port(url, default_port=None):
    m = re.fullmatch(r"(?:[a-z]+://)?([A-Za-z0-9._-]+)(?::(\d+))?(/.*)?", url)
    if not m:
        return None, None, None
    port = int(m.group(2)) if m.group(2) else default_port
    return m.group(1), port, m.group(3) or ""


def check_target(where, url, services, default_port=None):
    """A URL or host:port another component sends to must be a service on its port."""
    host, port, _ = split_host_port(url, default_port)
    if host is None:
        problem(f"{where}: cannot read host and port from {url!r}")
        return None
    if host in PLACEHOLDER_HOSTS:
        return host
    if host not in services:
        problem(f"{where}: {host!r} is not a service of docker-compose.yml")
        return host
    listens = EXTRA_PORTS.get(host, set()) | ({SERVICE_PORTS[host]} if SERVICE_PORTS.get(host) else set())
    if host == "demo":
        listens = {services["demo"]["_port"]}
    if port is not None and port not in listens:
        problem(f"{where}: {host}:{port}, but {host} listens on {sorted(listens)}")
    return host


# ---------------------------------------------------------------------------------------------
# docker-compose.yml


def mounts(service):
    """[(host path absolute or None for a named volume, container path)]."""
    out = []
    for v in service.get("volumes", []) or []:
        if isinstance(v, dict):
            src, dst = v.get("source"), v.get("target")
        else:
            parts = v.split(":")
            src, dst = parts[0], parts[1]
        host = os.path.normpath(os.path.join(DEPLOY, src)) if src.startswith((".", "/")) and not src.startswith("/var/run") else None
        out.append((host, dst, src))
    return out


def host_file_of(service, container_path):
    """The repository file that a container path of a service is mounted from, if any."""
    best = None
    for host, dst, _ in mounts(service):
        if host is None:
            continue
        if container_path == dst or container_path.startswith(dst.rstrip("/") + "/"):
            if best is None or len(dst) > len(best[1]):
                best = (host, dst)
    if best is None:
        return None
    host, dst = best
    return os.path.normpath(os.path.join(host, os.path.relpath(container_path, dst))) if container_path != dst else host


def command_flag(service, name):
    cmd = service.get("command") or []
    if isinstance(cmd, str):
        cmd = cmd.split()
    for i, arg in enumerate(cmd):
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(cmd):
            return cmd[i + 1]
    return None


def published(service):
    """{container port: host port}."""
    out = {}
    for p in service.get("ports", []) or []:
        text = str(p).split("/")[0]
        parts = text.split(":")
        out[int(parts[-1])] = int(parts[-2]) if len(parts) > 1 else int(parts[-1])
    return out


def check_compose():
    path = os.path.join(DEPLOY, "docker-compose.yml")
    compose = load_yaml(path)
    services = compose.get("services", {})
    docs = read(os.path.join(ROOT, "docs", "deploy.md"))
    for name in ["demo", *SERVICE_PORTS]:
        if name not in services:
            problem(f"docker-compose.yml: no service {name!r}")
    if problems:
        return services

    # Images: pinned, the publishers' names, listed in docs/deploy.md.
    for name, s in services.items():
        image = s.get("image", "")
        if name == "demo":
            continue
        repo, _, tag = image.rpartition(":")
        if not repo or not re.search(r"\d", tag) or tag == "latest":
            problem(f"docker-compose.yml: {name}: image {image!r} is not pinned to a version tag")
        if name in IMAGES and repo != IMAGES[name]:
            problem(f"docker-compose.yml: {name}: image {repo!r}, expected {IMAGES[name]!r}")
        if f"`{image}`" not in docs:
            problem(f"docs/deploy.md does not list the image `{image}`")
        for host, _, src in mounts(s):
            if host is not None and not os.path.exists(host):
                problem(f"docker-compose.yml: {name}: mounts {src}, which does not exist")

    # The demo: built from the Dockerfile, flags it has, the port it listens on published.
    demo = services["demo"]
    build = demo.get("build", {})
    dockerfile = os.path.normpath(os.path.join(DEPLOY, build.get("context", "."), build.get("dockerfile", "Dockerfile")))
    if not os.path.isfile(dockerfile):
        problem(f"docker-compose.yml: demo: no Dockerfile at {rel(dockerfile)}")
    port = demo_args("docker-compose.yml demo command", demo.get("command", []))
    demo["_port"] = port
    if port not in published(demo):
        problem(f"docker-compose.yml: demo listens on {port} but publishes {sorted(published(demo))}")
    check_dockerfile(dockerfile, demo)

    env = demo.get("environment", {})
    otlp = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not otlp:
        problem("docker-compose.yml: demo: OTEL_EXPORTER_OTLP_ENDPOINT is not set")
    else:
        check_target("docker-compose.yml demo OTEL_EXPORTER_OTLP_ENDPOINT", otlp, services)

    check_prometheus(services)
    check_alertmanager(services)
    check_grafana(services)
    check_collector(services, otlp)
    check_vector(services)
    kibana_hosts = yaml.safe_load(services["kibana"].get("environment", {}).get("ELASTICSEARCH_HOSTS", "[]"))
    for url in kibana_hosts:
        check_target("docker-compose.yml kibana ELASTICSEARCH_HOSTS", url, services)
    return services


def check_dockerfile(path, demo):
    text = read(path)
    cargo = read(os.path.join(ROOT, "Cargo.toml"))
    msrv = re.search(r'^rust-version = "([^"]+)"', cargo, re.M).group(1)
    m = re.search(r"^FROM rust:(\S+)", text, re.M)
    if not m or not m.group(1).startswith(msrv + "-"):
        problem(f"{rel(path)}: the build image is not rust:{msrv}-… (Cargo.toml's rust-version)")
    if not re.search(r"cargo build --release --locked --all-features --example demo", text):
        problem(f"{rel(path)}: does not build the demo with every feature from Cargo.lock")
    cmd = re.search(r"^CMD (\[.*\])", text, re.M)
    entry = re.search(r'^ENTRYPOINT \["([^"]+)"\]', text, re.M)
    copied = re.search(r"^COPY --from=build \S+/examples/demo (\S+)", text, re.M)
    if not entry or not copied or entry.group(1) != copied.group(1):
        problem(f"{rel(path)}: the ENTRYPOINT is not the demo binary copied from the build")
    if cmd:
        port = demo_args(f"{rel(path)} CMD", yaml.safe_load(cmd.group(1)))
        expose = re.search(r"^EXPOSE (\d+)", text, re.M)
        if not expose or int(expose.group(1)) != port:
            problem(f"{rel(path)}: EXPOSE is not the CMD's --addr port {port}")
    else:
        problem(f"{rel(path)}: no CMD")
    image = demo.get("image", "")
    if not re.fullmatch(r"tower-observe-demo:\d+\.\d+\.\d+", image):
        problem(f"docker-compose.yml: demo image {image!r} is not tower-observe-demo:<version>")
    version = re.search(r'^version = "([^"]+)"', cargo, re.M).group(1)
    if image != f"tower-observe-demo:{version}":
        problem(f"docker-compose.yml: demo image {image!r} is not the crate's version {version}")


def check_prometheus(services):
    s = services["prometheus"]
    flags = s.get("command", [])
    if "--enable-feature=exemplar-storage" not in flags:
        problem("docker-compose.yml: prometheus runs without --enable-feature=exemplar-storage")
    config_path = command_flag(s, "--config.file")
    config_file = host_file_of(s, config_path or "")
    if not config_file or not os.path.isfile(config_file):
        problem(f"docker-compose.yml: prometheus --config.file={config_path} is not a mounted file")
        return
    config = load_yaml(config_file)
    base = os.path.dirname(config_file)
    for pattern in config.get("rule_files", []):
        files = glob.glob(os.path.join(base, pattern))
        if not files:
            problem(f"{rel(config_file)}: rule_files {pattern!r} matches nothing")
        for f in files:
            if host_file_of(s, os.path.join(os.path.dirname(config_path), os.path.relpath(f, base))) != os.path.normpath(f):
                problem(f"{rel(config_file)}: rule file {rel(f)} is not mounted in the container")
    if os.path.normpath(os.path.join(base, "alerts.rules.yml")) not in [os.path.normpath(os.path.join(base, p)) for p in config.get("rule_files", [])]:
        problem(f"{rel(config_file)}: does not load alerts.rules.yml")
    scrape_interval = config.get("global", {}).get("scrape_interval", "1m")
    demo_jobs = 0
    for job in config.get("scrape_configs", []):
        for sc in job.get("static_configs", []):
            for target in sc.get("targets", []):
                host = check_target(f"{rel(config_file)} job {job['job_name']}", target, services)
                if host == "demo":
                    demo_jobs += 1
                    path = job.get("metrics_path", "/metrics")
                    if path != METRICS_PATH:
                        problem(f"{rel(config_file)}: job {job['job_name']} scrapes {path}, the demo serves {METRICS_PATH}")
    if demo_jobs == 0:
        problem(f"{rel(config_file)}: no job scrapes the demo")
    ams = [t for a in config.get("alerting", {}).get("alertmanagers", []) for sc in a.get("static_configs", []) for t in sc.get("targets", [])]
    if not any(check_target(f"{rel(config_file)} alerting", t, services) == "alertmanager" for t in ams):
        problem(f"{rel(config_file)}: does not send alerts to the alertmanager service")
    services["prometheus"]["_scrape_interval"] = scrape_interval


def check_alertmanager(services):
    s = services["alertmanager"]
    config_path = command_flag(s, "--config.file")
    config_file = host_file_of(s, config_path or "")
    if not config_file or not os.path.isfile(config_file):
        problem(f"docker-compose.yml: alertmanager --config.file={config_path} is not a mounted file")
        return
    config = load_yaml(config_file)
    base = os.path.dirname(config_file)
    for pattern in config.get("templates", []):
        if not glob.glob(os.path.join(base, pattern)):
            problem(f"{rel(config_file)}: templates {pattern!r} match nothing")
    text = read(config_file)
    # Secrets only by file.
    for key in ("smtp_auth_password:", "slack_api_url:", "routing_key:", "service_key:", "api_url:", "credentials:", "password:"):
        if re.search(rf"^\s*(-\s+)?{key}", text, re.M):
            problem(f"{rel(config_file)}: `{key}` inline; use the *_file form")
    receivers = {r["name"]: r for r in config.get("receivers", [])}
    kinds = set()
    for r in receivers.values():
        for kind in ("webhook_configs", "slack_configs", "pagerduty_configs", "email_configs"):
            for c in r.get(kind, []):
                kinds.add(kind)
                if c.get("send_resolved") is not True:
                    problem(f"{rel(config_file)}: receiver {r['name']} {kind}: send_resolved is not on")
    for kind in ("webhook_configs", "slack_configs", "pagerduty_configs", "email_configs"):
        if kind not in kinds:
            problem(f"{rel(config_file)}: no {kind} receiver")
    for r in receivers.values():
        for c in r.get("webhook_configs", []):
            check_target(f"{rel(config_file)} webhook", c["url"], services)
    for path in re.findall(r"_file: (\S+)", text):
        if not path.startswith("/etc/alertmanager/secrets/"):
            problem(f"{rel(config_file)}: secret file {path} is outside /etc/alertmanager/secrets/")
    if host_file_of(s, "/etc/alertmanager/secrets") != os.path.join(DEPLOY, "alertmanager", "secrets"):
        problem("docker-compose.yml: alertmanager does not mount deploy/alertmanager/secrets at /etc/alertmanager/secrets")


def check_grafana(services):
    s = services["grafana"]
    ds_file = host_file_of(s, "/etc/grafana/provisioning/datasources/tower-observe.yaml")
    dash_file = host_file_of(s, "/etc/grafana/provisioning/dashboards/tower-observe.yaml")
    if not ds_file or not dash_file:
        problem("docker-compose.yml: grafana does not mount the provisioning files of deploy/grafana/provisioning")
        return
    for ds in load_yaml(ds_file).get("datasources", []):
        if ds.get("type") == "prometheus":
            check_target(f"{rel(ds_file)} url", ds.get("url", ""), services)
            interval = ds.get("jsonData", {}).get("timeInterval")
            if interval != services["prometheus"].get("_scrape_interval"):
                problem(f"{rel(ds_file)}: timeInterval {interval} is not Prometheus' scrape_interval {services['prometheus'].get('_scrape_interval')}")
    for provider in load_yaml(dash_file).get("providers", []):
        path = provider.get("options", {}).get("path", "")
        host = host_file_of(s, path)
        if host != os.path.join(DEPLOY, "grafana", "dashboards"):
            problem(f"{rel(dash_file)}: provider path {path} is not where docker-compose.yml mounts deploy/grafana/dashboards")


def check_collector(services, otlp_endpoint):
    s = services["otel-collector"]
    config_path = command_flag(s, "--config")
    config_file = host_file_of(s, config_path or "")
    if not config_file or not os.path.isfile(config_file):
        problem(f"docker-compose.yml: otel-collector --config={config_path} is not a mounted file")
        return
    c = load_yaml(config_file)
    where = rel(config_file)
    protocols = c.get("receivers", {}).get("otlp", {}).get("protocols", {})
    http = protocols.get("http")
    if http is None:
        problem(f"{where}: the otlp receiver takes no HTTP (the crate's OTLP is HTTP/protobuf)")
    else:
        _, port, _ = split_host_port(http.get("endpoint", "0.0.0.0:4318"))
        _, demo_port, _ = split_host_port(otlp_endpoint or "")
        if port != demo_port:
            problem(f"{where}: OTLP/HTTP on {port}, the demo sends to {demo_port}")
        if port not in published(s) and port != SERVICE_PORTS["otel-collector"]:
            problem(f"{where}: OTLP/HTTP port {port} is not the collector's")
    for name, e in c.get("exporters", {}).items():
        for key in ("endpoint", "endpoints"):
            urls = e.get(key)
            for url in [urls] if isinstance(urls, str) else urls or []:
                check_target(f"{where} exporter {name}", url, services)
    pipelines = c.get("service", {}).get("pipelines", {})
    for signal in ("traces", "logs"):
        if signal not in pipelines:
            problem(f"{where}: no {signal} pipeline")
    for pname, p in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            for comp in p.get(kind, []):
                if comp not in (c.get(kind) or {}):
                    problem(f"{where}: pipeline {pname} uses {kind[:-1]} {comp!r}, which is not defined")
    exporters = {e for p in pipelines.values() for e in p.get("exporters", [])}
    if not any(e.split("/")[0] == "elasticsearch" for e in pipelines.get("logs", {}).get("exporters", [])):
        problem(f"{where}: logs do not go to Elasticsearch")
    if not any("jaeger" in e for e in pipelines.get("traces", {}).get("exporters", [])):
        problem(f"{where}: traces do not go to Jaeger")
    for ext in c.get("service", {}).get("extensions", []):
        if ext not in (c.get("extensions") or {}):
            problem(f"{where}: extension {ext!r} is not defined")
    del exporters


def check_vector(services):
    s = services["vector"]
    config_path = command_flag(s, "--config")
    config_file = host_file_of(s, config_path or "")
    if not config_file or not os.path.isfile(config_file):
        problem(f"docker-compose.yml: vector --config {config_path} is not a mounted file")
        return
    where = rel(config_file)
    with open(config_file, "rb") as f:
        v = tomllib.load(f)
    components = {**v.get("sources", {}), **v.get("transforms", {}), **v.get("sinks", {})}
    for name, comp in {**v.get("transforms", {}), **v.get("sinks", {})}.items():
        for i in comp.get("inputs", []):
            if i not in components:
                problem(f"{where}: {name} reads {i!r}, which is not defined")
    for name, src in v.get("sources", {}).items():
        if src.get("type") == "docker_logs":
            if "com.docker.compose.service=demo" not in src.get("include_labels", []):
                problem(f"{where}: source {name} does not select the compose service demo")
            if host_file_of(s, "/var/run/docker.sock") is None and not any(dst == "/var/run/docker.sock" for _, dst, _ in mounts(s)):
                problem("docker-compose.yml: vector reads docker_logs without /var/run/docker.sock")
    sinks = [x for x in v.get("sinks", {}).values() if x.get("type") == "elasticsearch"]
    if not sinks:
        problem(f"{where}: no elasticsearch sink")
    for sink in sinks:
        for url in sink.get("endpoints", []):
            check_target(f"{where} sink", url, services)
        ds = sink.get("data_stream", {})
        if sink.get("mode") == "data_stream" and (ds.get("sync_fields", True) or ds.get("auto_routing", True)):
            problem(f"{where}: the data stream sink adds fields to the lines (set sync_fields and auto_routing to false)")
    for t in v.get("transforms", {}).values():
        if t.get("type") == "remap" and re.sub(r"\s", "", t.get("source", "")) != ".=object!(parse_json!(string!(.message)))":
            problem(f"{where}: the remap does more than parse the line: the lines must go unchanged")


# ---------------------------------------------------------------------------------------------
# Kubernetes


def prometheus_rule_text():
    rules = read(RULES)
    body = rules[rules.index("groups:"):]
    return (
        "# Generated from deploy/prometheus/alerts.rules.yml by `python3 .ci/deploy_check.py --update`\n"
        "# (CI fails when they differ): the recommended rules the crate renders\n"
        "# (AlertRules::to_prometheus_rules), for the Prometheus Operator. It loads PrometheusRules by\n"
        "# label (its `ruleSelector`; kube-prometheus-stack: `release: <the Helm release>`).\n"
        "apiVersion: monitoring.coreos.com/v1\n"
        "kind: PrometheusRule\n"
        "metadata:\n"
        "  name: tower-observe\n"
        "  labels:\n"
        "    app.kubernetes.io/part-of: tower-observe\n"
        "spec:\n"
        + "".join(("  " + line if line.strip() else line) for line in body.splitlines(True))
    )


def check_kubernetes(compose_services):
    docs = {}
    for path in sorted(glob.glob(os.path.join(K8S, "*.yaml"))):
        with open(path, encoding="utf-8") as f:
            for d in yaml.safe_load_all(f):
                if d:
                    docs.setdefault(d.get("kind"), []).append((os.path.basename(path), d))
    kust = dict(docs.get("Kustomization", [(None, {})]))
    listed = set(next(iter(kust.values()), {}).get("resources", [])) if kust else set()
    files = {os.path.basename(p) for p in glob.glob(os.path.join(K8S, "*.yaml"))} - {"kustomization.yaml"}
    if listed != files:
        problem(f"kubernetes/kustomization.yaml lists {sorted(listed)}, the directory has {sorted(files)}")
    for kind in ("Deployment", "Service", "ServiceMonitor", "PrometheusRule"):
        if len(docs.get(kind, [])) != 1:
            problem(f"kubernetes/: expected one {kind}, found {len(docs.get(kind, []))}")
    if problems:
        return

    _, dep = docs["Deployment"][0]
    pod = dep["spec"]["template"]
    if not set(dep["spec"]["selector"]["matchLabels"].items()) <= set(pod["metadata"]["labels"].items()):
        problem("kubernetes/deployment.yaml: the selector does not match the pod's labels")
    (container,) = pod["spec"]["containers"]
    port = demo_args("kubernetes/deployment.yaml args", container.get("args", []))
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    if port not in ports.values():
        problem(f"kubernetes/deployment.yaml: the demo listens on {port}, the container ports are {ports}")
    image = compose_services.get("demo", {}).get("image")
    if container.get("image") != image:
        problem(f"kubernetes/deployment.yaml: image {container.get('image')!r} is not the compose file's {image!r}")

    def probe(name, path):
        p = container.get(name, {}).get("httpGet")
        if not p:
            problem(f"kubernetes/deployment.yaml: no httpGet {name}")
            return
        if p.get("path") != path:
            problem(f"kubernetes/deployment.yaml: {name} on {p.get('path')}, expected {path}")
        target = p.get("port")
        if ports.get(target, target) != port:
            problem(f"kubernetes/deployment.yaml: {name} port {target} is not the demo's {port}")

    probe("livenessProbe", LIVE_PATH)
    probe("readinessProbe", HEALTH_PATH)
    otlp = {e["name"]: e.get("value") for e in container.get("env", [])}.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    if otlp and split_host_port(otlp)[1] != 4318:
        problem("kubernetes/deployment.yaml: OTEL_EXPORTER_OTLP_ENDPOINT is not an OTLP/HTTP port (4318)")

    _, svc = docs["Service"][0]
    if not set(svc["spec"]["selector"].items()) <= set(pod["metadata"]["labels"].items()):
        problem("kubernetes/service.yaml: the selector does not match the Deployment's pods")
    svc_ports = {p.get("name"): p for p in svc["spec"]["ports"]}
    for name, p in svc_ports.items():
        target = p.get("targetPort", p["port"])
        if ports.get(target, target) != port:
            problem(f"kubernetes/service.yaml: port {name} targets {target}, not the demo's {port}")

    _, sm = docs["ServiceMonitor"][0]
    if not set(sm["spec"]["selector"]["matchLabels"].items()) <= set(svc["metadata"]["labels"].items()):
        problem("kubernetes/servicemonitor.yaml: the selector does not match the Service's labels")
    for ep in sm["spec"]["endpoints"]:
        if ep.get("port") not in svc_ports:
            problem(f"kubernetes/servicemonitor.yaml: port {ep.get('port')!r} is not a port name of the Service")
        if ep.get("path", "/metrics") != METRICS_PATH:
            problem(f"kubernetes/servicemonitor.yaml: scrapes {ep.get('path')}, the demo serves {METRICS_PATH}")

    _, rule = docs["PrometheusRule"][0]
    if rule["spec"] != load_yaml(RULES):
        problem("kubernetes/prometheusrule.yaml: spec differs from deploy/prometheus/alerts.rules.yml "
                "(python3 .ci/deploy_check.py --update)")
    if read(PROMETHEUS_RULE) != prometheus_rule_text():
        problem("kubernetes/prometheusrule.yaml is not generated from alerts.rules.yml "
                "(python3 .ci/deploy_check.py --update)")
    return {"livenessProbe": LIVE_PATH, "readinessProbe": HEALTH_PATH, "ServiceMonitor": METRICS_PATH}


# ---------------------------------------------------------------------------------------------
# The demo itself: the flags start it, the paths answer.


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, accept=None):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def check_demo_serves(binary, services):
    args = list(services["demo"]["command"])
    i = args.index("--addr") if "--addr" in args else None
    port = free_port()
    if i is None:
        args += ["--addr", f"127.0.0.1:{port}"]
    else:
        args[i + 1] = f"127.0.0.1:{port}"
    args += ["--exit-after", "30"]
    proc = subprocess.Popen([binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")})
    base = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 20
        while True:
            try:
                if get(base + LIVE_PATH)[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > end:
                problem(f"the demo with the compose flags {args} did not serve {LIVE_PATH}: {proc.stderr.read().decode()[-500:]}")
                return
            time.sleep(0.2)
        for path, ok in ((METRICS_PATH, {200}), (LIVE_PATH, {200}), (HEALTH_PATH, {200, 503}), (STATS_PATH, {200})):
            status, _, _ = get(base + path)
            if status not in ok:
                problem(f"the demo answers {path} with {status}")
        status, ctype, body = get(base + METRICS_PATH, "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
        if status != 200 or not ctype.startswith("application/openmetrics-text") or not body.rstrip().endswith(b"# EOF"):
            problem(f"the demo does not answer an OpenMetrics scrape in OpenMetrics ({status}, {ctype})")
        print(f"demo with the compose flags on :{port}: {METRICS_PATH}, {LIVE_PATH}, {HEALTH_PATH}, {STATS_PATH} answer; OpenMetrics negotiated")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    argv = sys.argv[1:]
    if "--update" in argv:
        with open(PROMETHEUS_RULE, "w", encoding="utf-8") as f:
            f.write(prometheus_rule_text())
        print(f"wrote {rel(PROMETHEUS_RULE)}")
    demo = argv[argv.index("--demo") + 1] if "--demo" in argv else None
    services = check_compose()
    if not problems:
        check_kubernetes(services)
    if demo and not problems:
        check_demo_serves(demo, services)
    if problems:
        print(f"{len(problems)} problem(s) in deploy/:")
        for p in problems:
            print(f"  - {p}")
        return 1
    print(f"deploy/: {len(services)} compose services, the Kubernetes manifests and the PrometheusRule agree "
          f"with the demo ({METRICS_PATH}, {LIVE_PATH}, {HEALTH_PATH}) and with alerts.rules.yml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
