import type { Scenario } from './scenarios.ts'

/** What the demo page needs to know. */
export interface PageOptions {
  /** Where the API is: `''` for the same origin, or e.g. `http://127.0.0.1:3000`. */
  readonly apiBase: string
  readonly scenarios: readonly Scenario[]
  readonly framework: string
  readonly account: string
}

function escapeHtml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

function tile(s: Scenario): string {
  const expected = s.code === undefined ? String(s.status) : `${s.status} ${s.code}`
  return `<article class="tile" data-id="${s.id}" data-path="${escapeHtml(s.path)}" data-trigger="${s.trigger}" data-expected-status="${s.status}">
  <h3>${escapeHtml(s.title)}</h3>
  <a class="url" href="${escapeHtml(s.path)}" data-api-link>${escapeHtml(decodeURIComponentSafe(s.path))}</a>
  <div class="preview"><span class="pending">loading…</span></div>
  <dl class="received"></dl>
  <p class="note">${escapeHtml(s.note)} <span class="expected">Expected: ${escapeHtml(expected)}</span></p>
</article>`
}

function decodeURIComponentSafe(text: string): string {
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}

const STYLE = `
:root { --ok: #2a9d8f; --warn: #e9a23b; --bad: #d1495b; --ink: #1d2733; --muted: #5b6675; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, "DejaVu Sans", sans-serif; color: var(--ink); background: #f3f5f8; }
header { padding: 20px 28px; background: #1d2733; color: #fff; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 2px 0; color: #c9d3df; }
header code { color: #fff; }
main { padding: 16px 28px 40px; }
h2 { font-size: 16px; margin: 22px 0 10px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(270px, 1fr)); gap: 14px; }
.tile { background: #fff; border-radius: 8px; padding: 12px 14px; box-shadow: 0 1px 3px rgba(0,0,0,.08); border-top: 4px solid #ccd; display: flex; flex-direction: column; }
.tile[data-class="2"] { border-top-color: var(--ok); }
.tile[data-class="4"] { border-top-color: var(--warn); }
.tile[data-class="5"], .tile[data-class="0"] { border-top-color: var(--bad); }
.tile h3 { margin: 0 0 4px; font-size: 15px; }
.url { font: 11px/1.3 ui-monospace, "DejaVu Sans Mono", monospace; color: var(--muted); word-break: break-all; text-decoration: none; }
.preview { min-height: 64px; margin: 8px 0; display: flex; align-items: center; justify-content: center; background: repeating-conic-gradient(#f4f4f4 0 25%, #fff 0 50%) 0 0 / 16px 16px; border-radius: 4px; }
.preview img { max-width: 100%; max-height: 200px; display: block; }
.pending { color: var(--muted); font-size: 12px; }
.big { font-size: 28px; font-weight: 700; }
dl { margin: 0; display: grid; grid-template-columns: auto 1fr; gap: 2px 8px; font-size: 12px; }
dt { color: var(--muted); }
dd { margin: 0; white-space: pre-line; font-family: ui-monospace, "DejaVu Sans Mono", monospace; word-break: break-word; }
.note { color: var(--muted); font-size: 12px; margin: 8px 0 0; }
.expected { display: block; }
button { font: inherit; padding: 6px 12px; border-radius: 6px; border: 1px solid #99a; background: #fff; cursor: pointer; }
pre { font-size: 11px; background: #1d2733; color: #dfe7ef; padding: 10px; border-radius: 6px; overflow: auto; max-height: 240px; }
`

