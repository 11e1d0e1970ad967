// /status and /status.json on the gateway's admin port. The page is a constant: a script fetches
// status.json, draws it with textContent only (a worker's address or incarnation is text, never markup),
// and fetches it again every few seconds. A Content-Security-Policy admits that script alone and
// connections to this origin only.
import { createHash } from 'node:crypto';
import type { AdminReply } from '@pdserve/metrics';
import { collectStatus, type ClusterStatus, type StatusProbes, type StatusSource } from './status';

/** How often the page fetches status.json again, ms (?refresh=SECONDS overrides it, 1–3600). */
export const STATUS_REFRESH_MS = 2_000;

export interface StatusRoutes {
  /** For the admin server: /status (HTML) and /status.json. */
  readonly routes: ReadonlyMap<string, () => Promise<AdminReply>>;
  /** The current status (concurrent callers share one collection). */
  current(): Promise<ClusterStatus>;
  close(): void;
}

export function statusRoutes(source: StatusSource, probes: StatusProbes): StatusRoutes {
  let inFlight: Promise<ClusterStatus> | undefined;
  const current = (): Promise<ClusterStatus> => {
    inFlight ??= collectStatus(source, probes).finally(() => (inFlight = undefined));
    return inFlight;
  };
  const json = async (): Promise<AdminReply> => {
    try {
      return { status: 200, contentType: 'application/json', body: JSON.stringify(await current()), headers: SECURITY_HEADERS };
    } catch (err) {
      // The registry itself cannot be read (e.g. Redis is down): say so, the page shows it and retries.
      const message = `cannot read the cluster's state: ${err instanceof Error ? err.message : String(err)}`;
      return {
        status: 503,
        contentType: 'application/json',
        body: JSON.stringify({ error: { message, type: 'unavailable', code: 'status_unavailable' } }),
        headers: SECURITY_HEADERS,
      };
    }
  };
  const page = (): Promise<AdminReply> =>
    Promise.resolve({
      status: 200,
      contentType: 'text/html; charset=utf-8',
      body: STATUS_HTML,
      headers: { ...SECURITY_HEADERS, 'content-security-policy': STATUS_CSP },
    });
  return {
    routes: new Map([
      ['/status', page],
      ['/status.json', json],
    ]),
    current,
    close: () => probes.close(),
  };
}

const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

const STATUS_CSS = `
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2937; margin: 0; background: #f8fafc; }
main { max-width: 1440px; margin: 0 auto; padding: 20px 24px; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 15px; margin: 20px 0 6px; }
.meta { color: #475569; font-size: 13px; }
.banner { margin: 10px 0; padding: 8px 12px; border-radius: 6px; background: #fef2f2; color: #991b1b; border: 1px solid #fecaca; }
.banner[hidden] { display: none; }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid #e2e8f0; font-size: 13px; }
th, td { padding: 5px 8px; border-bottom: 1px solid #e2e8f0; text-align: right; white-space: nowrap; }
th { background: #f1f5f9; font-weight: 600; }
td.text, th.text { text-align: left; }
td.mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; text-align: left; }
td.empty { text-align: center; color: #64748b; padding: 14px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
.serving { background: #dcfce7; color: #166534; }
.draining { background: #fef9c3; color: #854d0e; }
.unreachable { background: #fee2e2; color: #991b1b; }
.ready { background: #dcfce7; color: #166534; }
.not-ready { background: #fee2e2; color: #991b1b; }
.muted { color: #94a3b8; }
.bar { display: inline-block; vertical-align: middle; width: 90px; height: 8px; background: #e2e8f0; border-radius: 4px; margin-right: 6px; overflow: hidden; }
.bar > span { display: block; height: 100%; background: #2563eb; }
.bar.hot > span { background: #dc2626; }
`;

