#!/usr/bin/env python3
"""Check the Grafana dashboards in deploy/grafana/dashboards against a real Prometheus.

Usage: python3 .ci/grafana_check.py [EXAMPLES_DIR]   (default: target/debug/examples)

Starts the demo (--traffic), gateway (--traffic) and grpc examples and a real `prometheus`
scraping them every 2 s (jobs demo, gateway, grpc), all on free 127.0.0.1 ports, waits for
about 40 s of data, then evaluates every panel target and every templating query of every
dashboard through /api/v1/query with the dashboard variables substituted
($job, $instance, $route -> .+; $__rate_interval -> 30s; $__interval -> 10s; $__range -> 1m).
Each must parse and return at least one series.

It also checks, statically, that every metric an expression reads is one the crate exports
(in the scraped /api/v1/label/__name__/values of the three jobs, and a family of the METRICS
table in src/names.rs, or `up`), that every selector filters job=~"$job" and
instance=~"$instance", that rate windows use Grafana's interval variables, and the
dashboard structure (uid, schemaVersion, __inputs/__requires, the datasource variable).

Python 3 standard library only. Every process is started on 127.0.0.1 and stopped by PID.
"""

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DASHBOARDS = os.path.join(ROOT, "deploy", "grafana", "dashboards")
NAMES_RS = os.path.join(ROOT, "src", "names.rs")
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"

JOBS = ("demo", "gateway", "grpc")
WARMUP = 40.0  # seconds of scraped data before the first query
DEADLINE = 85.0  # the whole check, from start to the last query
SCRAPE_INTERVAL = "2s"
SUBSTITUTIONS = {
    "job": ".+",
    "instance": ".+",
    "route": ".+",
    "__rate_interval": "30s",
    "__interval": "10s",
    "__range": "1m",
    "datasource": "prometheus",
}
PANEL_TYPES = {"timeseries", "stat", "table", "row"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "and", "or", "unless", "inf", "nan",
}
STARTED = time.monotonic()


def elapsed():
    return time.monotonic() - STARTED


def log(msg):
    print(f"[{elapsed():5.1f}s] {msg}", flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def wait_http(url, seconds, proc=None):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            if http_get(url, timeout=1.0)[0] == 200:
                return True
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    return False


# ---------------------------------------------------------------------------------------------
# The crate's metric families, from the METRICS table of src/names.rs.


def crate_families():
    src = open(NAMES_RS, encoding="utf-8").read()
    consts = dict(re.findall(r'pub const (\w+): &str =\s*"([^"]+)";', src))
    kinds = dict(re.findall(r"const (\w+): Kind = (.+?);", src))
    table = src[src.index("pub(crate) const METRICS"):]
    table = table[: table.index("];")]
    families = {}
    for const, kind in re.findall(r"spec\(\s*(\w+),\s*([^,]+?),", table):
        kind = kinds.get(kind.strip(), kind)
        families[consts[const]] = "Histogram" in kind
    if len(families) < 20:
        raise SystemExit(f"could not read the METRICS table of {NAMES_RS} ({len(families)} entries)")
    return families


def family_of(name, families):
    if name == "up":
        return "up"
    if name in families:
        return name
    for suffix in HISTOGRAM_SUFFIXES:
        base = name[: -len(suffix)]
        if name.endswith(suffix) and families.get(base):
            return base
    return None


# ---------------------------------------------------------------------------------------------
# PromQL scanning: enough of the lexer to find metric names and their selectors.

STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
TOKEN = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\S")


def blank(m):
    return " " * len(m.group(0))


def mask(expr):
    """The expression with strings, {…}, […] and by/on(…) lists blanked out, same length."""
    out = STRING.sub(lambda m: m.group(0)[0] + " " * (len(m.group(0)) - 2) + m.group(0)[-1], expr)
    out = re.sub(r"\{[^}]*\}", blank, out)
    out = re.sub(r"\[[^\]]*\]", blank, out)
    out = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", blank, out)
    out = re.sub(r"\boffset\s+-?[\w.]+|@\s*[\w.]+(\(\))?", blank, out)
    return out


def metric_selectors(expr):
    """[(metric, selector text or '')] for every metric name the expression reads."""
    masked = mask(expr)
    found = []
    for m in TOKEN.finditer(masked):
        tok = m.group(0)
        if not re.match(r"[A-Za-z_:]", tok) or tok.lower() in KEYWORDS:
            continue
        rest = masked[m.end():].lstrip()
        if rest.startswith("("):
            continue  # a function or an aggregation
        after = expr[m.end():].lstrip()
        braces = re.match(r"\{[^}]*\}", after)
        found.append((tok, braces.group(0) if braces else ""))
    # {__name__="…"} selectors without a leading name
    for m in re.finditer(r"(?<![\w:])\{([^}]*)\}", masked_braces_only(expr)):
        inner = m.group(1)
        named = re.search(r'__name__\s*(=~|!=|!~|=)\s*"([^"]*)"', inner)
        if named:
            found.append((named.group(2) if named.group(1) == "=" else "__name__" + named.group(1), m.group(0)))
    return found


def masked_braces_only(expr):
    return re.sub(r"\[[^\]]*\]", blank, expr)


def lint_expr(expr):
    """Problems a dashboard expression has before it is ever run."""
    problems = []
    for metric, selector in metric_selectors(expr):
        if metric.startswith("__name__"):
            problems.append(f"a __name__ {metric[8:]} matcher cannot be checked against the crate's names")
            continue
        for need in ('job=~"$job"', 'instance=~"$instance"'):
            if need not in selector:
                problems.append(f"{metric}: selector does not filter {need}")
    for window in re.findall(r"\[([^\]]*)\]", STRING.sub("", expr)):
        if not re.fullmatch(r"\$(__rate_interval|__interval|__range)", window.strip()):
            problems.append(f"range [{window}] is not $__rate_interval, $__interval or $__range")
    return problems


VAR = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]")


