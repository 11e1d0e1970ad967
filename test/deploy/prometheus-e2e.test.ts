// Real Prometheus against a real cluster: the services run as separate processes on real Redis and NATS,
// Debian's prometheus scrapes their admin ports every second with the repo's recording and alert rules
// loaded, the openai client sends traffic, and then every query of every dashboard and every recording
// rule must return data — except the few listed below, each with the reason it may be empty.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { COMMANDS } from '@pdserve/cli';
import {
  ensureTinyModel,
  freePort,
  spawnService,
  startNats,
  startRedis,
  waitFor,
  type ServiceProcess,
  type TestServer,
} from '@pdserve/testkit';

const ROOT = join(import.meta.dirname, '..', '..');
const RULES = join(ROOT, 'deploy', 'prometheus', 'rules');
const GRAFANA = join(ROOT, 'deploy', 'grafana');
const PROMETHEUS = ['/usr/bin/prometheus', '/usr/local/bin/prometheus'].find((p) => existsSync(p));
const NEEDS = PROMETHEUS ? '' : ' [skipped: prometheus not installed; apt-get install prometheus]';

/** The kv-store command: it runs beside the gateway and the workers, with the shared flags it takes. */
const KV_STORE = COMMANDS.find((c) => c.name === 'kv-store')!;

/**
 * Grafana's variables at their "All" values. $__rate_interval is at least four scrape intervals in Grafana;
 * 10s keeps windows of several 1s scrapes even when this shared machine delays one.
 */
const fill = (expr: string): string =>
  expr.replaceAll('$__rate_interval', '10s').replaceAll('$namespace', '.*').replaceAll('$model', '.*').replaceAll('$job', 'pdserve-.+');

