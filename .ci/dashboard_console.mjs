// The dashboard's console (recent requests, search box, request view) in jsdom, against a
// fake server with and without a log store, the page nested under /ops:
//
//   NODE_PATH=<dir>/node_modules node .ci/dashboard_console.mjs     (npm install jsdom@24)
//
// The real-browser check (.ci/dashboard_check.mjs) runs against the demo, which may have no
// log store; this one always drives the view: the waterfall's tree order, bar positions and
// indentation, the log lines, markup in every field shown as text, the row links, `#request=`
// on load, every request under the prefix with the token, and — without a store — the search
// box and the view hidden. uPlot, EventSource, ResizeObserver and matchMedia are stubbed (no
// canvas in jsdom). Exits 1 on any failure.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
const { JSDOM } = createRequire(import.meta.url)('jsdom');
const dir = fileURLToPath(new URL('../src/dashboard/assets/', import.meta.url));
const html = readFileSync(dir + 'index.html', 'utf8').replace(/<script[^>]*><\/script>/g, '');
const js = readFileSync(dir + 'app.js', 'utf8');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ID = 'req-<b>1</b>';
const recent = { window_seconds: 300, requests: [
  { request_id: ID, trace_id: 'ab'.repeat(16), method: 'GET', route: '/api/<script>x</script>', status: 500, error_type: '500', duration_ms: 12.5, time: new Date().toISOString(), slow: true, failed: true },
  { request_id: 'r2', trace_id: 'cd'.repeat(16), method: 'POST', route: '/api/checkout', status: 200, error_type: null, duration_ms: 512, time: new Date(Date.now() - 1000).toISOString(), slow: true, failed: false },
] };
const doc = { request_id: ID, trace_id: 'ab'.repeat(16), route: '/api/x', method: 'GET', status: 500, duration_ms: 12.5, start: new Date().toISOString(),
  spans: [
    { span_id: 's1', parent_span_id: null, name: 'request', start: '', start_offset_ms: 0, duration_ms: 12.5, fields: {} },
    { span_id: 's3', parent_span_id: 's1', name: 'db <img src=x onerror=alert(1)>', start: '', start_offset_ms: 6, duration_ms: 5, fields: { q: 'select' } },
    { span_id: 's2', parent_span_id: 's1', name: 'auth', start: '', start_offset_ms: 1, duration_ms: 2, fields: {} },
  ],
  logs: [{ time: new Date().toISOString(), level: 'ERROR', target: 'app', message: 'boom <i>x</i>', span_id: 's3', fields: { k: 1 } }] };

async function run(store, hash = '') {
  const calls = [];
  const dom = new JSDOM(html, { url: 'http://svc.test/ops/dashboard?token=t' + hash, runScripts: 'outside-only', pretendToBeVisual: true });
  const w = dom.window;
  w.uPlot = class { constructor() {} setData() {} setSize() {} }; w.uPlot.fmtDate = () => () => '';
  w.ResizeObserver = class { observe() {} };
  w.matchMedia = () => ({ matches: false, addEventListener() {} });
  w.EventSource = class { constructor(u) { calls.push('ES ' + u); this.readyState = 0; } addEventListener() {} close() {} };
  w.EventSource.CLOSED = 2;
  const answer = (status, body) => ({ ok: status < 300, status, json: async () => (typeof body === 'string' ? JSON.parse(body) : body) });
  w.fetch = async (url, opts) => {
    const u = new URL(url, w.location.href);
    calls.push(u.pathname + u.search);
    if (u.pathname === '/ops/v1/requests') return answer(200, recent);
    if (u.pathname.startsWith('/ops/v1/requests/')) {
      if (!store) return { ok: false, status: 404, json: async () => { throw new Error('not json'); } };
      const id = decodeURIComponent(u.pathname.slice('/ops/v1/requests/'.length));
      return id === ID ? answer(200, doc) : answer(404, { error: 'unknown request' });
    }
    if (u.pathname === '/ops/health') return answer(200, { status: 'green' });
    return answer(404, null);
  };
  w.eval(js);
  await sleep(300);
  const $ = (s) => w.document.querySelector(s);
  const out = { calls, $, w };
  return out;
}

const fails = [];
const check = (cond, msg) => { if (!cond) { fails.push(msg); console.log('FAIL ' + msg); } else console.log('ok   ' + msg); };

// With a store: table, search, waterfall, lines, row link, hash.
{
  const { $, w, calls } = await run(true);
  check(!$('#console').hidden, 'console shown');
  check(!$('#console-search').hidden, 'search box shown with a store');
  const rows = w.document.querySelectorAll('#console-recent tbody tr');
  check(rows.length === 2, `two rows (${rows.length})`);
  check($('#console-recent').textContent.includes('/api/<script>x</script>') && !w.document.querySelector('#console-recent script'), 'route markup as text');
  check(w.document.querySelectorAll('#console-recent a.open-request').length === 2, 'rows link to views');
  $('#console-q').value = ID;
  $('#console-search').dispatchEvent(new w.Event('submit', { cancelable: true }));
  await sleep(200);
  check(w.location.hash === '#request=' + encodeURIComponent(ID), 'hash set: ' + w.location.hash);
  const spans = [...w.document.querySelectorAll('#rv-spans .span-row')];
  check(!$('#request-view').hidden && spans.length === 3, `view with 3 spans (${spans.length})`);
  check(spans.map((r) => r.dataset.span).join() === 's1,s2,s3', 'tree order: ' + spans.map((r) => r.dataset.span).join());
  const bar = spans[2].querySelector('.span-bar');
  check(bar.style.left === '48%' && bar.style.width === '40%', `bar placed ${bar.style.left} ${bar.style.width}`);
  check(spans[2].querySelector('.span-name').style.paddingLeft === '12px', 'child indented');
  check(!w.document.querySelector('#request-view img, #request-view i'), 'no markup from data');
  check($('#rv-logs').textContent.includes('boom <i>x</i>'), 'log line as text');
  check($('#rv-meta').textContent.includes(ID), 'meta has the ID');
  $('#rv-close').click();
  check($('#request-view').hidden && w.location.hash === '', 'closed, hash cleared');
  w.document.querySelector('#console-recent a.open-request[data-request="r2"]').click();
  await sleep(200);
  check(!$('#request-view').hidden && $('#rv-error').textContent.includes('No request r2'), 'row opens the view (unknown: message): ' + $('#rv-error').textContent);
  check(calls.every((c) => c.startsWith('/ops/') || c.startsWith('ES v1/')), 'all requests under /ops: ' + calls.join(' '));
  check(calls.some((c) => c.startsWith('/ops/v1/requests?token=t')), 'token passed to /v1/requests');
}
// Opened with #request=<id>.
{
  const { $, w } = await run(true, '#request=' + encodeURIComponent(ID));
  await sleep(200);
  check(!$('#request-view').hidden && w.document.querySelectorAll('#rv-spans .span-row').length === 3, '#request= opens the view on load');
}
// Without a store: table only.
{
  const { $, w } = await run(false);
  check(!$('#console').hidden, 'console shown without a store (the table)');
  check($('#console-search').hidden && $('#request-view').hidden, 'search box and view hidden without a store');
  check(w.document.querySelectorAll('#console-recent a.open-request').length === 0, 'no links without a store');
}
console.log(fails.length ? `${fails.length} FAILED` : 'all ok');
process.exit(fails.length ? 1 : 0);