def substitute(expr):
    unknown = []

    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in SUBSTITUTIONS:
            return SUBSTITUTIONS[name]
        if not name.isdigit():  # ${1} is label_replace's, not Grafana's
            unknown.append(name)
        return m.group(0)

    return VAR.sub(repl, expr), unknown


# ---------------------------------------------------------------------------------------------
# Dashboards


def panels_of(dashboard):
    for p in dashboard.get("panels", []):
        yield p
        for inner in p.get("panels", []) or []:  # collapsed rows
            yield inner


def lint_dashboard(path, d, uids):
    problems = []
    uid = d.get("uid")
    if not uid or uid in uids:
        problems.append(f"missing or duplicate uid {uid!r}")
    uids.add(uid)
    if not isinstance(d.get("schemaVersion"), int) or d["schemaVersion"] < 39:
        problems.append(f"schemaVersion {d.get('schemaVersion')} < 39")
    if d.get("id") is not None:
        problems.append("id must be null (Grafana assigns it)")
    inputs = {i.get("name"): i for i in d.get("__inputs", [])}
    if inputs.get("DS_PROMETHEUS", {}).get("pluginId") != "prometheus":
        problems.append("__inputs lacks the prometheus input DS_PROMETHEUS")
    requires = {(r.get("type"), r.get("id")) for r in d.get("__requires", [])}
    if ("datasource", "prometheus") not in requires or ("grafana", "grafana") not in requires:
        problems.append("__requires must name grafana and the prometheus datasource")
    variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problems.append("no `datasource` variable of type datasource (query prometheus)")
    for name in ("job", "instance"):
        v = variables.get(name)
        if not v or v.get("type") != "query" or not v.get("multi") or not v.get("includeAll"):
            problems.append(f"variable {name} must be a multi-value query variable with All")
    ids = set()
    for p in panels_of(d):
        if p.get("type") not in PANEL_TYPES:
            problems.append(f"panel {p.get('title')!r}: type {p.get('type')!r}")
        if p.get("id") in ids:
            problems.append(f"panel {p.get('title')!r}: duplicate id {p.get('id')}")
        ids.add(p.get("id"))
        if p.get("type") == "row":
            continue
        for owner in [p] + p.get("targets", []):
            if owner.get("datasource", {}).get("uid") != "${datasource}":
                problems.append(f"panel {p.get('title')!r}: datasource is not ${{datasource}}")
                break
        if not p.get("targets"):
            problems.append(f"panel {p.get('title')!r}: no targets")
    for v in variables.values():
        if v.get("type") == "query" and v.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"variable {v.get('name')}: datasource is not ${{datasource}}")
    return [f"{os.path.basename(path)}: {x}" for x in problems]


def queries_of(path, d):
    """(dashboard, panel, ref, expr, kind) for every target and templating query."""
    title = d.get("title", os.path.basename(path))
    out = []
    for p in panels_of(d):
        for t in p.get("targets", []):
            if t.get("hide"):
                continue
            out.append((title, p.get("title", "?"), t.get("refId", "?"), t.get("expr", ""), "panel"))
    for v in d.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        out.append((title, f"${v.get('name')}", "var", q, "variable"))
    return out


