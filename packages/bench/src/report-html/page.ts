// A ReportPage as one self-contained HTML file: uPlot (MIT, pinned in package.json), its stylesheet, the
// page's data and the script that draws it are all inlined, and a Content-Security-Policy forbids every
// fetch, so the file opens offline and cannot reach the network even if something tried.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { ReportPage } from './spec';

let uplot: { readonly js: string; readonly css: string } | undefined;

/** uPlot's minified build and stylesheet, read once from the installed package. */
function uplotAssets(): { readonly js: string; readonly css: string } {
  if (uplot === undefined) {
    const require = createRequire(import.meta.url);
    const dist = (file: string): string => readFileSync(require.resolve(`uplot/dist/${file}`), 'utf8');
    uplot = { js: dist('uPlot.iife.min.js'), css: dist('uPlot.min.css') };
  }
  return uplot;
}

/** JSON that is safe inside a <script> element: no '<' (so no '</script>' or '<!--'), no line separators. */
export function jsonForScript(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

/** Inlined text must not close its own element. */
function inline(text: string, tag: 'script' | 'style'): string {
  return text.replace(new RegExp(`</${tag}`, 'gi'), `<\\/${tag}`);
}

export function renderReportPage(page: ReportPage): string {
  const { js, css } = uplotAssets();
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<title>pdserve report</title>
<style>${inline(css, 'style')}</style>
<style>${PAGE_CSS}</style>
</head>
<body>
<main id="report"><noscript>This report draws its tables and charts with JavaScript; the numbers are also in the JSON written beside it.</noscript></main>
<script type="application/json" id="report-data">${jsonForScript(page)}</script>
<script>${inline(js, 'script')}</script>
<script>${inline(CLIENT_JS, 'script')}</script>
</body>
</html>
`;
}

const PAGE_CSS = `
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2937; margin: 0; background: #f8fafc; }
main { max-width: 1180px; margin: 0 auto; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 8px; }
h2 { font-size: 16px; margin: 0 0 4px; }
p.meta { margin: 2px 0; color: #475569; font-size: 13px; }
p.note { margin: 0 0 8px; color: #64748b; font-size: 12px; }
section { background: #fff; border: 1px solid #e2e8f0; border-radius: 6px; padding: 16px; margin: 16px 0; }
table.summary { border-collapse: collapse; font-size: 13px; width: 100%; }
table.summary th, table.summary td { border-bottom: 1px solid #e2e8f0; padding: 4px 8px; text-align: right; white-space: nowrap; }
table.summary th:first-child, table.summary td:first-child { text-align: left; white-space: normal; }
table.summary th { background: #f1f5f9; font-weight: 600; }
.table-wrap { overflow-x: auto; }
.chart { width: 100%; }
`;

/** Draws the page from its JSON; text goes in through textContent only, never as markup. */
const CLIENT_JS = `(function () {
  'use strict';
  var page = JSON.parse(document.getElementById('report-data').textContent);
  var PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#4b5563', '#ca8a04', '#db2777', '#65a30d'];
  var main = document.getElementById('report');
  main.textContent = '';
  document.title = page.title;
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function fmt(v) {
    if (v === null || v === undefined) return '—';
    var a = Math.abs(v);
    return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
  }
  // Breaks a label into lines of about n characters, at spaces or after hyphens ('session-' / 'affinity').
  function wrap(s, n) {
    var out = [];
    var line = '';
    s.split(' ').forEach(function (word) {
      word.split(/(?<=-)/).forEach(function (piece, j) {
        var sep = line === '' || j > 0 ? '' : ' ';
        if (line !== '' && (line + sep + piece).length > n) { out.push(line); line = piece; } else { line = line + sep + piece; }
      });
    });
    if (line) out.push(line);
    return out.join('\\n');
  }
  main.appendChild(el('h1', page.title));
  page.meta.forEach(function (line) { main.appendChild(el('p', line, 'meta')); });
  page.tables.forEach(function (t) {
    var sec = el('section');
    sec.appendChild(el('h2', t.title));
    var wrap = el('div', null, 'table-wrap');
    var table = el('table', null, 'summary');
    var head = table.createTHead().insertRow();
    t.columns.forEach(function (c) { head.appendChild(el('th', c)); });
    var body = table.createTBody();
    t.rows.forEach(function (r) {
      var tr = body.insertRow();
      r.forEach(function (v) { tr.appendChild(el('td', v)); });
    });
    wrap.appendChild(table);
    sec.appendChild(wrap);
    main.appendChild(sec);
  });
  var plots = [];
  page.charts.forEach(function (c, ci) {
    var sec = el('section');
    sec.appendChild(el('h2', c.title));
    sec.appendChild(el('p', c.note, 'note'));
    var box = el('div', null, 'chart');
    box.id = 'chart-' + ci;
    sec.appendChild(box);
    main.appendChild(sec);
    var bars = c.kind === 'bars';
    var n = c.series.length;
    var cats = c.x.categories || [];
    var series = [{ label: c.x.label, value: function (u, v) { return bars ? (cats[v] === undefined ? '—' : cats[v]) : fmt(v); } }];
    c.series.forEach(function (s, i) {
      var color = PALETTE[i % PALETTE.length];
      var opts = { label: s.label, stroke: color, width: bars ? 1 : 2, spanGaps: false, points: { show: false }, value: function (u, v) { return fmt(v); } };
      if (bars) {
        opts.fill = color + 'b3';
        opts.paths = uPlot.paths.bars({ size: n > 1 ? [0.8 / n, 90] : [0.6, 120], align: n > 1 ? (i === 0 ? -1 : 1) : 0 });
      }
      series.push(opts);
    });
    var xAxis = { label: c.x.label, stroke: '#475569' };
    var width = Math.max(320, box.clientWidth);
    if (bars) {
      // Category names wrap onto lines that fit under their bars (uPlot draws a newline as a line break).
      var perLine = Math.max(8, Math.floor((width - 80) / Math.max(1, cats.length) / 7));
      var wrapped = cats.map(function (s) { return wrap(s, perLine); });
      var lines = wrapped.reduce(function (m, s) { return Math.max(m, s.split('\\n').length); }, 1);
      xAxis.splits = function () { return c.x.values; };
      xAxis.values = function (u, splits) { return splits.map(function (i) { return wrapped[i] === undefined ? '' : wrapped[i]; }); };
      xAxis.grid = { show: false };
      xAxis.size = 40 + lines * 16;
    }
    var ymax = 0;
    c.series.forEach(function (s) { s.values.forEach(function (v) { if (v !== null && v > ymax) ymax = v; }); });
    var y = c.y.log
      ? { distr: 3, log: 10 }
      : { range: function (u, min, max) { return c.y.label === '%' ? [0, Math.min(100, Math.max(10, Math.ceil(ymax * 1.2 / 10) * 10))] : [0, max > 0 ? max * 1.05 : 1]; } };
    var values = c.series.map(function (s) {
      return c.y.log ? s.values.map(function (v) { return v !== null && v > 0 ? v : null; }) : s.values;
    });
    var opts = {
      width: width,
      height: 320,
      series: series,
      scales: {
        x: bars ? { time: false, range: function () { return [-0.5, c.x.values.length - 0.5]; } } : { time: false },
        y: y,
      },
      axes: [xAxis, { label: c.y.label, stroke: '#475569', size: 60, values: function (u, splits) { return splits.map(function (v) { return v === null ? '' : fmt(v); }); } }],
      legend: { live: !bars },
      cursor: { drag: { x: !bars, y: false } },
    };
    plots.push({ plot: new uPlot(opts, [c.x.values].concat(values), box), box: box });
  });
  window.addEventListener('resize', function () {
    plots.forEach(function (p) { p.plot.setSize({ width: Math.max(320, p.box.clientWidth), height: 320 }); });
  });
})();
`;