/** Queries that may legitimately return nothing from this run, each with the reason. */
const MAY_BE_EMPTY: readonly { readonly match: RegExp; readonly reason: string; readonly when: boolean }[] = [
  {
    match: /pdserve_kvstore_hits_total.*\/.*pdserve_kvstore_misses_total/s,
    reason:
      'a hit ratio needs a read: the worker pools never fill in this short run, so nothing is offloaded and read back (hits and misses stay 0, and 0/0 is no value)',
    when: true,
  },
  {
    match: /histogram_quantile\(.*pdserve_migration_seconds_bucket/s,
    reason:
      "a migration's duration needs a migration: no stream breaks in this run, so the histogram has no observation (its quantile is no value); test/migration.test.ts and test/chaos.test.ts observe it",
    when: true,
  },
  {
    match: /rate\(pdserve_spec_\w+_total.*\/.*rate\(pdserve_spec_\w+_total/s,
    reason:
      'speculative decoding is off in this cluster (it is opt-in), so its counters stay 0 and their ratios are 0/0, no value; packages/metrics and the engine speculative tests count them',
    when: true,
  },
];

const mayBeEmpty = (expr: string): string | undefined => MAY_BE_EMPTY.find((a) => a.when && a.match.test(expr))?.reason;

interface Rule {
  readonly record?: string;
  readonly alert?: string;
  readonly expr: string;
}
interface RuleFile {
  readonly groups: readonly { readonly name: string; readonly interval?: string; readonly rules: readonly Rule[] }[];
}
interface Panel {
  readonly title: string;
  readonly targets?: readonly { readonly expr: string; readonly refId: string }[];
  readonly panels?: readonly Panel[];
}

const ruleFiles = ['recording.yml', 'alerts.yml'].map((f) => ({
  file: f,
  parsed: parseYaml(readFileSync(join(RULES, f), 'utf8')) as RuleFile,
}));
const allRules = ruleFiles.flatMap((f) => f.parsed.groups.flatMap((g) => g.rules));
const recording = allRules.filter((r) => r.record);
const alerts = allRules.filter((r) => r.alert);
interface Dashboard {
  readonly panels: readonly Panel[];
  readonly templating: { readonly list: readonly { readonly name: string; readonly type: string; readonly definition?: string }[] };
}
const dashboards = readdirSync(GRAFANA)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .map((f) => ({ file: f, json: JSON.parse(readFileSync(join(GRAFANA, f), 'utf8')) as Dashboard }));
const dashboardQueries = dashboards.flatMap(({ file, json }) =>
  json.panels
    .flatMap((p) => [p, ...(p.panels ?? [])])
    .flatMap((p) => (p.targets ?? []).map((t) => ({ where: `${file} "${p.title}" ${t.refId}`, expr: fill(t.expr) }))),
);
/** The dashboards' `label_values(selector, label)` variables. */
const variableQueries = dashboards.flatMap(({ file, json }) =>
  json.templating.list
    .filter((v) => v.type === 'query')
    .map((v) => {
      const m = /^label_values\((.*),\s*([a-zA-Z_]+)\)$/.exec(v.definition ?? '');
      if (!m) throw new Error(`${file} variable ${v.name}: not a label_values() query: ${v.definition}`);
      return { where: `${file} variable $${v.name}`, selector: fill(m[1]!), label: m[2]! };
    }),
);
/** Variables that may have no values here: off Kubernetes no series carries a namespace label. */
const VARIABLE_MAY_BE_EMPTY: Readonly<Record<string, string>> = {
  namespace: 'only Kubernetes scrapes (ServiceMonitor, kubernetes_sd) add a namespace label; its "All" value .* still matches',
};

interface Series {
  readonly metric: Readonly<Record<string, string>>;
  readonly values?: readonly (readonly [number, string])[];
  readonly value?: readonly [number, string];
}

let tmp: string;
let redis: TestServer | undefined;
let nats: TestServer | undefined;
const services: ServiceProcess[] = [];
let prometheus: ChildProcess | undefined;
let promLog = '';
let promUrl = '';
let startedAt = 0;
let trafficEnd = 0;
const jobs = new Map<string, ServiceProcess>();
let gatewayReadyBeforeWorkers = 0;
let decodeDataPort = 0;

async function prom<T>(path: string, params: Record<string, string | number>): Promise<T> {
  const res = await fetch(
    `${promUrl}/api/v1/${path}?${new URLSearchParams(Object.entries(params).map(([k, v]): [string, string] => [k, String(v)]))}`,
  );
  const body = (await res.json()) as { status: string; data: T; error?: string };
  if (body.status !== 'success') throw new Error(`prometheus ${path} ${JSON.stringify(params)}: ${body.error}`);
  return body.data;
}

const instant = async (query: string): Promise<Series[]> => (await prom<{ result: Series[] }>('query', { query })).result;
const range = async (query: string): Promise<Series[]> =>
  (await prom<{ result: Series[] }>('query_range', { query, start: startedAt / 1000, end: Date.now() / 1000, step: 1 })).result;
const finite = (v: string): boolean => Number.isFinite(Number(v));
const hasData = (series: readonly Series[]): boolean => series.some((s) => (s.values ?? []).some(([, v]) => finite(v)));

async function status(url: string): Promise<number> {
  try {
    return (await fetch(url)).status;
  } catch {
    return 0;
  }
}

function dump(): string {
  return [...services.map((s) => `--- ${s.name}\n${s.output().slice(-1500)}`), `--- prometheus\n${promLog.slice(-1500)}`].join('\n');
}

async function sendTraffic(client: OpenAI): Promise<void> {
  // One long stream keeps a sequence running across several scrapes, so the load gauges are caught non-zero.
  const long = new AbortController();
  const longStream = (async () => {
    const s = await client.completions.create(
      {
        model: 'tiny',
        prompt: 'A long story that keeps the decode worker busy while the scrapes happen',
        max_tokens: 3000,
        temperature: 0,
        stream: true,
        ignore_eos: true,
      } as OpenAI.CompletionCreateParamsStreaming,
      { signal: long.signal },
    );
    try {
      for await (const _ of s) if (long.signal.aborted) break;
    } catch {
      // aborted on purpose below
    }
  })();
  const shared = 'You are a helpful assistant for the pdserve operations team. Answer briefly and precisely. Question number';
  // Spread over several scrape intervals: a counter must be seen before and after it grows for rate() to move.
  for (let round = 0; round < 4; round++) {
    await client.completions.create({ model: 'tiny', prompt: `${shared} ${round}: what is a KV cache?`, max_tokens: 12, temperature: 0 });
    let streamed = 0;
    for await (const c of await client.completions.create({
      model: 'tiny',
      prompt: `${shared} ${round}: what is prefill?`,
      max_tokens: 12,
      temperature: 0,
      stream: true,
    })) {
      streamed += c.choices[0]?.text.length ?? 0;
    }
    expect(streamed).toBeGreaterThan(0);
    await client.chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'user', content: `${shared} ${round}: what is decode?` }],
      max_tokens: 8,
      temperature: 0,
    });
    for await (const _ of await client.chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'user', content: `${shared} ${round}: and routing?` }],
      max_tokens: 8,
      temperature: 0.7,
      seed: round,
      stream: true,
    })) {
      // drain
    }
    // A client error, so the 4xx panels have something to show.
    await expect(client.completions.create({ model: 'tiny', prompt: 'x', max_tokens: -1 })).rejects.toThrow();
    await new Promise((r) => setTimeout(r, 1200));
  }
  long.abort();
  await longStream;
}