def variable_promql(query):
    """label_values(selector, label) -> a query with one series per value; other forms as is."""
    m = re.fullmatch(r"\s*label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)\s*", query, re.S)
    if m:
        return f'count by ({m.group(2)}) ({m.group(1)})', m.group(2)
    m = re.fullmatch(r"\s*query_result\((.+)\)\s*", query, re.S)
    if m:
        return m.group(1), None
    return None, None


# ---------------------------------------------------------------------------------------------
# Processes


class Procs:
    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []  # (name, Popen, log path)

    def start(self, name, argv):
        path = os.path.join(self.tmp, f"{name}.log")
        f = open(path, "wb")
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.tmp)
        f.close()
        self.procs.append((name, p, path))
        log(f"started {name} (pid {p.pid}): {' '.join(argv[1:])}")
        return p

    def stop_all(self):
        for _, p, _ in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p, _ in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)

    def dump_logs(self, lines=30):
        for name, p, path in self.procs:
            print(f"--- {name} (pid {p.pid}, exit {p.poll()}): last lines of its output")
            try:
                print("\n".join(open(path, errors="replace").read().splitlines()[-lines:]))
            except OSError as e:
                print(e)


class Prom:
    def __init__(self, base):
        self.base = base

    def api(self, path, **params):
        url = f"{self.base}{path}?{urllib.parse.urlencode(params, doseq=True)}"
        try:
            _, body = http_get(url, timeout=10)
        except urllib.error.HTTPError as e:
            body = e.read()
        return json.loads(body)

    def query(self, expr):
        return self.api("/api/v1/query", query=expr)


def series_count(resp):
    data = resp.get("data", {})
    kind, result = data.get("resultType"), data.get("result")
    if kind in ("vector", "matrix"):
        return len(result)
    if kind in ("scalar", "string"):
        return 1
    return 0


