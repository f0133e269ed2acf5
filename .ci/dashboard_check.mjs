// The dashboard in a real browser (Debian's Chromium driven by playwright-core), against a
// running demo started with --traffic:
//
//   node .ci/dashboard_check.mjs http://127.0.0.1:39093 /tmp/dashboard.png
//   node .ci/dashboard_check.mjs http://127.0.0.1:39094/ops    (demo --prefix /ops)
//
// BASE_URL is where the observer's routes are: the origin, or the origin and the prefix they
// are nested under; then every request the page makes must stay under that prefix.
//
// playwright-core is resolved like require() does: from a node_modules next to this file or
// above, or from NODE_PATH (CI: npm install --no-save playwright-core@1.64 into a temp dir,
// NODE_PATH=<dir>/node_modules). CHROMIUM overrides the browser (default /usr/bin/chromium).
//
// It checks: the page loads with its CSP; the stream goes live; the live charts draw their
// series (pixels of the series' colours on the canvases); a figure changes without a reload;
// the history period switch fetches /v1/stats/history with the period's step and draws it (when
// the history is on); the route and dimension tables list what /v1/stats lists; a label value
// that is markup (<script>alert(1)</script>) shows as text, with no script element and no
// dialog; no console error, no page error, no request leaving the origin (or the prefix); the
// page has no horizontal overflow on a phone-sized screen and switches to dark colours. The
// console: the table of recent slow and failed requests lists what GET /v1/requests lists;
// when GET /v1/requests/{id} answers 200 for a request ID from that list (a log store is on
// and the page may read it), the search box finds that request and shows its span waterfall
// and log lines, a row of the table opens it, and #request=<id> opens it on load; otherwise
// the search box and the request view stay hidden. Exits 1 with the reasons on any failure;
// bounded to 60 s.
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const started = Date.now();
const [base0, screenshot] = process.argv.slice(2);
if (!base0) {
  console.error('usage: node .ci/dashboard_check.mjs BASE_URL [SCREENSHOT.png]');
  process.exit(2);
}
const base = base0.replace(/\/+$/, '');
const origin = new URL(base).origin;
// The prefix the observer's routes are nested under ('' at the root).
const prefix = new URL(base).pathname.replace(/\/+$/, '');
const PROBE = '<script>alert(1)</script>';
// The log store's token (LOGS_TOKEN): with it the page is opened as `/dashboard?logs_token=…`
// and the console must find a stored request, show its view from the search box, from a row
// of the table and from a `#request=` link; without it, the view must stay hidden.
const logsToken = process.env.LOGS_TOKEN || '';
const pageQuery = logsToken ? `?logs_token=${encodeURIComponent(logsToken)}` : '';
const withLogsToken = (url) => (logsToken ? `${url}?token=${encodeURIComponent(logsToken)}` : url);
const failures = [];
const fail = (msg) => { failures.push(msg); console.error('FAIL: ' + msg); };
const ok = (msg) => console.log(`ok   ${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s  ${msg}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let browser = null, profile = null;
function finish(code) {
  if (profile) rmSync(profile, { recursive: true, force: true });
  process.exit(code);
}
const watchdog = setTimeout(async () => {
  console.error('FAIL: the check took more than 60 s');
  try { await browser?.close(); } catch { /* exiting anyway */ }
  finish(1);
}, 60000);

let chromium;
try {
  ({ chromium } = createRequire(import.meta.url)('playwright-core'));
} catch (e) {
  console.error('FAIL: playwright-core not found (npm install --no-save playwright-core@1.64 and set NODE_PATH): ' + e.message);
  process.exit(1);
}

// What the page should show, straight from the server.
async function getJson(path) {
  const res = await fetch(base + path, { signal: AbortSignal.timeout(5000) });
  return { status: res.status, body: res.ok ? await res.json() : null };
}

// In the page: how many pixels of each series' colour a chart's canvas holds.
function drawnPixels(id) {
  const host = document.getElementById(id);
  const canvas = host && host.querySelector('canvas');
  if (!canvas || !canvas.width || !canvas.height) return null;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  const colors = host.dataset.seriesColors.split(',').map((c) => [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16)));
  const counts = colors.map(() => 0);
  let opaque = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] === 0) continue;
    opaque++;
    if (data[i + 3] < 128) continue; // the translucent fills
    colors.forEach(([r, g, b], j) => {
      if (Math.abs(data[i] - r) < 30 && Math.abs(data[i + 1] - g) < 30 && Math.abs(data[i + 2] - b) < 30) counts[j]++;
    });
  }
  return { opaque, counts, size: `${canvas.width}x${canvas.height}`, png: canvas.toDataURL().length };
}

async function waitDrawn(page, id, minPixels, what, timeout = 10000) {
  const deadline = Date.now() + timeout;
  let last = null;
  while (Date.now() < deadline) {
    last = await page.evaluate(drawnPixels, id);
    // Any series: a line drawn over another (equal values) hides it.
    if (last && Math.max(...last.counts) >= minPixels) return last;
    await sleep(250);
  }
  fail(`${what} (#${id}) drew none of its series: ${JSON.stringify(last)}`);
  return last;
}

// The console's table lists GET /v1/requests; with a log store that answers for one of those
// requests, the search box, a row and #request=<id> each open its view (waterfall and lines).
async function checkConsole(page) {
  const recent = await getJson('/v1/requests');
  if (recent.status !== 200) { fail(`GET /v1/requests answered ${recent.status}`); return; }
  const list = recent.body.requests || [];
  await page.waitForSelector('#console:not([hidden])', { timeout: 8000 })
    .catch(() => fail('the console section stayed hidden though /v1/requests answers'));
  // The slowest first: the table keeps the slowest requests of its window longest (a slower
  // one displaces the fastest kept, a failure stays only until twenty newer ones), so it is
  // still listed when the page next refreshes. The newest could be gone by then.
  const ids = [...list].sort((a, b) => (b.duration_ms || 0) - (a.duration_ms || 0))
    .map((r) => r.request_id).filter(Boolean);
  if (!ids.length) { fail('/v1/requests lists no request with an ID: is the demo driving traffic (--traffic)?'); return; }
  // With the logs token: the first of those the store answers for (each is stored within the
  // store's flush interval; a request that just ended may not be yet).
  let id = ids[0], one = null;
  for (const candidate of ids) {
    one = await fetch(withLogsToken(`${base}/v1/requests/${encodeURIComponent(candidate)}`), { signal: AbortSignal.timeout(5000) });
    id = candidate;
    if (one.status === 200 || !logsToken) break;
  }
  if (logsToken && one.status !== 200) { fail(`the log store answers none of the ${ids.length} listed requests (last: ${one.status})`); return; }
  // The table refreshes every 5 s: the ID shows within that.
  const listed = await page.waitForFunction((want) => document.querySelector('#console-recent tbody').textContent.includes(want),
    id, { timeout: 8000 }).then(() => true, () => false);
  if (!listed) fail(`the recent-requests table does not list ${id}`);
  else ok(`recent requests: ${list.length} listed (${list.filter((r) => r.failed).length} failed), ${id} shown`);

  if (one.status !== 200) {
    // No log store (or no access to it): no search box, no view, no links in the rows.
    const state = await page.evaluate(() => ({
      search: document.querySelector('#console-search').hidden,
      view: document.querySelector('#request-view').hidden,
      links: document.querySelectorAll('#console-recent a.open-request').length,
    }));
    if (!state.search || !state.view || state.links) fail(`no log store (${one.status}) but the console shows ${JSON.stringify(state)}`);
    else ok(`no log store (GET /v1/requests/{id} answered ${one.status}): search box and request view hidden`);
    return;
  }
  const doc = await one.json();
  const wantSpans = (doc.spans || []).length, wantLogs = (doc.logs || []).length;
  const viewShown = async (how, pg = page) => {
    const shown = await pg.waitForFunction(([spans, logs]) => {
      const v = document.querySelector('#request-view');
      return v && !v.hidden && document.querySelectorAll('#rv-spans .span-row').length >= Math.min(spans, 1) &&
        document.querySelectorAll('#rv-logs tr:not(:has(td.empty))').length >= Math.min(logs, 1);
    }, [wantSpans, wantLogs], { timeout: 8000 }).then(() => true, () => false);
    const got = await pg.evaluate(() => ({
      spans: document.querySelectorAll('#rv-spans .span-row').length,
      bars: Array.from(document.querySelectorAll('#rv-spans .span-bar')).filter((b) => b.getBoundingClientRect().width > 0).length,
      logs: document.querySelectorAll('#rv-logs tr:not(:has(td.empty))').length,
      meta: document.querySelector('#rv-meta').textContent,
    }));
    if (!shown || got.spans !== wantSpans || got.bars !== wantSpans || got.logs !== wantLogs || !got.meta.includes(id)) {
      fail(`${how}: the view shows ${JSON.stringify(got)}, want ${wantSpans} spans with bars and ${wantLogs} lines for ${id}`);
    } else {
      ok(`${how}: ${got.spans} spans in the waterfall, ${got.logs} log lines`);
    }
  };
  // The search box.
  if (await page.$eval('#console-search', (e) => e.hidden)) { fail('a log store answers but the search box is hidden'); return; }
  await page.fill('#console-q', id);
  await page.click('#console-search button[type="submit"]');
  await viewShown('search box');
  // A row of the table.
  await page.click('#rv-close');
  const link = await page.$(`#console-recent a.open-request[data-request="${id}"]`);
  if (!link) fail(`no link to ${id} in the recent-requests table`);
  else { await link.click(); await viewShown('table row'); }
  // A link to the view (as the alerts send), opened in a new tab.
  const tab = await page.context().newPage();
  await tab.goto(`${base}/dashboard${pageQuery}#request=${encodeURIComponent(id)}`, { waitUntil: 'load' });
  await viewShown('#request= link', tab);
  await tab.close();
}

async function main() {
  const stats = await getJson('/v1/stats');
  if (stats.status !== 200) throw new Error(`GET /v1/stats answered ${stats.status}: is the demo running at ${base}?`);
  const historyStatus = (await getJson('/v1/stats/history?step=1m')).status;
  const historyOn = historyStatus === 200;
  ok(`server up; history ${historyOn ? 'on' : `off (${historyStatus})`}`);

  profile = mkdtempSync(join(tmpdir(), 'dashboard-check-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1366, height: 900 },
    deviceScaleFactor: 1,
    colorScheme: 'light',
    timeout: 20000,
  });
  browser = context;
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(10000);

  const consoleErrors = [], pageErrors = [], dialogs = [], requests = [], foreign = [], outside = [];
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const at = m.location().url || '?';
    // A red /health answers 503 by design: the network log says so, the page handles it.
    if (at.startsWith(base + '/health') && m.text().includes('503')) return;
    // Without the history, the page's probe of /v1/stats/history answers 404, and hides it.
    if (!historyOn && at.startsWith(base + '/v1/stats/history') && m.text().includes('404')) return;
    // The console's probe of the log store asks for an unknown request: 404 by design.
    if (at.startsWith(base + '/v1/requests/') && /40[134]/.test(m.text())) return;
    consoleErrors.push(`${m.text()} (${at})`);
  });
  page.on('pageerror', (e) => pageErrors.push(String(e && e.stack || e)));
  page.on('dialog', async (d) => { dialogs.push(`${d.type()}: ${d.message()}`); await d.dismiss().catch(() => {}); });
  context.on('request', (r) => {
    const url = r.url();
    requests.push(url);
    if (/^(data|blob|about):/.test(url)) return;
    if (new URL(url).origin !== origin) foreign.push(url);
    else if (prefix && !new URL(url).pathname.startsWith(prefix + '/')) outside.push(url);
  });

  // 1. The page, with its CSP, and the stream going live.
  const res = await page.goto(base + '/dashboard' + pageQuery, { waitUntil: 'load' });
  if (!res || res.status() !== 200) throw new Error(`GET /dashboard answered ${res && res.status()}`);
  const csp = res.headers()['content-security-policy'] || '';
  if (!/script-src 'self'/.test(csp)) fail(`/dashboard has no strict CSP (got ${JSON.stringify(csp)})`);
  await page.waitForSelector('#status[data-state="live"]', { timeout: 10000 })
    .then(() => ok('stream live'), () => fail('the status line never said "live"'));

  // 2. The live charts draw (two points make a line: a few seconds).
  const rate = await waitDrawn(page, 'c-rate', 20, 'live request-rate chart');
  const lat = await waitDrawn(page, 'c-latency', 20, 'live latency chart');
  const err = await page.evaluate(drawnPixels, 'c-errors');
  if (!err || err.opaque < 100) fail(`live errors chart is empty: ${JSON.stringify(err)}`);
  ok(`live charts drawn (rate ${rate?.counts}, latency ${lat?.counts} series pixels; canvas ${rate?.size})`);

  // 3. The figures move without a reload.
  const tile = '[data-tile="requests"] .v';
  const before = await page.textContent(tile);
  const canvasBefore = await page.evaluate(() => document.querySelector('#c-rate canvas').toDataURL());
  await sleep(4000);
  const after = await page.textContent(tile);
  const canvasAfter = await page.evaluate(() => document.querySelector('#c-rate canvas').toDataURL());
  const n = (t) => Number(String(t).replace(/[^0-9.]/g, ''));
  if (!(n(after) > n(before))) fail(`total requests did not grow in 4 s: ${before} -> ${after}`);
  else ok(`total requests ${before} -> ${after} in 4 s`);
  if (canvasAfter === canvasBefore) fail('the live rate chart did not change in 4 s');

  // 4. History: a period switch asks for the period's step and draws it.
  const historyHidden = await page.$eval('#history', (e) => e.hidden);
  if (historyOn) {
    if (historyHidden) fail('history is on but its section is hidden');
    for (const [period, step] of [['24h', '5m'], ['1h', '1m']]) {
      const wait = page.waitForResponse((r) => r.url().includes('/v1/stats/history?') &&
        new URL(r.url()).searchParams.get('step') === step, { timeout: 8000 });
      await page.click(`#history button[data-period="${period}"]`);
      const r = await wait.catch(() => null);
      if (!r) { fail(`clicking ${period} made no history request with step=${step}`); continue; }
      if (r.status() !== 200) fail(`history request for ${period} answered ${r.status()}`);
      const pressed = await page.getAttribute(`#history button[data-period="${period}"]`, 'aria-pressed');
      if (pressed !== 'true') fail(`the ${period} button is not shown as selected`);
      ok(`period ${period}: ${new URL(r.url()).search}`);
    }
    const h = await waitDrawn(page, 'h-rate', 6, 'history request-rate chart');
    const hl = await waitDrawn(page, 'h-latency', 6, 'history latency chart');
    ok(`history charts drawn (rate ${h?.counts}, latency ${hl?.counts} series pixels)`);
  } else if (!historyHidden) {
    fail(`history is off (${historyStatus}) but its section is shown`);
  } else {
    ok('history off: section hidden');
  }

  // 5. The tables list what /v1/stats lists.
  const now = (await getJson('/v1/stats')).body;
  const routeText = await page.textContent('#routes tbody');
  const routes = (now.routes || []).map((r) => r.route);
  const missingRoutes = routes.filter((r) => !routeText.includes(r));
  if (!routes.length) fail('/v1/stats lists no routes: is the demo driving traffic (--traffic)?');
  if (missingRoutes.length) fail(`route table lacks ${missingRoutes.join(', ')}`);
  else ok(`route table lists ${routes.length} routes (${routes.slice(0, 3).join(', ')}, …)`);
  const keys = Object.keys(now.dimensions || {});
  for (const key of keys) {
    const text = await page.$$eval('#dims [data-dimension]', (cards, k) =>
      cards.filter((c) => c.dataset.dimension === k).map((c) => c.textContent).join(''), key);
    const values = Object.keys(now.dimensions[key]);
    const lacking = values.filter((v) => !text.includes(v));
    if (!text) fail(`no table for dimension ${key}`);
    else if (lacking.length) fail(`dimension ${key} table lacks ${lacking.join(', ')}`);
  }
  ok(`dimension tables: ${keys.join(', ') || '(none configured)'}`);

  // 6. Markup in a label value is text.
  const probeServed = JSON.stringify(now).includes(PROBE);
  if (!probeServed) fail(`no route or dimension value ${PROBE} in /v1/stats: the demo's probe request is missing`);
  const xss = await page.evaluate((probe) => ({
    asText: document.body.textContent.includes(probe),
    scripts: Array.from(document.querySelectorAll('script')).filter((s) => s.textContent.includes('alert(') || !s.src).length,
    scriptElements: document.querySelectorAll('script').length,
  }), PROBE);
  if (probeServed && !xss.asText) fail(`${PROBE} is in /v1/stats but not in the page's text`);
  if (xss.scripts) fail(`${xss.scripts} inline or injected <script> element(s) in the page`);
  if (xss.asText) ok(`${PROBE} shown as text (${xss.scriptElements} script elements, all external)`);

  // 7. Sections that the document has are shown.
  if (now.process && await page.$eval('#process', (e) => e.hidden)) fail('process section hidden though /v1/stats has it');
  if (now.alerts && await page.$eval('#alerts', (e) => e.hidden)) fail('alerts section hidden though /v1/stats has it');
  const health = await page.getAttribute('#health', 'data-state');
  if (!['green', 'yellow', 'red'].includes(health)) fail(`health pill says ${health}`);
  ok(`process, alerts and health (${health}) shown`);

  // 7b. The console: recent slow and failed requests, and (with a log store) a request's view.
  await checkConsole(page);

  // 8. Screenshot (light, desktop).
  if (screenshot) {
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: screenshot, fullPage: true });
    ok(`screenshot ${screenshot}`);
  }

  // 9. Sorting: by route name, rows in order.
  await page.click('#routes th:nth-child(1) button');
  const sortState = await page.getAttribute('#routes th:nth-child(1)', 'aria-sort');
  const names = await page.$$eval('#routes tbody tr td:first-child', (tds) => tds.map((td) => td.querySelector('span').lastChild.textContent));
  const inOrder = names.every((x, i) => i === 0 || names[i - 1].localeCompare(x) * (sortState === 'descending' ? -1 : 1) <= 0);
  if (sortState === 'none' || !inOrder || names.length < routes.length) fail(`route table does not sort by route (${sortState}): ${names.join(', ')}`);
  else ok(`routes sort by name (${sortState})`);

  // 10. Dark colours, and a phone-sized screen without horizontal scrolling of the page.
  const lightBg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  await page.emulateMedia({ colorScheme: 'dark' });
  const darkBg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  if (lightBg === darkBg) fail(`no dark colours (body background ${darkBg})`);
  await page.setViewportSize({ width: 390, height: 844 });
  await sleep(600);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  if (overflow > 1) fail(`the page overflows a 390 px screen by ${overflow} px`);
  const phone = await page.evaluate(() => document.querySelector('#c-rate canvas').width);
  ok(`dark (${darkBg}); phone: no overflow, chart ${phone} px wide`);
  await sleep(1200); // a couple more events after the re-layout

  // 11. No script was served with eval or innerHTML; nothing went wrong; nothing left the origin.
  const app = await (await fetch(base + '/dashboard/assets/app.js')).text();
  for (const bad of ['innerHTML', 'outerHTML', 'insertAdjacentHTML', 'eval(', 'new Function', 'document.write']) {
    if (app.includes(bad)) fail(`app.js uses ${bad}`);
  }
  if (dialogs.length) fail(`dialogs opened: ${dialogs.join(' | ')}`);
  const counted = (list) => [...new Set(list)].map((m) => { const n = list.filter((x) => x === m).length; return n > 1 ? `${m} (x${n})` : m; });
  if (consoleErrors.length) fail(`console errors:\n  ${counted(consoleErrors).join('\n  ')}`);
  if (pageErrors.length) fail(`page errors:\n  ${pageErrors.join('\n  ')}`);
  if (foreign.length) fail(`requests left ${origin}:\n  ${foreign.join('\n  ')}`);
  if (outside.length) fail(`requests outside the prefix ${prefix}:\n  ${[...new Set(outside)].join('\n  ')}`);
  const paths = [...new Set(requests.map((u) => { try { return new URL(u).pathname; } catch { return u; } }))];
  ok(`${requests.length} requests, all to ${origin}: ${paths.join(' ')}`);
  await context.close();
  browser = null;
}

try {
  await main();
} catch (e) {
  fail(e && e.stack || String(e));
  try { await browser?.close(); } catch { /* exiting anyway */ }
}
clearTimeout(watchdog);
const secs = ((Date.now() - started) / 1000).toFixed(1);
if (failures.length) {
  console.error(`\ndashboard check FAILED in ${secs} s (${failures.length} problem(s))`);
  finish(1);
}
console.log(`\ndashboard check passed in ${secs} s`);
finish(0);