beforeAll(async () => {
  if (!PROMETHEUS) return;
  startedAt = Date.now();
  tmp = mkdtempSync(join(tmpdir(), 'pdserve-prom-'));
  const dir = await ensureTinyModel();
  [redis, nats] = await Promise.all([startRedis(), startNats()]);
  const shared = [
    '--model',
    dir,
    '--served-model-name',
    'tiny',
    '--cluster',
    'prom',
    '--redis',
    redis.url,
    '--nats',
    nats.url,
    '--log-level',
    'warn',
    '--lease-ttl-ms',
    '3000',
  ];
  const died = (): boolean => services.some((s) => s.proc.exitCode !== null);
  const ready = (s: ServiceProcess): Promise<boolean> => status(`http://127.0.0.1:${s.adminPort}/ready`).then((c) => c === 200);
  const fail = (e: Error): Promise<never> => Promise.reject(new Error(`${e.message}\n${dump()}`));

  // The gateway first: its admin port answers at once, and it is not ready while no decode worker exists.
  const gateway = await spawnService('gateway', 'gateway', [...shared, '--remote-prefill-min-tokens', '8'], '--port');
  services.push(gateway);
  jobs.set('pdserve-gateway', gateway);
  await waitFor(
    'gateway admin port',
    async () => !died() && (await status(`http://127.0.0.1:${gateway.adminPort}/health`)) === 200,
    20_000,
  ).catch(fail);
  gatewayReadyBeforeWorkers = await status(`http://127.0.0.1:${gateway.adminPort}/ready`);

  decodeDataPort = await freePort();
  const started = await Promise.all([
    spawnService('prefill-0', 'prefill-worker', [...shared, '--kv-cache-bytes', '32M', '--instance-id', 'prefill-0'], '--grpc-port'),
    spawnService(
      'decode-0',
      'decode-worker',
      [
        ...shared,
        '--kv-cache-bytes',
        '32M',
        '--instance-id',
        'decode-0',
        '--transports',
        'tcp,grpc',
        '--data-port',
        String(decodeDataPort),
      ],
      '--grpc-port',
    ),
  ]);
  services.push(...started);
  jobs.set('pdserve-prefill', started[0]);
  jobs.set('pdserve-decode', started[1]);
  // Only the shared flags the kv-store command has; its own defaults for the rest.
  const own = new Set(Object.keys(KV_STORE.flags));
  const args: string[] = [];
  for (let i = 0; i < shared.length; i += 2) if (own.has(shared[i]!.slice(2))) args.push(shared[i]!, shared[i + 1]!);
  args.push('--disk-dir', join(tmp, 'kv-store'));
  const kv = await spawnService('kv-store', 'kv-store', args, '--grpc-port');
  services.push(kv);
  jobs.set('pdserve-kv-store', kv);
  await waitFor('every service ready', async () => !died() && (await Promise.all(services.map(ready))).every(Boolean), 45_000).catch(fail);

  // Prometheus with the repo's rules, evaluated every second instead of every 30s so a short run sees them.
  const promPort = await freePort();
  promUrl = `http://127.0.0.1:${promPort}`;
  for (const { file, parsed } of ruleFiles) {
    writeFileSync(join(tmp, file), stringifyYaml({ groups: parsed.groups.map((g) => ({ ...g, interval: '1s' })) }));
  }
  const config = {
    global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
    rule_files: ruleFiles.map((f) => join(tmp, f.file)),
    scrape_configs: [...jobs].map(([job, s]) => ({ job_name: job, static_configs: [{ targets: [`127.0.0.1:${s.adminPort}`] }] })),
  };
  writeFileSync(join(tmp, 'prometheus.yml'), stringifyYaml(config));
  prometheus = spawn(
    PROMETHEUS,
    [
      `--config.file=${join(tmp, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(tmp, 'data')}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
      '--log.level=warn',
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  prometheus.stdout!.on('data', (d: Buffer) => (promLog = (promLog + d.toString()).slice(-10_000)));
  prometheus.stderr!.on('data', (d: Buffer) => (promLog = (promLog + d.toString()).slice(-10_000)));
  await waitFor(
    'prometheus ready',
    async () => prometheus!.exitCode === null && (await status(`${promUrl}/-/ready`)) === 200,
    15_000,
  ).catch(fail);
  await waitFor('every target scraped', async () => (await instant('up == 1')).length === jobs.size, 10_000).catch(fail);

  const client = new OpenAI({ baseURL: `http://127.0.0.1:${gateway.port}/v1`, apiKey: 'x', maxRetries: 0, timeout: 30_000 });
  await sendTraffic(client);
  trafficEnd = Date.now() / 1000;
  // Two scrapes and a rule evaluation after the last request.
  await waitFor(
    'a scrape after the traffic',
    async () => Number((await instant('min(timestamp(up))'))[0]?.value?.[1] ?? 0) > trafficEnd + 1,
    10_000,
  );
  await waitFor(
    'a rule evaluation after that',
    async () => Number((await instant('timestamp(job:pdserve_requests:rate5m)'))[0]?.value?.[1] ?? 0) > trafficEnd + 1,
    10_000,
  );
  // The whole file stays under 90 s: this hook is bounded at 80 s, the checks below take about a second.
}, 80_000);

afterAll(async () => {
  if (prometheus && prometheus.exitCode === null) {
    const exited = new Promise((r) => prometheus!.once('exit', r));
    prometheus.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
    if (prometheus.exitCode === null) prometheus.kill('SIGKILL');
  }
  await Promise.all(services.map((s) => s.kill()));
  await Promise.all([redis?.stop(), nats?.stop()]);
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe(`real Prometheus scraping a running cluster${NEEDS}`, () => {
  it.skipIf(!PROMETHEUS)(
    'a gateway is not ready before any decode worker exists; the decode worker binds --data-port and took KV',
    async () => {
      expect(gatewayReadyBeforeWorkers).toBe(503);
      await new Promise<void>((resolve, reject) => {
        const s = connect(decodeDataPort, '127.0.0.1', () => (s.destroy(), resolve())).once('error', reject);
      });
      const bytes = await instant('sum(pdserve_kv_transfer_bytes_total{job="pdserve-decode", direction="in"})');
      expect(Number(bytes[0]?.value?.[1]), 'KV arrived at the decode worker over the data plane').toBeGreaterThan(0);
    },
  );

  it.skipIf(!PROMETHEUS)('has up == 1 for every service (gateway, prefill, decode, kv-store)', async () => {
    const up = await instant('up');
    expect(Object.fromEntries(up.map((s) => [s.metric['job'], s.value?.[1]]))).toEqual(
      Object.fromEntries([...jobs.keys()].map((j) => [j, '1'])),
    );
  });

  it.skipIf(!PROMETHEUS)('loads every rule and evaluates each without error', async () => {
    const data = await prom<{ groups: { name: string; rules: { name: string; health: string; lastError?: string; state?: string }[] }[] }>(
      'rules',
      {},
    );
    const loaded = data.groups.flatMap((g) => g.rules);
    expect(loaded.map((r) => r.name).sort()).toEqual(allRules.map((r) => r.record ?? r.alert!).sort());
    for (const r of loaded) expect(r.health, `${r.name}: ${r.lastError ?? ''}`).toBe('ok');
  });

  it.skipIf(!PROMETHEUS)('returns data for every dashboard query, except the listed ones', async () => {
    const empty: string[] = [];
    const allowed: string[] = [];
    for (const q of dashboardQueries) {
      if (hasData(await range(q.expr))) continue;
      const reason = mayBeEmpty(q.expr);
      if (reason === undefined) empty.push(`${q.where}: ${q.expr}`);
      else allowed.push(`${q.where} (${reason})`);
    }
    expect(empty, 'dashboard queries with no data').toEqual([]);
    expect(dashboardQueries.length - allowed.length, 'most queries have data').toBeGreaterThan(50);
    if (process.env['PDSERVE_TEST_VERBOSE']) process.stdout.write(`empty as allowed:\n  ${allowed.join('\n  ')}\n`);
  });

  it.skipIf(!PROMETHEUS)('offers values for every dashboard variable, except the listed ones', async () => {
    const empty: string[] = [];
    for (const v of variableQueries) {
      const values = await prom<string[]>(`label/${v.label}/values`, {
        'match[]': v.selector,
        start: startedAt / 1000,
        end: Date.now() / 1000,
      });
      if (values.length === 0 && VARIABLE_MAY_BE_EMPTY[v.label] === undefined)
        empty.push(`${v.where}: label_values(${v.selector}, ${v.label})`);
      if (v.label === 'job') expect(values.sort(), v.where).toEqual([...jobs.keys()].sort());
    }
    expect(empty, 'variables with no values').toEqual([]);
  });

  it.skipIf(!PROMETHEUS)('returns data for every recording rule, both its series and its expression, except the listed ones', async () => {
    const empty: string[] = [];
    for (const r of recording) {
      const recorded = hasData(await range(r.record!));
      const computed = hasData(await range(r.expr));
      if (recorded && computed) continue;
      if (mayBeEmpty(r.expr) === undefined) empty.push(`${r.record}: recorded ${recorded}, expression ${computed}`);
    }
    expect(empty, 'recording rules with no data').toEqual([]);
  });

  it.skipIf(!PROMETHEUS)('keeps every alert quiet on a healthy cluster (all are expected empty here)', async () => {
    for (const a of alerts) expect(await instant(a.expr), a.alert).toEqual([]);
    expect(await instant('ALERTS')).toEqual([]);
  });
});
