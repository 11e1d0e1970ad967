// Dashboards and Prometheus rules against the metrics the services actually export.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { METRIC_CATALOG } from '@pdserve/metrics';
import { renderDashboards } from '../../deploy/grafana/dashboards';
import { catalogEntry, checkExpr, exprRefs, promtoolPath } from './promql';

const ROOT = join(import.meta.dirname, '..', '..');
const GRAFANA = join(ROOT, 'deploy', 'grafana');
const CHART_DASHBOARDS = join(ROOT, 'helm', 'pdserve', 'dashboards');
const PROM = join(ROOT, 'deploy', 'prometheus');
const RULES = join(PROM, 'rules');
const CHART_RULES = join(ROOT, 'helm', 'pdserve', 'rules');

const promtool = promtoolPath();
/** Suffix of every promtool-backed test's title: says why it was skipped. */
const NEEDS_PROMTOOL = promtool ? '' : ' [skipped: promtool not installed; apt-get install prometheus]';

interface Rule {
  readonly record?: string;
  readonly alert?: string;
  readonly expr: string;
}
interface RuleFile {
  readonly groups: readonly { readonly name: string; readonly rules: readonly Rule[] }[];
}
interface Target {
  readonly expr: string;
  readonly refId: string;
  readonly datasource: { readonly uid: string };
}
interface Panel {
  readonly id: number;
  readonly type: string;
  readonly title: string;
  readonly targets?: readonly Target[];
  readonly panels?: readonly Panel[];
  readonly datasource?: { readonly uid: string };
}
interface Dashboard {
  readonly uid: string;
  readonly title: string;
  readonly schemaVersion: number;
  readonly panels: readonly Panel[];
  readonly templating: { readonly list: readonly { readonly name: string; readonly type: string; readonly query: unknown }[] };
}

const ruleFile = (name: string): RuleFile => parseYaml(readFileSync(join(RULES, name), 'utf8')) as RuleFile;
const rules = (f: RuleFile): Rule[] => f.groups.flatMap((g) => g.rules);
const recording = rules(ruleFile('recording.yml'));
const alerts = rules(ruleFile('alerts.yml'));
const RECORDED = new Set(recording.map((r) => r.record!));

const dashboardFiles = readdirSync(GRAFANA)
  .filter((f) => f.endsWith('.json'))
  .sort();
const dashboards = dashboardFiles.map((f) => ({ file: f, json: JSON.parse(readFileSync(join(GRAFANA, f), 'utf8')) as Dashboard }));
const allPanels = (d: Dashboard): Panel[] => d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const queries = dashboards.flatMap((d) =>
  allPanels(d.json).flatMap((p) => (p.targets ?? []).map((t) => ({ where: `${d.file} "${p.title}" ${t.refId}`, expr: t.expr }))),
);

