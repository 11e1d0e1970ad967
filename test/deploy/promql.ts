// A rough PromQL reader, enough to check that dashboards and rules name only metrics that exist: it finds
// metric and recording-rule names and the label names used in selectors, nothing more.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { METRIC_CATALOG } from '@pdserve/metrics';

/** Labels every series gets from the scrape (static config, kubernetes_sd relabelling or a ServiceMonitor). */
export const TARGET_LABELS: ReadonlySet<string> = new Set(['job', 'instance', 'namespace', 'pod', 'container', 'service', 'endpoint']);

const HISTOGRAM_SUFFIX = /_(bucket|sum|count)$/;
const catalog = new Map(METRIC_CATALOG.map((m) => [m.name, m]));

/** The catalog entry a series name belongs to (`x_bucket` → histogram `x`), or undefined. */
export function catalogEntry(series: string): (typeof METRIC_CATALOG)[number] | undefined {
  const exact = catalog.get(series);
  if (exact) return exact;
  const base = catalog.get(series.replace(HISTOGRAM_SUFFIX, ''));
  return base?.type === 'histogram' ? base : undefined;
}

export interface Selector {
  readonly metric: string;
  readonly labels: readonly string[];
}

export interface ExprRefs {
  /** Names starting pdserve_ (raw metric series). */
  readonly metrics: readonly string[];
  /** Names with a colon (recording rules, level:metric:operations). */
  readonly recorded: readonly string[];
  /** Each `name{label...}` selector with its label names. */
  readonly selectors: readonly Selector[];
}

export function exprRefs(expr: string): ExprRefs {
  // Template variables and ranges are not names; quoted strings hold label values, not names.
  const body = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\$\{?[a-zA-Z_]+\}?/g, '0');
  const metrics = new Set<string>();
  const recorded = new Set<string>();
  for (const m of body.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const name = m[0];
    if (name.includes(':')) recorded.add(name);
    else if (name.startsWith('pdserve_')) metrics.add(name);
  }
  const selectors: Selector[] = [];
  for (const m of body.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}/g)) {
    const labels = [...m[2]!.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map((l) => l[1]!);
    selectors.push({ metric: m[1]!, labels });
  }
  return { metrics: [...metrics], recorded: [...recorded], selectors };
}

/** Problems with one expression: unknown metrics, undefined recording rules, labels a metric never has. */
export function checkExpr(expr: string, recordingRules: ReadonlySet<string>): string[] {
  const refs = exprRefs(expr);
  const problems: string[] = [];
  for (const m of refs.metrics) if (!catalogEntry(m)) problems.push(`unknown metric ${m}`);
  for (const r of refs.recorded) if (!recordingRules.has(r)) problems.push(`undefined recording rule ${r}`);
  for (const s of refs.selectors) {
    const entry = s.metric.startsWith('pdserve_') ? catalogEntry(s.metric) : undefined;
    if (!entry) continue;
    const allowed = new Set([...entry.labelNames, ...TARGET_LABELS, ...(s.metric.endsWith('_bucket') ? ['le'] : [])]);
    for (const l of s.labels) if (!allowed.has(l)) problems.push(`${s.metric} has no label ${l}`);
  }
  return problems;
}

/** promtool from Debian's prometheus package, or undefined when it is not installed. */
export function promtoolPath(): string | undefined {
  for (const p of ['/usr/bin/promtool', '/usr/local/bin/promtool']) if (existsSync(p)) return p;
  const which = spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' });
  return which.status === 0 && which.stdout.trim() !== '' ? which.stdout.trim() : undefined;
}