/** Draws /status.json into the page and refreshes it; never assigns markup built from data. */
const STATUS_JS = `(function () {
  'use strict';
  var params = new URLSearchParams(location.search);
  var refreshSec = Number(params.get('refresh'));
  var every = refreshSec >= 1 && refreshSec <= 3600 ? refreshSec * 1000 : ${STATUS_REFRESH_MS};
  var lastOk = null;
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function pct(x) { return x === null || x === undefined ? '—' : (x * 100).toFixed(1) + '%'; }
  function num(x) { return x === null || x === undefined ? '—' : String(x); }
  function bytes(n) {
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(n) : n.toFixed(1)) + ' ' + units[i];
  }
  function age(ms) { return ms === null ? '—' : ms < 1000 ? ms + ' ms' : (ms / 1000).toFixed(1) + ' s'; }
  function badge(text, cls) { return el('span', text, 'badge ' + cls); }
  function bar(fraction, label) {
    var td = el('td');
    if (fraction === null || fraction === undefined) { td.textContent = '—'; return td; }
    var b = el('span', null, 'bar' + (fraction > 0.9 ? ' hot' : ''));
    var fill = el('span');
    fill.style.width = Math.max(0, Math.min(100, fraction * 100)).toFixed(1) + '%';
    b.appendChild(fill);
    td.appendChild(b);
    td.appendChild(document.createTextNode(label));
    return td;
  }
  function cell(tr, content, cls) {
    var td = content instanceof Node ? (content.tagName === 'TD' ? content : wrap(content)) : el('td', content);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  function wrap(node) { var td = el('td'); td.appendChild(node); return td; }
  function table(id, columns, rows, empty) {
    var t = document.getElementById(id);
    t.textContent = '';
    var head = t.createTHead().insertRow();
    columns.forEach(function (c) { head.appendChild(el('th', c[0], c[1] ? 'text' : '')); });
    var body = t.createTBody();
    if (rows.length === 0) {
      var td = el('td', empty, 'empty');
      td.colSpan = columns.length;
      body.insertRow().appendChild(td);
    }
    rows.forEach(function (fill) { fill(body.insertRow()); });
  }
  function draw(s) {
    document.getElementById('model').textContent = s.model;
    var ready = document.getElementById('ready');
    ready.textContent = s.gateway.ready ? 'ready' : 'not ready';
    ready.className = 'badge ' + (s.gateway.ready ? 'ready' : 'not-ready');
    var r = s.gateway.routing;
    document.getElementById('routing').textContent =
      r.decisions + ' routing decisions, router prefix hit rate ' + pct(r.prefixHitRate) + (r.noCandidate ? ', ' + r.noCandidate + ' refused (no decode worker)' : '');
    document.getElementById('updated').textContent = new Date(s.generatedAt).toLocaleTimeString();
    document.getElementById('worker-count').textContent = String(s.workers.length);
    document.getElementById('store-count').textContent = String(s.kvStores.length);
    table('workers', [['worker', 1], ['role', 1], ['address', 1], ['health', 1], ['routed', 1], ['running'], ['waiting'], ['KV used', 1], ['cached blocks'], ['prefix hit rate'], ['load report'], ['picks (decode / prefill)']],
      s.workers.map(function (w) {
        return function (tr) {
          tr.className = 'worker';
          tr.dataset.worker = w.id;
          cell(tr, w.id, 'text');
          cell(tr, w.role, 'text');
          cell(tr, w.address, 'mono');
          var h = cell(tr, badge(w.health, w.health), 'text');
          if (w.error) h.title = w.error;
          cell(tr, w.routed ? 'yes' : 'no', 'text' + (w.routed ? '' : ' muted'));
          cell(tr, num(w.running));
          cell(tr, num(w.waiting));
          cell(tr, bar(w.kv && w.kv.usage, w.kv ? ' ' + w.kv.usedBlocks + ' / ' + w.kv.totalBlocks + ' blocks' : ''), 'text');
          cell(tr, w.kv ? String(w.kv.cachedBlocks) : '—');
          cell(tr, w.prefixCache ? pct(w.prefixCache.hitRate) + ' of ' + w.prefixCache.queryTokens + ' tokens' : '—');
          cell(tr, age(w.loadReportAgeMs));
          cell(tr, w.picks.decode + ' / ' + w.picks.prefill);
        };
      }), 'No workers of this model are registered.');
    var storeRows = [];
    s.kvStores.forEach(function (n) {
      var tiers = n.tiers.length > 0 ? n.tiers : [null];
      tiers.forEach(function (t, i) {
        storeRows.push(function (tr) {
          tr.className = 'store';
          tr.dataset.store = n.id;
          cell(tr, i === 0 ? n.id : '', 'text');
          cell(tr, i === 0 ? n.address : '', 'mono');
          var h = cell(tr, i === 0 ? badge(n.health, n.health) : '', 'text');
          if (n.error) h.title = n.error;
          cell(tr, t ? t.tier : '—', 'text');
          cell(tr, t ? String(t.blocks) : '—');
          cell(tr, bar(t && t.usage, t ? ' ' + bytes(t.usedBytes) + ' / ' + bytes(t.capacityBytes) : ''), 'text');
          cell(tr, t ? pct(t.hitRate) + ' of ' + (t.hits + t.misses) : '—');
          cell(tr, t ? String(t.evictions) : '—');
          cell(tr, i === 0 ? num(n.activeLeases) + ' / ' + num(n.activePins) : '');
        });
      });
    });
    table('stores', [['node', 1], ['address', 1], ['health', 1], ['tier', 1], ['blocks'], ['used', 1], ['hit rate'], ['evictions'], ['leases / pins']], storeRows, 'No kv-store nodes.');
  }
  function problem(text) {
    var b = document.getElementById('problem');
    b.textContent = text;
    b.hidden = text === null;
  }
  function refresh() {
    fetch('status.json', { cache: 'no-store' })
      .then(function (res) {
        return res.json().then(function (body) {
          if (!res.ok) throw new Error(body && body.error ? body.error.message : 'HTTP ' + res.status);
          return body;
        });
      })
      .then(function (s) { lastOk = Date.now(); draw(s); problem(null); document.body.dataset.loaded = 'true'; })
      .catch(function (e) {
        problem('Cannot reach the gateway: ' + e.message + (lastOk ? ' (showing what it said at ' + new Date(lastOk).toLocaleTimeString() + ')' : '') + '; retrying.');
      })
      .finally(function () { setTimeout(refresh, every); });
  }
  refresh();
})();
`;

const STATUS_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pdserve status</title>
<style>${STATUS_CSS}</style>
</head>
<body>
<main>
<h1>pdserve <span id="model"></span> <span id="ready" class="badge"></span></h1>
<div class="meta"><span id="routing">loading…</span> · updated <span id="updated">—</span> · data: <a href="status.json">status.json</a></div>
<div id="problem" class="banner" hidden></div>
<h2>Workers (<span id="worker-count">0</span>)</h2>
<table id="workers"></table>
<h2>kv-store nodes (<span id="store-count">0</span>)</h2>
<table id="stores"></table>
<noscript>This page draws with JavaScript; the same data is at status.json.</noscript>
</main>
<script>${STATUS_JS}</script>
</body>
</html>
`;

const sha256 = (text: string): string => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;

/** Only this page's own script and style run; it may fetch from its own origin and nothing else. */
const STATUS_CSP = [
  "default-src 'none'",
  `script-src ${sha256(STATUS_JS)}`,
  `style-src ${sha256(STATUS_CSS)}`,
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');