const tmp = mkdtempSync(join(tmpdir(), 'pdserve-deploy-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function promtoolRun(args: readonly string[], cwd: string): { status: number | null; out: string } {
  const r = spawnSync(promtool!, args, { cwd, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}\n${r.stderr}` };
}

describe('the PromQL reference checker', () => {
  it('flags unknown metrics, undefined recording rules and foreign labels', () => {
    const rec = new Set(['job:pdserve_requests:rate5m']);
    expect(checkExpr('sum(rate(pdserve_requests_total{status=~"5..", job="pdserve-gateway"}[5m]))', rec)).toEqual([]);
    expect(
      checkExpr('histogram_quantile(0.9, sum by (le) (rate(pdserve_time_to_first_token_seconds_bucket[$__rate_interval])))', rec),
    ).toEqual([]);
    expect(checkExpr('job:pdserve_requests:rate5m > 1', rec)).toEqual([]);
    expect(checkExpr('rate(pdserve_request_total[5m])', rec)).toEqual(['unknown metric pdserve_request_total']);
    expect(checkExpr('rate(pdserve_requests_total_bucket[5m])', rec)).toEqual(['unknown metric pdserve_requests_total_bucket']);
    expect(checkExpr('job:pdserve_errors:rate5m', rec)).toEqual(['undefined recording rule job:pdserve_errors:rate5m']);
    expect(checkExpr('pdserve_kv_transfer_bytes_total{peer="decode"}', rec)).toEqual(['pdserve_kv_transfer_bytes_total has no label peer']);
    expect(checkExpr('pdserve_kvstore_bytes{tier="pdserve_x_total"}', rec)).toEqual([]);
  });
});

describe('prometheus rules', () => {
  it.skipIf(!promtool)(`pass promtool check rules${NEEDS_PROMTOOL}`, () => {
    const r = promtoolRun(['check', 'rules', 'recording.yml', 'alerts.yml'], RULES);
    expect(r.out).toContain('SUCCESS');
    expect(r.status, r.out).toBe(0);
  });

  it.skipIf(!promtool)(`pass their promtool unit tests${NEEDS_PROMTOOL}`, () => {
    const r = promtoolRun(['test', 'rules', 'tests.yml'], RULES);
    expect(r.status, r.out).toBe(0);
  });

  it.skipIf(!promtool)(`load from the example prometheus.yml${NEEDS_PROMTOOL}`, () => {
    const r = promtoolRun(['check', 'config', 'prometheus.yml'], PROM);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toContain('SUCCESS: 2 rule files found');
  });

  it('ship a kubernetes_sd example that is valid YAML once uncommented', () => {
    const text = readFileSync(join(PROM, 'prometheus.yml'), 'utf8');
    const block = /# --- kubernetes example ---\n([\s\S]*?)# --- end kubernetes example ---/.exec(text)?.[1];
    expect(block).toBeDefined();
    const code = block!
      .split('\n')
      .filter((l) => l.startsWith('#  '))
      .map((l) => l.slice(1))
      .join('\n');
    const jobs = parseYaml(code) as {
      job_name: string;
      kubernetes_sd_configs: unknown[];
      relabel_configs: { target_label?: string; replacement?: string }[];
    }[];
    expect(jobs[0]!.job_name).toBe('pdserve');
    expect(jobs[0]!.kubernetes_sd_configs).toEqual([{ role: 'pod' }]);
    expect(jobs[0]!.relabel_configs).toContainEqual(expect.objectContaining({ target_label: 'job', replacement: 'pdserve-$1' }));
  });

  it('give every alert a test where it fires and one where it stays quiet', () => {
    interface AlertTest {
      readonly alertname: string;
      readonly exp_alerts?: readonly unknown[];
    }
    const tests = (parseYaml(readFileSync(join(RULES, 'tests.yml'), 'utf8')) as { tests: { alert_rule_test?: AlertTest[] }[] }).tests;
    const cases = tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const a of alerts) {
      const mine = cases.filter((c) => c.alertname === a.alert);
      expect(
        mine.some((c) => (c.exp_alerts ?? []).length > 0),
        `${a.alert} fires somewhere`,
      ).toBe(true);
      expect(
        mine.some((c) => (c.exp_alerts ?? []).length === 0),
        `${a.alert} stays quiet somewhere`,
      ).toBe(true);
    }
  });

  it('name only exported metrics and defined recording rules', () => {
    for (const r of [...recording, ...alerts]) expect(checkExpr(r.expr, RECORDED), r.record ?? r.alert).toEqual([]);
    for (const r of recording) expect(r.record).toMatch(/^[a-z]+:pdserve_[a-z0-9_]+:[a-z0-9_]+$/);
  });

  it('cover the alerts the cluster needs', () => {
    expect(alerts.map((a) => a.alert)).toEqual(
      expect.arrayContaining([
        'PdserveHighTimeToFirstToken',
        'PdserveHighErrorRate',
        'PdserveNoHealthyDecodeWorkers',
        'PdserveKvPoolExhausted',
        'PdserveKvStoreNearCapacity',
      ]),
    );
  });

  it('link every alert to its section of docs/runbooks.md', () => {
    const runbooks = readFileSync(join(ROOT, 'docs', 'runbooks.md'), 'utf8');
    // GitHub's anchors: a heading's text in lower case, spaces as dashes, punctuation dropped.
    const anchors = new Set(
      [...runbooks.matchAll(/^#{2,3} (.+)$/gm)].map((m) =>
        m[1]!
          .trim()
          .toLowerCase()
          .replace(/[^\w\- ]/g, '')
          .replace(/ /g, '-'),
      ),
    );
    const raw = parseYaml(readFileSync(join(RULES, 'alerts.yml'), 'utf8')) as {
      groups: { rules: { alert: string; annotations: Record<string, string> }[] }[];
    };
    for (const a of raw.groups.flatMap((g) => g.rules)) {
      expect(a.annotations['runbook_url'], a.alert).toBe(`docs/runbooks.md#${a.alert.toLowerCase()}`);
      expect(anchors.has(a.alert.toLowerCase()), `docs/runbooks.md has a section ${a.alert}`).toBe(true);
    }
    // And no section for an alert that no longer exists.
    expect([...runbooks.matchAll(/^## (Pdserve\w+)$/gm)].map((m) => m[1]).sort()).toEqual(alerts.map((a) => a.alert).sort());
  });

  it('are copied verbatim into the chart', () => {
    for (const f of ['recording.yml', 'alerts.yml']) {
      expect(readFileSync(join(CHART_RULES, f), 'utf8'), `helm/pdserve/rules/${f}`).toBe(readFileSync(join(RULES, f), 'utf8'));
    }
  });
});

describe('grafana dashboards', () => {
  it('are the generator output, in deploy/grafana and in the chart alike', () => {
    const rendered = renderDashboards();
    expect(dashboardFiles).toEqual([...rendered.keys()].sort());
    expect(
      readdirSync(CHART_DASHBOARDS)
        .filter((f) => f.endsWith('.json'))
        .sort(),
    ).toEqual(dashboardFiles);
    for (const [name, text] of rendered) {
      const hint = 'regenerate: node --import tsx deploy/grafana/dashboards.ts';
      expect(readFileSync(join(GRAFANA, name), 'utf8'), `${name}: ${hint}`).toBe(text);
      expect(readFileSync(join(CHART_DASHBOARDS, name), 'utf8'), `chart ${name}: ${hint}`).toBe(text);
    }
  });

  it('cover the cluster overview, KV cache, router and resources', () => {
    expect(dashboards.map((d) => d.json.uid).sort()).toEqual([
      'pdserve-kv-cache',
      'pdserve-overview',
      'pdserve-resources',
      'pdserve-router',
    ]);
  });

  it('are valid dashboards with unique panel ids and a datasource variable', () => {
    expect(new Set(dashboards.map((d) => d.json.uid)).size).toBe(dashboards.length);
    for (const { file, json } of dashboards) {
      expect(json.schemaVersion, file).toBeGreaterThanOrEqual(36);
      expect(json.title, file).toMatch(/^pdserve \/ /);
      const ds = json.templating.list.find((v) => v.name === 'datasource');
      expect(ds, file).toMatchObject({ type: 'datasource', query: 'prometheus' });
      const ids = allPanels(json).map((p) => p.id);
      expect(new Set(ids).size, `${file} panel ids`).toBe(ids.length);
      for (const p of allPanels(json)) {
        if (p.type === 'row') continue;
        expect(p.targets?.length, `${file} "${p.title}" has queries`).toBeGreaterThan(0);
        expect(p.datasource?.uid, `${file} "${p.title}"`).toBe('${datasource}');
        for (const t of p.targets!) expect(t.datasource.uid).toBe('${datasource}');
      }
    }
  });

  it('query only exported metrics (with their labels) and defined recording rules', () => {
    expect(queries.length).toBeGreaterThan(40);
    for (const q of queries) expect(checkExpr(q.expr, RECORDED), q.where).toEqual([]);
  });

  it('filter by namespace everywhere, and by the $model variable exactly where a metric has a model label', () => {
    for (const { file, json } of dashboards) {
      expect(
        json.templating.list.map((v) => v.name),
        file,
      ).toEqual(expect.arrayContaining(['namespace', 'model']));
    }
    for (const q of queries) {
      for (const sel of exprRefs(q.expr).selectors) {
        const entry = catalogEntry(sel.metric);
        expect(sel.labels, `${q.where}: ${sel.metric}`).toContain('namespace');
        if (entry) expect(sel.labels.includes('model'), `${q.where}: ${sel.metric} model filter`).toBe(entry.labelNames.includes('model'));
      }
    }
  });

  it('show every application metric somewhere', () => {
    const used = new Set(
      queries.flatMap((q) => [...q.expr.matchAll(/pdserve_[a-z0-9_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, ''))),
    );
    const unused = METRIC_CATALOG.filter((m) => m.source !== 'process' && !used.has(m.name)).map((m) => m.name);
    expect(unused).toEqual([]);
  });

  it.skipIf(!promtool)(`hold queries that parse as PromQL${NEEDS_PROMTOOL}`, () => {
    // promtool has no expression checker: each query becomes a recording rule, with Grafana's variables filled.
    const fill = (e: string): string =>
      e.replaceAll('$__rate_interval', '5m').replaceAll('$namespace', '.*').replaceAll('$model', '.*').replaceAll('$job', 'pdserve-.+');
    const file = {
      groups: [{ name: 'dashboards', rules: queries.map((q, i) => ({ record: `dashboard:query_${i}`, expr: fill(q.expr) })) }],
    };
    writeFileSync(join(tmp, 'dashboards.yml'), stringifyYaml(file));
    const r = promtoolRun(['check', 'rules', 'dashboards.yml'], tmp);
    expect(r.status, r.out).toBe(0);
  });
});