def main():
    examples = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "debug", "examples"))
    problems = []

    # Static checks first: they need no process.
    paths = sorted(glob.glob(os.path.join(DASHBOARDS, "*.json")))
    if not paths:
        raise SystemExit(f"no dashboards in {DASHBOARDS}")
    families = crate_families()
    dashboards, uids, queries = [], set(), []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        dashboards.append((path, d))
        problems += lint_dashboard(path, d, uids)
        for q in queries_of(path, d):
            queries.append(q)
            if q[4] == "panel":
                problems += [f"{q[0]} / {q[1]} {q[2]}: {x}" for x in lint_expr(q[3])]
            if not q[3].strip():
                problems.append(f"{q[0]} / {q[1]} {q[2]}: empty expression")
    used = {}
    for q in queries:
        promql = q[3] if q[4] == "panel" else (variable_promql(q[3])[0] or "")
        for metric, _ in metric_selectors(promql):
            used.setdefault(metric, set()).add(q[0])
            if not metric.startswith("__name__") and family_of(metric, families) is None:
                problems.append(f"{q[0]} / {q[1]} {q[2]}: {metric} is not a metric of src/names.rs (METRICS)")
    log(f"{len(paths)} dashboards, {len(queries)} queries, {len(used)} metric names; {len(families)} families in src/names.rs")

    for binary in JOBS:
        if not os.access(os.path.join(examples, binary), os.X_OK):
            raise SystemExit(f"{examples}/{binary} is missing: cargo build --all-features --examples")
    if not os.access(PROMETHEUS, os.X_OK):
        raise SystemExit(f"no Prometheus server at {PROMETHEUS} (Debian package `prometheus`)")

    tmp = tempfile.mkdtemp(prefix="grafana-check-")
    procs = Procs(tmp)
    results = []
    try:
        ports = {job: free_port() for job in JOBS}
        prom_port = free_port()
        common = ["--exit-after", "150"]  # a safety net should this script be killed
        procs.start("demo", [os.path.join(examples, "demo"), "--addr", f"127.0.0.1:{ports['demo']}", "--traffic", *common])
        procs.start("gateway", [os.path.join(examples, "gateway"), "--addr", f"127.0.0.1:{ports['gateway']}", "--traffic", *common])
        procs.start("grpc", [os.path.join(examples, "grpc"), "--addr", f"127.0.0.1:{ports['grpc']}",
                             "--grpc-addr", "127.0.0.1:0", "--traffic", *common])
        config = os.path.join(tmp, "prometheus.yml")
        with open(config, "w") as f:
            f.write(f"global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  scrape_timeout: {SCRAPE_INTERVAL}\n"
                    f"  evaluation_interval: {SCRAPE_INTERVAL}\nscrape_configs:\n")
            for job in JOBS:
                f.write(f"  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{ports[job]}']\n")
        prom = procs.start("prometheus", [
            PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={os.path.join(tmp, 'data')}",
            f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"])
        for name, p, _ in procs.procs[:3]:
            if not wait_http(f"http://127.0.0.1:{ports[name]}/metrics", 20, p):
                raise RuntimeError(f"{name} did not serve /metrics")
        base = f"http://127.0.0.1:{prom_port}"
        if not wait_http(f"{base}/-/ready", 20, prom):
            raise RuntimeError("prometheus did not become ready")
        api = Prom(base)
        log(f"examples up on {ports}; prometheus on {prom_port}")
        ready_at = elapsed()
        while elapsed() < ready_at + 20:
            up = api.query('sum by (job) (up{job=~"demo|gateway|grpc"})')
            ok = {r["metric"].get("job") for r in up.get("data", {}).get("result", []) if r["value"][1] == "1"}
            if ok == set(JOBS):
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"not every job is up: {ok}")
        first_scrape = elapsed()
        log(f"all three jobs up; waiting {WARMUP:.0f}s for data")
        time.sleep(max(0.0, WARMUP - (elapsed() - first_scrape)))

        # The names the three jobs actually export.
        resp = api.api("/api/v1/label/__name__/values", **{"match[]": '{job=~"demo|gateway|grpc"}'})
        scraped = set(resp.get("data", []))
        for metric, where in sorted(used.items()):
            if not metric.startswith("__name__") and metric not in scraped:
                problems.append(f"{metric} (in {', '.join(sorted(where))}) is not exported by the demo, gateway or grpc example")

        # Every query; an empty one is retried until the deadline (a rare event may come late).
        pending = list(range(len(queries)))
        outcome = {}
        while pending:
            still = []
            for i in pending:
                dash, panel, ref, expr, kind = queries[i]
                promql, unknown = substitute(expr)
                label = None
                if kind == "variable":
                    promql, label = variable_promql(promql)
                    if promql is None:
                        outcome[i] = (None, f"unsupported variable query {expr!r}")
                        continue
                if unknown:
                    outcome[i] = (None, f"unknown variables {unknown}")
                    continue
                resp = api.query(promql)
                if resp.get("status") != "success":
                    outcome[i] = (None, f"{resp.get('errorType')}: {resp.get('error')}")
                    continue
                n = series_count(resp)
                if label:
                    n = sum(1 for r in resp["data"]["result"] if r["metric"].get(label))
                outcome[i] = (n, None if n else "no series")
                if not n:
                    still.append(i)
            pending = still
            if pending and elapsed() < DEADLINE - 3:
                time.sleep(2)
            else:
                break
        for i, (dash, panel, ref, expr, kind) in enumerate(queries):
            n, err = outcome[i]
            results.append((dash, panel, ref, n, err))
            if err:
                problems.append(f"{dash} / {panel} {ref}: {err}\n    {substitute(expr)[0]}")
    except Exception as e:  # noqa: BLE001 - report, then clean up
        problems.append(f"check aborted: {type(e).__name__}: {e}")
    finally:
        procs.stop_all()
        if problems:
            procs.dump_logs()
        shutil.rmtree(tmp, ignore_errors=True)

    if results:
        w1 = max(len(r[0]) for r in results)
        w2 = max(len(r[1]) for r in results)
        print(f"\n{'dashboard':<{w1}}  {'panel':<{w2}}  ref  series")
        for dash, panel, ref, n, err in results:
            print(f"{dash:<{w1}}  {panel:<{w2}}  {ref:<3}  {n if n is not None else '-':>6}{'  ' + err if err else ''}")
    panels = sum(1 for _, d in dashboards for p in panels_of(d) if p.get("type") != "row")
    print(f"\n{len(dashboards)} dashboards, {panels} panels, {len(queries)} queries "
          f"({sum(1 for r in results if r[3])} with data), {len(used)} metric names, {elapsed():.1f}s")
    if problems:
        print(f"\n{len(problems)} problem(s):")
        for p in problems:
            print(f"  - {p}")
        return 1
    print("every panel and variable query returned data from a real Prometheus")
    return 0


if __name__ == "__main__":
    sys.exit(main())
