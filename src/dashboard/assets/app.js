// tower-observe dashboard: live figures from GET /v1/stats/stream (Server-Sent Events),
// ranges from GET /v1/stats/history, health from GET /health. No framework, no build step.
// Every value from the server goes into the page as text (textContent / DOM nodes), never as
// markup: route names and dimension values are user input.
'use strict';
(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const LIVE_POINTS = 300; // five minutes, one point a second
  const token = new URLSearchParams(location.search).get('token');

  // ---- DOM and formatting helpers

  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v == null) continue;
        if (k === 'class') e.className = v;
        else if (k === 'title') e.title = v;
        else e.setAttribute(k, v);
      }
    }
    for (const k of kids) if (k != null) e.append(k instanceof Node ? k : String(k));
    return e;
  }
  const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
  const fmtInt = (v) => (isNum(v) ? Math.round(v).toLocaleString('en-US') : '—');
  function fmtNum(v, digits = 1) {
    if (!isNum(v)) return '—';
    const a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(2) + 'M';
    if (a >= 1e4) return (v / 1e3).toFixed(1) + 'k';
    if (a >= 100) return v.toFixed(0);
    return v.toFixed(a < 10 && a > 0 ? Math.max(digits, 1) : digits);
  }
  function fmtMs(v) {
    if (!isNum(v)) return '—';
    if (v === 0) return '0';
    if (v >= 1000) return (v / 1000).toFixed(v >= 10000 ? 1 : 2) + ' s';
    if (v >= 100) return v.toFixed(0) + ' ms';
    if (v >= 10) return v.toFixed(1) + ' ms';
    if (v >= 1) return v.toFixed(2) + ' ms';
    return (v * 1000).toFixed(0) + ' µs';
  }
  function fmtPct(ratio, digits = 2) {
    if (!isNum(ratio)) return '—';
    const p = ratio * 100;
    return (p === 100 ? '100' : p.toFixed(digits)) + ' %';
  }
  const fmtBytes = (v) => (!isNum(v) ? '—' : v >= 2 ** 30 ? (v / 2 ** 30).toFixed(2) + ' GiB' : (v / 2 ** 20).toFixed(1) + ' MiB');
  function fmtDuration(sec) {
    if (!isNum(sec)) return '—';
    sec = Math.floor(sec);
    const d = Math.floor(sec / 86400), hr = Math.floor(sec / 3600) % 24;
    const m = Math.floor(sec / 60) % 60, s = sec % 60;
    if (d) return `${d}d ${hr}h`;
    if (hr) return `${hr}h ${m}m`;
    if (m) return `${m}m ${s}s`;
    return `${s}s`;
  }
  const level = (rate) => (!isNum(rate) ? null : rate >= 0.99 ? 'ok' : rate >= 0.95 ? 'warn' : 'bad');
  const entries = (o) => (o && typeof o === 'object' ? Object.entries(o) : []);

  // A time as hh:mm today, else with its date.
  function shortTime(iso) {
    const d = new Date(iso);
    const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    return d.toDateString() === new Date().toDateString() ? time : d.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ' + time;
  }

  function setTile(name, value, sub, lvl) {
    const t = $(`[data-tile="${name}"]`);
    if (!t) return;
    $('.v', t).textContent = value;
    if (sub !== undefined) $('.s', t).textContent = sub;
    if (lvl) t.dataset.level = lvl; else delete t.dataset.level;
  }

  // ---- Sortable tables

  function cmp(a, b) {
    const an = a == null || (typeof a === 'number' && Number.isNaN(a));
    const bn = b == null || (typeof b === 'number' && Number.isNaN(b));
    if (an || bn) return an === bn ? 0 : an ? 1 : -1;
    if (typeof a === 'number' && typeof b === 'number') return a - b;
    return String(a).localeCompare(String(b));
  }

  // cols: [{key, label, get(row), fmt?(value, row) -> string | Node, num?, cls?}]
  function table(host, cols, sortKey, desc = true, emptyText = 'Nothing recorded yet.') {
    const state = { key: sortKey, desc, rows: [] };
    const tbody = h('tbody');
    const headRow = h('tr');
    const ths = cols.map((c) => {
      const b = h('button', { type: 'button' }, c.label);
      b.addEventListener('click', () => {
        if (state.key === c.key) state.desc = !state.desc;
        else { state.key = c.key; state.desc = !!c.num; }
        render();
      });
      const th = h('th', { class: c.num ? 'num' : null, scope: 'col' }, b);
      headRow.append(th);
      return th;
    });
    host.append(h('div', { class: 'scroll' }, h('table', null, h('thead', null, headRow), tbody)));
    function render() {
      const col = cols.find((c) => c.key === state.key) || cols[0];
      const rows = state.rows.slice().sort((a, b) => {
        const r = cmp(col.get(a), col.get(b));
        if (r === 0) return 0;
        // Missing values stay last in both directions.
        const missing = col.get(a) == null || col.get(b) == null;
        return state.desc && !missing ? -r : r;
      });
      ths.forEach((th, i) => th.setAttribute('aria-sort',
        cols[i].key === state.key ? (state.desc ? 'descending' : 'ascending') : 'none'));
      const trs = rows.map((r) => h('tr', null, ...cols.map((c) => {
        const v = c.get(r);
        const out = c.fmt ? c.fmt(v, r) : v;
        const td = h('td', { class: [c.num ? 'num' : '', c.cls || ''].join(' ').trim() || null });
        if (out instanceof Node) td.append(out);
        else td.textContent = out == null || out === '' ? '—' : String(out);
        return td;
      })));
      if (!trs.length) trs.push(h('tr', null, h('td', { class: 'empty', colspan: String(cols.length) }, emptyText)));
      tbody.replaceChildren(...trs);
    }
    render();
    return { update(rows) { state.rows = rows; render(); } };
  }

  // Columns: a number (right-aligned, sorted biggest first) or text; `get` is a field name or
  // a function of the row.
  const getter = (g) => (typeof g === 'function' ? g : (r) => r[g]);
  const num = (key, label, get = key, fmt = fmtInt) => ({ key, label, num: true, get: getter(get), fmt });
  const txt = (key, label, get = key, more) => ({ key, label, get: getter(get), ...more });
  const fmt2 = (v) => fmtNum(v, 2);
  const lat = (q) => num(q, q === 'max' ? 'Max' : q, (r) => r.latency_ms?.[q], fmtMs);
  const rateCell = (v) => h('span', { class: level(v) }, fmtPct(v));
  // The columns of a breakdown (a route, a dimension value, an upstream); `short`: without
  // max, 4xx and 5xx (half-width cards).
  const breakdownCols = (first, short) => [
    first,
    num('rps', 'Req/s', 'requests_per_second', fmt2),
    num('req', 'Requests', 'requests'),
    num('err', 'Errors', 'errors'),
    num('ok', 'Success', 'success_rate', rateCell),
    lat('p50'), lat('p95'), lat('p99'),
    ...(short ? [] : [lat('max'), num('4xx', '4xx', (r) => r.status_codes?.['4xx']), num('5xx', '5xx', (r) => r.status_codes?.['5xx'])]),
  ];

  // ---- Charts (uPlot)

  const COLORS = { blue: '#3b82f6', purple: '#8b5cf6', red: '#ef4444', amber: '#f59e0b', green: '#10b981' };
  const charts = []; // {host, spec, data, plot}

  function cssVar(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

  function buildPlot(c) {
    const fg2 = cssVar('--fg2') || '#666', grid = cssVar('--grid') || '#eee';
    // Wide enough for the longest tick label.
    const size = (p, values) => (values && values.length ? Math.max(...values.map((v) => String(v).length)) * 7 + 16 : 40);
    const axis = (extra) => ({ stroke: fg2, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, ...extra });
    // Live: seconds on one line (the default adds a date line that collides at a minute mark).
    const hms = c.spec.live && uPlot.fmtDate('{HH}:{mm}:{ss}');
    const axes = [axis({ space: 70, values: hms ? (p, ticks) => ticks.map((t) => hms(new Date(t * 1000))) : undefined })];
    const scales = { x: { time: true } };
    // The live charts span at least a minute, not the few seconds since the page opened.
    if (c.spec.live) scales.x.range = (p, min, max) => (min == null ? [0, 1] : [Math.min(min, max - 60), max]);
    const units = [...new Set(c.spec.series.map((s) => s.unit || 'y'))];
    units.forEach((u, i) => {
      scales[u] = { range: (p, min, max) => [0, max > 0 ? max * 1.1 : 1] };
      axes.push(axis({
        scale: u, side: i ? 1 : 3, size, grid: i ? { show: false } : { stroke: grid, width: 1 },
        values: (p, ticks) => ticks.map((v) => fmtAxis(v, c.spec.series.find((s) => (s.unit || 'y') === u).fmt)),
      }));
    });
    const opts = {
      title: c.spec.title,
      width: Math.max(200, c.host.clientWidth),
      height: 190,
      scales,
      axes,
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      series: [{ value: (p, v) => (v == null ? '—' : new Date(v * 1000).toLocaleTimeString()) }, ...c.spec.series.map((s) => ({
        label: s.label, stroke: s.color, width: 1.5, scale: s.unit || 'y', spanGaps: false,
        fill: s.fill ? s.color + '22' : undefined,
        points: { size: 5, show: showPoints },
        value: (p, v) => fmtAxis(v, s.fmt),
      }))],
    };
    c.plot = new uPlot(opts, c.data, c.host);
  }
  // Markers where a line cannot show the data: a lone value, or slots wider than 8 px.
  function showPoints(u, si, i0, i1) {
    const d = u.data[si];
    let n = 0;
    for (let i = i0; i <= i1 && n <= 2; i++) if (d[i] != null) n++;
    return n <= 2 || (i1 - i0) * 8 <= u.bbox.width / devicePixelRatio;
  }
  function fmtAxis(v, kind) {
    if (v == null) return '—';
    if (kind === 'ms') return fmtMs(v);
    if (kind === 'pct') return fmtNum(v, v < 1 ? 2 : 1) + ' %';
    if (kind === 'mib') return fmtNum(v, 0) + ' MiB';
    return fmtNum(v, v && Math.abs(v) < 1 ? 2 : 1);
  }

  function chart(id, title, series, live = false) {
    const host = document.getElementById(id);
    host.dataset.seriesColors = series.map((s) => s.color).join(',');
    const c = { host, spec: { title, series, live }, data: [[], ...series.map(() => [])], plot: null };
    charts.push(c);
    if (!host.hidden) buildPlot(c);
    new ResizeObserver(() => {
      if (c.plot && c.host.clientWidth > 0 && Math.abs(c.plot.width - c.host.clientWidth) > 2) {
        c.plot.setSize({ width: c.host.clientWidth, height: 190 });
      }
    }).observe(host);
    return c;
  }
  function setChartData(c, data) {
    c.data = data;
    if (c.host.hidden) return;
    if (!c.plot) buildPlot(c);
    else c.plot.setData(data);
  }
  // New theme (light/dark): rebuild the plots with the new axis colours.
  matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => {
    for (const c of charts) if (c.plot) { c.plot.destroy(); buildPlot(c); }
  });

  // ---- Live: the SSE stream

  const live = {
    rate: chart('c-rate', 'Requests per second', [
      { label: 'last second', color: COLORS.blue, fill: true },
      { label: '60 s average', color: COLORS.purple },
    ], true),
    errors: chart('c-errors', 'Errors per second', [
      { label: 'errors (failures)', color: COLORS.red, fill: true },
      { label: '4xx', color: COLORS.amber },
    ], true),
    latency: chart('c-latency', 'Latency', [
      { label: 'avg, last second', color: COLORS.blue, fmt: 'ms' },
      { label: 'p50, last minute', color: COLORS.green, fmt: 'ms' },
      { label: 'p95, last minute', color: COLORS.amber, fmt: 'ms' },
      { label: 'p99, last minute', color: COLORS.red, fmt: 'ms' },
    ], true),
    process: chart('c-process', 'Process', [
      { label: 'CPU', color: COLORS.blue, fmt: 'pct', unit: 'pct', fill: true },
      { label: 'resident memory', color: COLORS.purple, fmt: 'mib', unit: 'mib' },
    ], true),
  };
  const buf = { t: [], rate1: [], rate60: [], err: [], c4: [], avg: [], p50: [], p95: [], p99: [], cpu: [], mem: [] };
  let prev = null;

  function push(point) {
    for (const k of Object.keys(buf)) {
      buf[k].push(point[k] ?? null);
      if (buf[k].length > LIVE_POINTS) buf[k].shift();
    }
  }

  function onStats(s) {
    const now = Date.now() / 1000;
    const completed = (s.totals?.requests ?? 0) - (s.totals?.aborted ?? 0);
    const cur = {
      started: s.started_at, up: s.uptime_seconds, req: s.totals?.requests, err: s.totals?.errors,
      c4: s.status_codes?.['4xx'], completed, sum: (s.latency_ms?.avg ?? 0) * completed,
    };
    // Percentiles of the last minute (a window of the server's), not since start.
    const recent = s.windows ? s.windows['1m']?.latency_ms : s.latency_ms;
    const p = { t: now, rate60: s.requests_per_second, p50: recent?.p50, p95: recent?.p95, p99: recent?.p99 };
    // Per-second figures from the difference with the previous snapshot; none across a restart
    // or a reset (the counters went back).
    if (prev && prev.started === cur.started && cur.up > prev.up && cur.req >= prev.req) {
      const dt = cur.up - prev.up;
      p.rate1 = (cur.req - prev.req) / dt;
      p.err = Math.max(0, cur.err - prev.err) / dt;
      p.c4 = Math.max(0, cur.c4 - prev.c4) / dt;
      const dn = cur.completed - prev.completed;
      p.avg = dn > 0 ? Math.max(0, cur.sum - prev.sum) / dn : null;
    }
    prev = cur;
    // A gap in the lines where the stream was down.
    if (lastAt && Date.now() - lastAt > 3000) push({ t: lastAt / 1000 + 1 });
    const proc = s.process;
    if (proc) {
      p.cpu = isNum(proc.cpu_utilization) ? proc.cpu_utilization * 100 : null;
      p.mem = isNum(proc.resident_memory_bytes) ? proc.resident_memory_bytes / 1048576 : null;
    }
    push(p);
    setChartData(live.rate, [buf.t, buf.rate1, buf.rate60]);
    setChartData(live.errors, [buf.t, buf.err, buf.c4]);
    setChartData(live.latency, [buf.t, buf.avg, buf.p50, buf.p95, buf.p99]);
    live.process.host.hidden = !proc;
    setChartData(live.process, [buf.t, buf.cpu, buf.mem]);

    renderTiles(s);
    renderWarnings(s.warnings);
    renderAlerts(s.alerts);
    routes.update(s.routes || []);
    renderDims(s.dimensions);
    bySection('#upstreams', upstreams, s.upstreams);
    bySection('#retries', retries, s.retries);
    bySection('#caches', caches, s.caches);
    renderPools(s.pools);
    renderGrpc(s.grpc);
    renderLlm(s.llm);
    renderOperations(s.operations);
    renderQueues(s.queues);
    renderProcess(proc);
    lastStats = s;
    lastAt = Date.now();
    $('#updated').textContent = 'updated ' + new Date().toLocaleTimeString();
    if (!healthKnown) renderHealth(null);
  }

  // Wiring and configuration warnings (a layer requests do not pass through, a history kept
  // in memory, a rule with nothing to read): one line each, code then message.
  function renderWarnings(list) {
    const sec = $('#warnings');
    const items = Array.isArray(list) ? list : [];
    sec.hidden = items.length === 0;
    $('#warnings .body').replaceChildren(
      ...items.map((w) => h('li', null, h('code', null, w.code), ' ', w.message)));
  }

  function renderTiles(s) {
    setTile('rps', fmtNum(s.requests_per_second, 1));
    // The last minute (and five) when the server has windows; since start otherwise.
    const w1 = s.windows?.['1m'], w5 = s.windows?.['5m'];
    const ok = w1 ? w1.success_rate : s.success_rate, l1 = w1 ? w1.latency_ms : s.latency_ms;
    setTile('success', fmtPct(ok), w1 ? `last minute · 5 min ${fmtPct(w5?.success_rate)}` : 'since start', level(ok));
    setTile('p50', fmtMs(l1?.p50), w1 ? `last minute · 5 min ${fmtMs(w5?.latency_ms?.p50)}` : 'latency');
    setTile('p95', fmtMs(l1?.p95), w1 ? `last minute · 5 min ${fmtMs(w5?.latency_ms?.p95)}` : 'latency');
    setTile('p99', fmtMs(l1?.p99), (w1 ? 'last minute · ' : '') + 'max ' + fmtMs(l1?.max));
    setTile('requests', fmtInt(s.totals?.requests),
      `${fmtInt(s.totals?.errors)} errors` + (s.totals?.aborted ? ` · ${fmtInt(s.totals.aborted)} aborted` : ''));
    // In flight: the service-wide figure if the document has one, else the routes' sum.
    let inflight = isNum(s.in_flight) ? s.in_flight : null;
    if (inflight == null && (s.routes || []).some((r) => isNum(r.in_flight))) {
      inflight = s.routes.reduce((a, r) => a + (isNum(r.in_flight) ? r.in_flight : 0), 0);
    }
    $('[data-tile="inflight"]').hidden = inflight == null;
    if (inflight != null) setTile('inflight', fmtInt(inflight));
    setTile('uptime', fmtDuration(s.uptime_seconds), s.started_at ? 'since ' + shortTime(s.started_at) : '');
  }

  // ---- Health

  let lastStats = null, lastAt = 0, healthKnown = false;
  const HEALTH_TEXT = { green: 'healthy', yellow: 'degraded', red: 'failing' };
  const LEVEL = { green: 'ok', yellow: 'warn', red: 'bad', live: 'ok', reconnecting: 'warn', closed: 'bad' };

  function renderHealth(report) {
    let state, sub;
    if (report && HEALTH_TEXT[report.status]) {
      state = report.status;
      const why = Array.isArray(report.reasons) && report.reasons.length ? report.reasons.map(String).join('; ') : null;
      sub = why || (isNum(report.error_rate) ? `${fmtPct(report.error_rate)} errors, 1 min` : 'from /health');
      if (report.version != null) $('#version').textContent = 'v' + String(report.version);
    } else if (lastStats) {
      // No /health: judge the success rate with the default thresholds (5 % yellow, 10 % red).
      const r = lastStats.success_rate;
      state = !isNum(r) ? 'green' : r < 0.9 ? 'red' : r < 0.95 ? 'yellow' : 'green';
      sub = 'derived from the success rate';
    } else {
      return;
    }
    const pill = $('#health');
    pill.dataset.state = state;
    pill.dataset.level = LEVEL[state];
    pill.textContent = HEALTH_TEXT[state];
    pill.title = sub;
    setTile('health', HEALTH_TEXT[state], sub, LEVEL[state]);
  }

  async function pollHealth() {
    try {
      const res = await fetch('health', { cache: 'no-store', headers: { accept: 'application/json' } });
      if (res.status === 200 || res.status === 503) {
        healthKnown = true;
        renderHealth(await res.json());
        return;
      }
    } catch (e) { /* down or restarting: the stream's status says so */ }
    healthKnown = false;
    renderHealth(null);
  }

  // ---- Alerts

  const alertsTable = table($('#alerts .body'), [
    txt('state', 'State', 'state', { fmt: (v) => h('span', { class: 'pill', 'data-level': v === 'firing' ? 'bad' : 'warn' }, v) }),
    txt('severity', 'Severity'),
    txt('rule', 'Rule'),
    txt('labels', 'Labels', (a) => entries(a.labels).map(([k, v]) => `${k}=${v}`).join(' '), {
      cls: 'wrap', fmt: (v, a) => (v ? h('span', null, ...entries(a.labels).map(([k, x]) => h('span', { class: 'chip' }, `${k}=${x}`))) : '—') }),
    txt('since', 'Active since', 'active_since', { fmt: (v) => (v ? fmtDuration((Date.now() - Date.parse(v)) / 1000) + ' ago' : '—') }),
    num('value', 'Value', 'value', (v) => fmtNum(v, 3)),
    txt('summary', 'Summary', 'summary', { cls: 'wrap' }),
  ], 'state', false);

  function renderAlerts(al) {
    const sec = $('#alerts');
    sec.hidden = !al;
    if (!al) return;
    const active = Array.isArray(al.active) ? al.active : [];
    const firing = active.filter((a) => a.state === 'firing').length;
    $('#alerts-sum').textContent = `${firing} firing · ${active.length - firing} pending · ${fmtInt(al.rules)} rules`;
    $('#alerts-none').hidden = active.length > 0;
    $('#alerts .body').hidden = !active.length;
    alertsTable.update(active);
  }

  // ---- Routes and dimensions

  const routes = table($('#routes .body'), breakdownCols(txt('route', 'Route', (r) => `${r.route} ${r.method}`,
    { fmt: (v, r) => h('span', null, h('span', { class: 'm' }, r.method), r.route) })), 'req');

  const dimTables = new Map(); // key -> {card, table}
  function renderDims(dims) {
    const host = $('#dims');
    const seen = new Set();
    for (const [key, values] of entries(dims)) {
      seen.add(key);
      let d = dimTables.get(key);
      if (!d) {
        const body = h('div', { class: 'body' });
        const card = h('section', { class: 'card dim', 'data-dimension': key },
          h('h2', null, 'Dimension ', h('code', null, key)), body);
        host.append(card);
        d = { card, table: table(body, breakdownCols(txt('value', key), true), 'req') };
        dimTables.set(key, d);
      }
      d.table.update(entries(values).map(([value, e]) => ({ value, ...e })));
    }
    for (const [key, d] of dimTables) if (!seen.has(key)) { d.card.remove(); dimTables.delete(key); }
  }

  // ---- Client side: upstreams, retries, caches, pools

  // A section listing an object's entries, hidden while it has none.
  function bySection(id, tbl, obj) {
    const list = entries(obj);
    $(id).hidden = !list.length;
    if (list.length) tbl.update(list.map(([name, e]) => ({ name, ...e })));
  }
  const upstreams = table($('#upstreams .body'), breakdownCols(txt('name', 'Upstream'), true), 'req');
  // `reason: n` (or `from -> to: n`), one a line.
  const kvText = (o) => entries(o).map(([k, v]) => `${k}: ${fmtInt(v)}`).join('\n');
  const lines = (v) => (v ? h('span', null, ...v.split('\n').map((l) => h('div', null, l))) : '—');
  const retries = table($('#retries .body'), [
    txt('name', 'Target'),
    num('logical', 'Requests', 'logical_requests'),
    num('attempts', 'Attempts'),
    num('avg', 'Avg attempts', 'attempts_avg', fmt2),
    num('retries', 'Retries'),
    txt('reasons', 'By reason', (r) => kvText(r.retries_by_reason), { fmt: lines }),
    num('exhausted', 'Exhausted'),
    txt('failovers', 'Failovers', (r) => kvText(r.failovers), { fmt: lines }),
  ], 'attempts');

  function ratioCell(v) {
    if (!isNum(v)) return '—';
    const fill = h('span');
    fill.style.width = Math.round(Math.min(1, Math.max(0, v)) * 100) + '%';
    return h('span', null, fmtPct(v, 1), h('span', { class: 'bar' }, fill));
  }
  const caches = table($('#caches .body'), [
    txt('name', 'Cache'),
    num('ratio', 'Hit ratio', 'hit_ratio', ratioCell),
    num('hit', 'Hit'), num('miss', 'Miss'), num('stale', 'Stale'), num('bypass', 'Bypass'),
  ], 'name', false);

  const pools = table($('#pools .body'), [
    { key: 'name', label: 'Pool / backend', get: (r) => r.name,
      fmt: (v, r) => (r.backend ? h('span', null, '↳ ', r.backend) : h('strong', null, v)) },
    { key: 'health', label: 'Health', get: (r) => r.health,
      fmt: (v, r) => (r.backend ? h('span', { class: r.healthy ? 'ok' : 'bad' }, r.healthy ? 'healthy' : 'unhealthy') : ratioCell(v == null ? null : v / 100)) },
    txt('info', 'Strategy / checks'),
    num('last', 'Last check', 'last', fmtMs),
  ], 'name', false);
  function renderPools(p) {
    const list = entries(p);
    $('#pools').hidden = !list.length;
    if (!list.length) return;
    // A pool's backends follow it, whatever the order: sorting is by pool.
    const rows = [];
    for (const [name, pool] of list) {
      rows.push({ name, health: pool.health_percent, info: `${pool.strategy} · ${fmtInt(pool.healthy)}/${fmtInt(pool.healthy + pool.unhealthy)} healthy` });
      for (const [backend, b] of entries(pool.backends)) {
        rows.push({ name: `${name} ${backend}`, backend, healthy: b.healthy, health: null,
          info: `${fmtInt(b.checks)} checks · ${fmtInt(b.failed_checks)} failed`, last: b.last_check_ms });
      }
    }
    pools.update(rows);
  }

  // ---- gRPC

  const CLIENT_CODES = /^(CANCELLED|NOT_FOUND|INVALID_ARGUMENT|ALREADY_EXISTS|FAILED_PRECONDITION|OUT_OF_RANGE|UNAUTHENTICATED|PERMISSION_DENIED)$/;
  function statusMix(codes) {
    const list = entries(codes).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
    const total = list.reduce((a, [, n]) => a + n, 0);
    if (!total) return '—';
    const bar = h('span', { class: 'mix' });
    const text = [];
    list.forEach(([code, n]) => {
      // Green OK, amber the caller's mistakes, red the server's faults.
      const cls = code === 'OK' ? 'c0' : CLIENT_CODES.test(code) ? 'c1' : 'c2';
      const seg = h('span', { class: cls, title: `${code}: ${n}` });
      seg.style.width = (n / total) * 100 + '%';
      bar.append(seg);
      text.push(`${code} ${fmtPct(n / total, n / total < 0.01 ? 2 : 0)}`);
    });
    return h('span', null, bar, h('span', { class: 'muted' }, text.slice(0, 4).join(' · ') + (text.length > 4 ? ' …' : '')));
  }
  const grpc = table($('#grpc .body'), [
    txt('side', 'Side'),
    txt('method', 'Method'),
    num('cps', 'Calls/s', 'calls_per_second', fmt2),
    num('calls', 'Calls'), num('errors', 'Errors'), num('cancelled', 'Cancelled'),
    num('ok', 'Success', 'success_rate', rateCell),
    lat('p50'), lat('p99'),
    txt('mix', 'Status mix', (r) => r.status_codes?.OK, { fmt: (v, r) => statusMix(r.status_codes) }),
  ], 'calls');
  function renderGrpc(g) {
    const rows = [];
    for (const side of ['server', 'client']) for (const [method, e] of entries(g?.[side])) rows.push({ side, method, ...e });
    $('#grpc').hidden = !rows.length;
    if (rows.length) grpc.update(rows);
  }

  // ---- LLM traffic: per provider and per model, served and made

  const ttft = (q) => num('t' + q, 'TTFT ' + q, (r) => r.ttft_ms?.[q], fmtMs);
  const errRateCell = (v) => h('span', { class: level(isNum(v) ? 1 - v : null) }, fmtPct(v));
  const llm = table($('#llm .body'), [
    txt('side', 'Side'),
    txt('kind', 'By'),
    txt('name', 'Provider / model'),
    num('rps', 'Req/s', 'requests_per_second', fmt2),
    num('req', 'Requests', 'requests'), num('err', 'Errors', 'errors'), num('cancelled', 'Cancelled'),
    num('erate', 'Error rate', 'error_rate', errRateCell),
    lat('p50'), lat('p95'), lat('p99'),
    ttft('p50'), ttft('p95'), ttft('p99'),
    num('tin', 'Tokens in', 'input_tokens'),
    num('tout', 'Tokens out', 'output_tokens'),
    num('test', 'Estimated', 'estimated_tokens'),
  ], 'req');
  function renderLlm(l) {
    const rows = [];
    for (const side of ['server', 'client']) {
      for (const [kind, key] of [['provider', 'providers'], ['model', 'models']]) {
        for (const [name, e] of entries(l?.[side]?.[key])) rows.push({ side, kind, name, ...e });
      }
    }
    $('#llm').hidden = !rows.length;
    if (rows.length) llm.update(rows);
  }

  // ---- Operations and queues (feature `operations`)

  const operations = table($('#operations .body'), [
    txt('kind', 'Kind'),
    txt('system', 'System / module'),
    txt('name', 'Operation', (r) => (r.target ? `${r.name} ${r.target}` : r.name)),
    num('cps', 'Calls/s', 'calls_per_second', fmt2),
    num('calls', 'Calls'), num('errors', 'Errors'), num('cancelled', 'Cancelled'),
    num('erate', 'Error rate', 'error_rate', errRateCell),
    lat('p50'), lat('p95'), lat('p99'),
  ], 'calls');
  function renderOperations(list) {
    const rows = Array.isArray(list) ? list : [];
    $('#operations').hidden = !rows.length;
    if (rows.length) operations.update(rows);
  }
  const quantileOf = (field, q) => (r) => r[field]?.[q];
  const workersCell = (v, r) => {
    const w = r.workers || {};
    const parts = [h('span', null, `${fmtInt(w.busy)} busy · ${fmtInt(w.idle)} idle`)];
    if (w.stuck) parts.push(h('span', { class: 'bad', title: (r.stuck_workers || []).join(', ') }, ` · ${fmtInt(w.stuck)} stuck`));
    return h('span', null, ...parts);
  };
  const queues = table($('#queues .body'), [
    txt('name', 'Queue'),
    num('depth', 'Depth', 'depth', (v) => fmtNum(v, 0)),
    num('enqueued', 'Enqueued'), num('started', 'Started'), num('finished', 'Finished'),
    num('failed', 'Failed'), num('cancelled', 'Cancelled'),
    num('wait50', 'Wait p50', quantileOf('wait_ms', 'p50'), fmtMs), num('wait99', 'Wait p99', quantileOf('wait_ms', 'p99'), fmtMs),
    num('proc50', 'Processing p50', quantileOf('processing_ms', 'p50'), fmtMs), num('proc99', 'Processing p99', quantileOf('processing_ms', 'p99'), fmtMs),
    num('stuck', 'Workers', (r) => r.workers?.stuck, workersCell),
  ], 'depth');
  function renderQueues(q) {
    bySection('#queues', queues, q);
  }

  // ---- Process

  function renderProcess(p) {
    const sec = $('#process');
    sec.hidden = !p;
    if (!p) return;
    const rt = p.runtime;
    const items = [
      ['CPU', isNum(p.cpu_utilization) ? fmtPct(p.cpu_utilization, 1) : '—'],
      ['Cores used', `${fmtNum(p.cpu_cores_used, 2)} of ${fmtInt(p.available_cores)}`],
      ['CPU time', isNum(p.cpu_seconds_total) ? fmtNum(p.cpu_seconds_total, 1) + ' s' : '—'],
      ['Resident memory', fmtBytes(p.resident_memory_bytes)],
      ['Virtual memory', fmtBytes(p.virtual_memory_bytes)],
      ['Open files', `${fmtInt(p.open_fds)}${isNum(p.max_fds) ? ' of ' + fmtInt(p.max_fds) : ''}`],
      ['Threads', fmtInt(p.threads)],
    ];
    if (rt) {
      items.push(
        ['Tokio workers', fmtInt(rt.workers)],
        ['Tokio tasks', fmtInt(rt.alive_tasks)],
        ['Global queue', fmtInt(rt.global_queue_depth)],
        ['Workers busy', isNum(rt.busy_ratio) ? fmtPct(rt.busy_ratio, 1) : '—'],
      );
    }
    $('.body', sec).replaceChildren(h('dl', { class: 'kv' },
      ...items.map(([k, v]) => h('div', null, h('dt', null, k), h('dd', null, v)))));
  }

  // ---- History

  const PERIODS = { '15m': [900, '1m', 60], '1h': [3600, '1m', 60], '24h': [86400, '5m', 300], '7d': [604800, '1h', 3600], '30d': [2592000, '1d', 86400] };
  let period = '1h', historyTimer = null, historyAbort = null;
  const hist = {
    rate: chart('h-rate', 'Requests per second', [
      { label: 'requests/s', color: COLORS.blue, fill: true },
      { label: 'errors/s', color: COLORS.red },
    ]),
    errors: chart('h-errors', 'Error rate', [{ label: 'errors', color: COLORS.red, fmt: 'pct', fill: true }]),
    latency: chart('h-latency', 'Latency', [
      { label: 'p50', color: COLORS.green, fmt: 'ms' },
      { label: 'p95', color: COLORS.amber, fmt: 'ms' },
      { label: 'p99', color: COLORS.red, fmt: 'ms' },
    ]),
  };

  async function loadHistory() {
    clearTimeout(historyTimer);
    const [span, step, stepSec] = PERIODS[period];
    $$('#history .seg button').forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.period === period)));
    const to = Math.floor(Date.now() / 1000);
    const from = Math.floor((to - span) / stepSec) * stepSec;
    const url = `v1/stats/history?from=${from}&to=${to + 1}&step=${step}`;
    if (historyAbort) historyAbort.abort();
    historyAbort = new AbortController();
    let doc = null;
    try {
      const res = await fetch(url, { cache: 'no-store', signal: historyAbort.signal });
      if (res.status === 404) { $('#history').hidden = true; return; } // history is off
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      doc = await res.json();
    } catch (e) {
      if (e.name === 'AbortError') return;
      $('#history-note').textContent = 'unavailable (' + e.message + ')';
      historyTimer = setTimeout(loadHistory, 30000);
      return;
    }
    const sec = $('#history');
    sec.hidden = false;
    // One slot per bucket; the history lists only the buckets that hold requests: the others
    // count 0 (before the first listed one: unknown, not drawn), their latency none.
    const byTime = new Map((doc.points || []).map((p) => [p.unix, p]));
    const first = doc.points?.length ? doc.points[0].unix : Infinity;
    const t = [], rps = [], eps = [], er = [], p50 = [], p95 = [], p99 = [];
    for (let x = from; x <= to; x += stepSec) {
      const p = byTime.get(x);
      const known = x >= first;
      t.push(x);
      // The current bucket is partial: rate over the part elapsed.
      const len = Math.max(1, Math.min(stepSec, to - x));
      rps.push(p ? p.requests / len : known ? 0 : null);
      eps.push(p ? p.errors / len : known ? 0 : null);
      er.push(p && isNum(p.error_rate) ? p.error_rate * 100 : null);
      p50.push(p?.latency_ms?.p50 ?? null);
      p95.push(p?.latency_ms?.p95 ?? null);
      p99.push(p?.latency_ms?.p99 ?? null);
    }
    setChartData(hist.rate, [t, rps, eps]);
    setChartData(hist.errors, [t, er]);
    setChartData(hist.latency, [t, p50, p95, p99]);
    const total = (doc.points || []).reduce((a, p) => a + (p.requests || 0), 0);
    $('#history-note').textContent = `step ${step} · ${fmtInt(total)} requests` + (doc.complete === false ? ' · incomplete: ' + String(doc.warning || '') : '');
    historyTimer = setTimeout(loadHistory, Math.max(30000, Math.min(stepSec * 1000, 300000)));
  }
  for (const b of $$('#history .seg button')) {
    b.addEventListener('click', () => { period = b.dataset.period; loadHistory(); });
  }

  // ---- Connection

  function setStatus(state, text) {
    const s = $('#status');
    s.dataset.state = state;
    s.dataset.level = LEVEL[state];
    s.textContent = text;
  }

  function connect() {
    const url = 'v1/stats/stream' + (token ? '?token=' + encodeURIComponent(token) : '');
    const es = new EventSource(url);
    const handle = (ev) => {
      let s;
      try { s = JSON.parse(ev.data); } catch (e) { return; }
      setStatus('live', 'live');
      onStats(s);
    };
    es.addEventListener('stats', handle);
    es.onmessage = handle; // unnamed events, if any
    es.onopen = () => setStatus('live', 'live');
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) {
        // Refused (wrong token) or not an event stream: EventSource gives up; try again later.
        setStatus('closed', 'disconnected');
        es.close();
        setTimeout(connect, 10000);
      } else {
        setStatus('reconnecting', 'reconnecting…');
      }
    };
  }

  // A stream that stays silent is not live, even if the connection looks open.
  setInterval(() => {
    if (lastAt && Date.now() - lastAt > 5000 && $('#status').dataset.state === 'live') setStatus('reconnecting', 'reconnecting…');
  }, 1000);

  // ---- Console: recent slow and failed requests (GET v1/requests), and a request's view
  // (GET v1/requests/{id}, served with a log store and its token: spans and log lines). The
  // search box and the view show only when that route answers like a log store; every value
  // goes in as text. `#request=<id>` opens a view directly.
  {
    const logsToken = new URLSearchParams(location.search).get('logs_token') || token;
    const withToken = (url, t) => (t ? url + (url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(t) : url);
    let storeOn = false, recentTimer = null;
    const recent = table($('#console-recent'), [
      txt('time', 'Time', 'time', { fmt: (v) => (v ? new Date(v).toLocaleTimeString() : '—') }),
      txt('kind', 'Kind', (r) => (r.failed ? 'failed' : 'slow'), {
        fmt: (v, r) => h('span', { class: 'pill', 'data-level': r.failed ? 'bad' : 'warn' }, r.failed && r.slow ? 'failed, slow' : v) }),
      txt('route', 'Route', (r) => `${r.route} ${r.method}`, { fmt: (v, r) => h('span', null, h('span', { class: 'm' }, r.method), r.route) }),
      num('status', 'Status', 'status', (v) => (v == null ? '—' : String(v))),
      num('duration', 'Duration', 'duration_ms', fmtMs),
      txt('id', 'Request ID', (r) => r.request_id || r.trace_id, {
        cls: 'wrap',
        fmt: (v, r) => {
          if (!v) return '—';
          if (!storeOn) return h('code', null, v);
          const a = h('a', { href: '#request=' + encodeURIComponent(v), class: 'open-request', 'data-request': v }, v);
          return a;
        } }),
    ], 'time', true, 'No slow or failed request in the window.');

    async function loadRecent() {
      clearTimeout(recentTimer);
      try {
        const res = await fetch(withToken('v1/requests', token), { cache: 'no-store', headers: { accept: 'application/json' } });
        if (!res.ok) { $('#console-note').textContent = res.status === 404 ? '' : `unavailable (HTTP ${res.status})`; }
        else {
          const doc = await res.json();
          $('#console').hidden = false;
          if (isNum(doc.window_seconds)) $('#recent-window').textContent = fmtDuration(doc.window_seconds);
          recent.update(Array.isArray(doc.requests) ? doc.requests : []);
        }
      } catch (e) { /* down or restarting: the stream's status says so */ }
      recentTimer = setTimeout(loadRecent, 5000);
    }

    // Is there a log store that answers us? An unknown ID gets its JSON 404; without a store the
    // route does not exist (a 404 of another kind), without the logs token 401/403.
    async function probeStore() {
      try {
        const res = await fetch(withToken('v1/requests/' + encodeURIComponent('probe-' + Date.now().toString(36)), logsToken), { cache: 'no-store', headers: { accept: 'application/json' } });
        if (res.status !== 200 && res.status !== 404) return false;
        // A JSON answer of the store's shape, not an application's fallback page.
        const doc = await res.json().catch(() => null);
        if (!doc || typeof doc !== 'object') return false;
        return res.status === 200 ? Array.isArray(doc.spans) || Array.isArray(doc.logs) : 'error' in doc;
      } catch (e) { return false; }
    }

    function clearView() {
      $('#rv-spans').replaceChildren();
      $('#rv-logs').replaceChildren();
      $('#rv-meta').textContent = '';
      $('#rv-error').hidden = true;
    }

    // Spans in tree order (each after its parent, siblings by start), with their depth.
    function spanTree(spans) {
      const ids = new Set(spans.map((s) => s.span_id));
      const kids = new Map();
      for (const s of spans) {
        const p = s.parent_span_id && ids.has(s.parent_span_id) ? s.parent_span_id : null;
        if (!kids.has(p)) kids.set(p, []);
        kids.get(p).push(s);
      }
      const out = [];
      const walk = (parent, depth) => {
        const list = (kids.get(parent) || []).slice().sort((a, b) => (a.start_offset_ms ?? 0) - (b.start_offset_ms ?? 0));
        for (const s of list) { out.push([s, depth]); if (depth < 32) walk(s.span_id, depth + 1); }
      };
      walk(null, 0);
      return out;
    }

    function renderRequest(doc) {
      clearView();
      const spans = Array.isArray(doc.spans) ? doc.spans : [];
      const logs = Array.isArray(doc.logs) ? doc.logs : [];
      $('#rv-title').textContent = `${doc.method || ''} ${doc.route || ''}`.trim() || 'Request';
      $('#rv-meta').textContent = [
        doc.request_id ? 'request ' + doc.request_id : null,
        doc.trace_id ? 'trace ' + doc.trace_id : null,
        doc.status != null ? 'status ' + doc.status : null,
        isNum(doc.duration_ms) ? fmtMs(doc.duration_ms) : null,
        doc.start ? new Date(doc.start).toLocaleString() : null,
      ].filter(Boolean).join(' · ');
      const total = Math.max(isNum(doc.duration_ms) ? doc.duration_ms : 0,
        ...spans.map((s) => (s.start_offset_ms ?? 0) + (s.duration_ms ?? 0)), 0.001);
      const rows = spanTree(spans).map(([s, depth]) => {
        const off = Math.max(0, s.start_offset_ms ?? 0), dur = Math.max(0, s.duration_ms ?? 0);
        const bar = h('span', { class: 'span-bar', title: `${s.name} · ${fmtMs(dur)} at +${fmtMs(off)}` });
        bar.style.left = (off / total) * 100 + '%';
        bar.style.width = Math.max(0.3, (dur / total) * 100) + '%';
        const label = h('span', { class: 'span-name' }, String(s.name ?? ''));
        label.style.paddingLeft = depth * 12 + 'px';
        const fields = entries(s.fields).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
        if (fields) label.title = fields;
        return h('div', { class: 'span-row', 'data-span': String(s.span_id ?? '') }, label,
          h('span', { class: 'span-track' }, bar), h('span', { class: 'span-dur num' }, fmtMs(dur)));
      });
      if (!rows.length) rows.push(h('p', { class: 'empty' }, 'No spans recorded for this request (unsampled, or traces off).'));
      $('#rv-spans').replaceChildren(...rows);
      const lines = logs.map((l) => {
        const fields = entries(l.fields).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
        return h('tr', { 'data-level': String(l.level ?? '').toLowerCase() },
          h('td', { class: 'nowrap' }, l.time ? new Date(l.time).toLocaleTimeString([], { hour12: false, fractionalSecondDigits: 3 }) : '—'),
          h('td', null, String(l.level ?? '')),
          h('td', null, String(l.target ?? '')),
          h('td', { class: 'wrap' }, String(l.message ?? ''), fields ? h('span', { class: 'muted' }, ' ' + fields) : null));
      });
      if (!lines.length) lines.push(h('tr', null, h('td', { class: 'empty', colspan: '4' }, 'No log lines for this request.')));
      $('#rv-logs').replaceChildren(...lines);
    }

    let viewAbort = null;
    async function openRequest(id) {
      if (!storeOn || !id) return;
      const view = $('#request-view');
      view.hidden = false;
      clearView();
      $('#rv-title').textContent = 'Request ' + id;
      if (viewAbort) viewAbort.abort();
      viewAbort = new AbortController();
      try {
        const res = await fetch(withToken('v1/requests/' + encodeURIComponent(id), logsToken), { cache: 'no-store', signal: viewAbort.signal, headers: { accept: 'application/json' } });
        const doc = await res.json().catch(() => null);
        if (!res.ok) {
          $('#rv-error').hidden = false;
          $('#rv-error').textContent = res.status === 404 ? `No request ${id} in the log store.` : `HTTP ${res.status}` + (doc && doc.error ? ': ' + String(doc.error) : '');
          return;
        }
        renderRequest(doc || {});
      } catch (e) {
        if (e.name === 'AbortError') return;
        $('#rv-error').hidden = false;
        $('#rv-error').textContent = 'unavailable (' + e.message + ')';
      }
    }

    const fromHash = () => {
      const m = /^#request=(.+)$/.exec(location.hash);
      if (!m) return null;
      try { return decodeURIComponent(m[1]); } catch (e) { return null; }
    };
    window.addEventListener('hashchange', () => { const id = fromHash(); if (id) openRequest(id); });
    $('#console-search').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const id = $('#console-q').value.trim();
      if (!id) return;
      if (fromHash() === id) openRequest(id);
      else location.hash = 'request=' + encodeURIComponent(id);
    });
    $('#rv-close').addEventListener('click', () => {
      $('#request-view').hidden = true;
      if (fromHash()) history.replaceState(null, '', location.pathname + location.search);
    });

    (async () => {
      storeOn = await probeStore();
      $('#console-search').hidden = !storeOn;
      $('#request-view').hidden = true;
      if (storeOn) $('#console').hidden = false;
      loadRecent();
      const id = fromHash();
      if (id && storeOn) { $('#console-q').value = id; openRequest(id); }
    })();
  }

  connect();
  pollHealth();
  setInterval(pollHealth, 10000);
  loadHistory();
})();