const SCRIPT = `
const api = document.body.dataset.api;
function cls(status) { return String(status)[0]; }
function row(dl, name, value) {
  if (value === null || value === undefined || value === '') return;
  const dt = document.createElement('dt'); dt.textContent = name;
  const dd = document.createElement('dd'); dd.textContent = value;
  dl.append(dt, dd);
}
async function show(tile, res, error) {
  const dl = tile.querySelector('.received');
  const preview = tile.querySelector('.preview');
  dl.textContent = '';
  if (error) {
    tile.dataset.class = '0'; tile.dataset.status = '0';
    preview.innerHTML = '<span class="big">✕</span>';
    row(dl, 'error', String(error));
    tile.dataset.done = '1';
    return;
  }
  const code = res.headers.get('x-ic-error-code');
  const raw = res.headers.get('x-ic-error-validation');
  let messages = '';
  if (raw) { try { messages = JSON.parse(raw).map((item) => item.message).join('\\n'); } catch { messages = 'unreadable: ' + raw; } }
  tile.dataset.status = String(res.status);
  tile.dataset.code = code || '';
  tile.dataset.validation = messages;
  tile.dataset.class = cls(res.status);
  row(dl, 'status', res.status + ' ' + res.statusText);
  row(dl, 'x-ic-error-code', code);
  row(dl, 'validation', messages);
  row(dl, 'retry-after', res.headers.get('retry-after'));
  row(dl, 'ratelimit', res.headers.get('ratelimit'));
  row(dl, 'x-request-id', res.headers.get('x-request-id'));
  const type = res.headers.get('content-type') || '';
  if (res.ok && type.startsWith('image/')) {
    const img = document.createElement('img');
    img.alt = tile.querySelector('h3').textContent;
    const loaded = new Promise((resolve) => { img.onload = img.onerror = resolve; });
    img.src = URL.createObjectURL(await res.blob());
    preview.replaceChildren(img);
    await loaded;
    row(dl, 'image', img.naturalWidth + '×' + img.naturalHeight + ' ' + type);
  } else {
    const body = await res.text();
    preview.innerHTML = '<span class="big"></span>';
    preview.firstChild.textContent = res.status;
    const first = body.split('\\n')[0];
    row(dl, 'body', first.length > 90 ? first.slice(0, 90) + '…' : first);
  }
  tile.dataset.done = '1';
}
async function run(tile) {
  let res;
  try { res = await fetch(api + tile.dataset.path); } catch (err) { return show(tile, null, err); }
  await show(tile, res);
  // Each load of the page spends some of the 10 unsigned charts a minute: a tile that a
  // reload ran into the limit says so and asks again once Retry-After has passed.
  const wait = Number(res.headers.get('retry-after'));
  if (res.status === 429 && tile.dataset.expectedStatus !== '429' && wait > 0) {
    row(tile.querySelector('.received'), 'note', 'earlier loads of this page used up the unsigned-chart quota; trying again in ' + wait + ' s');
    setTimeout(() => run(tile), wait * 1000 + 250);
  }
}
for (const a of document.querySelectorAll('[data-api-link]')) a.href = api + a.getAttribute('href');
for (const tile of document.querySelectorAll('.tile[data-trigger="load"]')) run(tile);

async function refreshLog() {
  const out = document.getElementById('log');
  try {
    const res = await fetch(api + '/demo/log');
    const entries = await res.json();
    out.textContent = entries.map((e) => e.time.slice(11, 23) + '  ' + e.status + '  ' + e.code + '  ' + e.method + ' ' + e.path).join('\\n') || '(no errors yet)';
  } catch (err) { out.textContent = String(err); }
}
document.getElementById('refresh-log').onclick = refreshLog;

document.getElementById('fire-rate-limit').onclick = async () => {
  const tile = document.querySelector('[data-id="rate-limit"]');
  let last;
  for (let i = 0; i < 12; i++) {
    last = await fetch(api + '/chart?cht=p&chd=t%3A1%2C' + (i + 1) + '&chs=60x60');
    if (last.status === 429) break;
  }
  await show(tile, last);
};
document.getElementById('fire-overload').onclick = async () => {
  const tile = document.querySelector('[data-id="overloaded"]');
  tile.querySelector('.received').textContent = 'blocking the server for 600 ms…';
  await fetch(api + '/demo/busy?ms=600');
  await show(tile, await fetch(api + '/image/sample.jpg?width=80'));
};
document.getElementById('fire-client-closed').onclick = async () => {
  const tile = document.querySelector('[data-id="client-closed"]');
  const controller = new AbortController();
  const pending = fetch(api + '/image/hang.jpg?width=50', { signal: controller.signal });
  setTimeout(() => controller.abort(), 300);
  const dl = tile.querySelector('.received');
  try { await pending; } catch (err) {
    for (let i = 0; i < 20; i++) {
      const entries = await (await fetch(api + '/demo/log')).json();
      const hit = entries.find((e) => e.status === 499);
      if (hit) {
        dl.textContent = '';
        row(dl, 'browser', err.name);
        row(dl, 'server log', hit.status + ' ' + hit.code);
        tile.dataset.status = '499'; tile.dataset.code = hit.code; tile.dataset.class = '4'; tile.dataset.done = '1';
        refreshLog();
        return;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
};
refreshLog();
`

/**
 * The demo page: one tile per sample and per error, each filled in by `fetch` with what the
 * browser received (status, `x-ic-error-code`, the validation messages). With `apiBase` set
 * to another origin it proves the CORS exposure of those headers.
 *
 * @example
 * const html = renderPage({ apiBase: '', scenarios: demoScenarios({ account: 'demo', secret: 'demo-secret' }), framework: 'express', account: 'demo' })
 */
export function renderPage(options: PageOptions): string {
  const images = options.scenarios.filter((s) => s.kind === 'image' && s.status === 200)
  const charts = options.scenarios.filter((s) => s.kind === 'chart' && s.status === 200)
  const errors = options.scenarios.filter((s) => s.status !== 200)
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>image-api-errors demo</title><style>${STYLE}</style></head>
<body data-api="${escapeHtml(options.apiBase)}">
<header>
  <h1>image-api-errors demo</h1>
  <p>An Imagizer-style image proxy (<code>/image/&lt;path&gt;?width=&amp;height=&amp;crop=&amp;dpr=&amp;quality=&amp;format=</code>) and an Image-Charts-compatible <code>/chart</code>, on <strong>${escapeHtml(options.framework)}</strong>.</p>
  <p>Every tile below is a <code>fetch()</code> from this page: what you see is exactly what a browser script can read, <code>x-ic-error-code</code> and <code>x-ic-error-validation</code> included. Signed charts use account <code>${escapeHtml(options.account)}</code>.</p>
</header>
<main>
<h2>Images</h2>
<section class="grid">${images.map(tile).join('\n')}</section>
<h2>Charts</h2>
<section class="grid">${charts.map(tile).join('\n')}</section>
<h2>Errors</h2>
<section class="grid">${errors.map(tile).join('\n')}
<article class="tile" data-id="rate-limit" data-trigger="button">
  <h3>Rate limited</h3>
  <span class="url">12 unsigned /chart requests in a row</span>
  <div class="preview"><button id="fire-rate-limit">Send 12 unsigned requests</button></div>
  <dl class="received"></dl>
  <p class="note">Unsigned requests get the stricter limit: 429 with Retry-After and RateLimit headers. This blocks unsigned charts from this address for a minute. <span class="expected">Expected: 429 IC_RATE_LIMITED</span></p>
</article>
<article class="tile" data-id="overloaded" data-trigger="button">
  <h3>Overloaded</h3>
  <span class="url">/demo/busy?ms=600, then /image/sample.jpg?width=80</span>
  <div class="preview"><button id="fire-overload">Block the event loop, then ask</button></div>
  <dl class="received"></dl>
  <p class="note">A CPU-heavy request delays the event loop; the load sampler sees it and the next requests are shed with 503 and a Retry-After: the minimum for one stall, growing with the pressure while the overload lasts. <span class="expected">Expected: 503 IC_OVERLOADED</span></p>
</article>
<article class="tile" data-id="client-closed" data-trigger="button">
  <h3>Client closed the request</h3>
  <span class="url">/image/hang.jpg, aborted by the page after 300 ms</span>
  <div class="preview"><button id="fire-client-closed">Send and abort</button></div>
  <dl class="received"></dl>
  <p class="note">Nothing can be sent to a client that left: the server records 499 and aborts the backend fetch. Shown from the server's error log. <span class="expected">Expected: 499 IC_CLIENT_CLOSED_REQUEST (logged)</span></p>
</article>
</section>
<h2>Server error log <button id="refresh-log">refresh</button></h2>
<pre id="log">…</pre>
</main>
<script>${SCRIPT}</script>
</body></html>`
}
