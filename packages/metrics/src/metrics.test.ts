import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { METRIC_CATALOG, Registry, collectDefaultMetrics, gatewayMetrics, kvStoreMetrics, workerMetrics } from './index';
import { DEFAULT_METRICS } from './catalog';
import {
  BATCH_SIZE_BUCKETS,
  ITL_BUCKETS,
  QUEUE_TIME_BUCKETS,
  REQUEST_DURATION_BUCKETS,
  SEQUENCE_LENGTH_BUCKETS,
  STEP_BUCKETS,
  TRANSFER_BUCKETS,
  TTFT_BUCKETS,
} from './buckets';
import { PDSERVE_VERSION, type EngineStatsSnapshot, type RouterStatsSnapshot } from './services';

function allOnOne(): Registry {
  const reg = new Registry();
  gatewayMetrics(reg);
  workerMetrics(reg);
  kvStoreMetrics(reg);
  collectDefaultMetrics(reg);
  return reg;
}

/** Value of one sample in the text exposition, or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('metric registration', () => {
  it('registers all three services and the defaults on one registry without collisions', async () => {
    const reg = allOnOne();
    const names = (await reg.getMetricsAsJSON()).map((m) => m.name).sort();
    expect(names).toEqual(METRIC_CATALOG.map((m) => m.name).sort());
  });

  it('keeps the catalog in step with what prom-client registers, types and labels included', async () => {
    const reg = allOnOne();
    const g = gatewayMetrics(new Registry());
    g.requests.inc({ model: 'tiny', route: '/v1/completions', status: '200' });
    const byName = new Map((await reg.getMetricsAsJSON()).map((m) => [m.name, m]));
    for (const entry of METRIC_CATALOG) {
      const m = byName.get(entry.name);
      expect(m, entry.name).toBeDefined();
      expect(String(m!.type), entry.name).toBe(entry.type);
    }
    // Default metrics as prom-client makes them on this Node version.
    const fresh = new Registry();
    collectDefaultMetrics(fresh);
    const defaults = (await fresh.getMetricsAsJSON())
      .filter((m) => m.name !== 'pdserve_build_info')
      .map((m) => ({ name: m.name, type: String(m.type) }));
    expect(defaults.sort((a, b) => a.name.localeCompare(b.name))).toEqual(
      DEFAULT_METRICS.map((m) => ({ name: m.name, type: m.type })).sort((a, b) => a.name.localeCompare(b.name)),
    );
  });

  it('names every metric pdserve_*, counters *_total, with a base unit where one applies', () => {
    for (const m of METRIC_CATALOG) {
      expect(m.name).toMatch(/^pdserve_[a-z0-9_]+$/);
      if (m.type === 'counter') expect(m.name, m.name).toMatch(/_total$/);
      // A gauge named *_total reads as a counter (prom-client's own active-handle gauges are not ours to rename).
      if (m.type !== 'counter' && m.source !== 'process') expect(m.name, m.name).not.toMatch(/_total$/);
      if (/duration|latency|_time_|step_seconds|transfer_seconds/.test(m.name) && m.source !== 'process')
        expect(m.name).toMatch(/_seconds(_total)?$/);
      for (const l of m.labelNames) expect(l, `${m.name} label`).toMatch(/^[a-z][a-z0-9_]*$/);
    }
    expect(new Set(METRIC_CATALOG.map((m) => m.name)).size).toBe(METRIC_CATALOG.length);
  });

  it('throws when one service registers twice on the same registry', () => {
    const reg = new Registry();
    workerMetrics(reg);
    expect(() => workerMetrics(reg)).toThrow(/already been registered/);
  });

  it('exposes typed handles that record', async () => {
    const reg = new Registry();
    const g = gatewayMetrics(reg);
    const w = workerMetrics(reg);
    const s = kvStoreMetrics(reg);
    g.requests.inc({ model: 'tiny', route: '/v1/chat/completions', status: '200' });
    g.timeToFirstToken.observe({ model: 'tiny' }, 0.042);
    g.requestsInFlight.inc({ model: 'tiny' });
    g.requestPromptTokens.observe({ model: 'tiny' }, 700);
    w.stepSeconds.observe({ model: 'tiny', phase: 'decode' }, 0.003);
    w.queueTime.observe({ model: 'tiny' }, 0.3);
    w.kvTransferBytes.inc({ direction: 'sent', peer_role: 'decode' }, 4096);
    s.bytes.set({ tier: 'memory' }, 1 << 20);
    const text = await reg.metrics();
    expect(sample(text, 'pdserve_requests_total{model="tiny",route="/v1/chat/completions",status="200"}')).toBe(1);
    expect(sample(text, 'pdserve_time_to_first_token_seconds_bucket{le="0.05",model="tiny"}')).toBe(1);
    expect(sample(text, 'pdserve_time_to_first_token_seconds_bucket{le="0.025",model="tiny"}')).toBe(0);
    expect(sample(text, 'pdserve_requests_in_flight{model="tiny"}')).toBe(1);
    expect(sample(text, 'pdserve_request_prompt_tokens_bucket{le="500",model="tiny"}')).toBe(0);
    expect(sample(text, 'pdserve_request_prompt_tokens_bucket{le="1000",model="tiny"}')).toBe(1);
    expect(sample(text, 'pdserve_engine_step_seconds_count{model="tiny",phase="decode"}')).toBe(1);
    expect(sample(text, 'pdserve_request_queue_time_seconds_bucket{le="0.5",model="tiny"}')).toBe(1);
    expect(sample(text, 'pdserve_kv_transfer_bytes_total{direction="sent",peer_role="decode"}')).toBe(4096);
    expect(sample(text, 'pdserve_kvstore_bytes{tier="memory"}')).toBe(1 << 20);
  });
});

describe('build info', () => {
  it('reports the pdserve and Node.js versions on every registry the defaults go on', async () => {
    const reg = new Registry();
    collectDefaultMetrics(reg);
    const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'package.json'), 'utf8')) as { version: string };
    expect(PDSERVE_VERSION).toBe(pkg.version);
    expect(sample(await reg.metrics(), `pdserve_build_info{version="${pkg.version}",nodejs_version="${process.versions.node}"}`)).toBe(1);
  });
});

describe('snapshot-backed metrics', () => {
  it('reads engine gauges and counters at scrape time', async () => {
    let stats: EngineStatsSnapshot = {
      running: 3,
      waiting: 1,
      usedBlocks: 10,
      cachedBlocks: 4,
      totalBlocks: 64,
      prefixCacheHitTokens: 32,
      prefixCacheQueryTokens: 100,
      preemptions: 0,
      steps: 7,
      modelSeconds: 0.5,
      overheadSeconds: 0.05,
    };
    const reg = new Registry();
    workerMetrics(reg, { engineStats: () => stats, model: 'tiny' });
    let text = await reg.metrics();
    expect(sample(text, 'pdserve_engine_running_sequences{model="tiny"}')).toBe(3);
    expect(sample(text, 'pdserve_kv_blocks_capacity{model="tiny"}')).toBe(64);
    expect(sample(text, 'pdserve_prefix_cache_hit_tokens_total{model="tiny"}')).toBe(32);
    expect(text).not.toMatch(/^pdserve_kv_blocks_total/m);
    stats = { ...stats, running: 0, prefixCacheHitTokens: 40, steps: 9 };
    text = await reg.metrics();
    expect(sample(text, 'pdserve_engine_running_sequences{model="tiny"}')).toBe(0);
    expect(sample(text, 'pdserve_prefix_cache_hit_tokens_total{model="tiny"}')).toBe(40);
    expect(sample(text, 'pdserve_engine_steps_total{model="tiny"}')).toBe(9);
    expect(text).not.toMatch(/^pdserve_spec_draft_tokens_total\{/m); // speculation off: no series
    stats = { ...stats, speculation: { draftTokens: 40, acceptedTokens: 30, verifiedSequenceSteps: 10, emittedTokens: 40 } };
    text = await reg.metrics();
    expect(sample(text, 'pdserve_spec_draft_tokens_total{model="tiny"}')).toBe(40);
    expect(sample(text, 'pdserve_spec_accepted_tokens_total{model="tiny"}')).toBe(30);
    expect(sample(text, 'pdserve_spec_verify_steps_total{model="tiny"}')).toBe(10);
    expect(sample(text, 'pdserve_spec_emitted_tokens_total{model="tiny"}')).toBe(40);
  });

  it('turns router stats into labelled counters', async () => {
    const stats: RouterStatsSnapshot = {
      noCandidate: 2,
      byPolicy: { 'kv-aware': 5 },
      byPrefill: { local: 2, remote: 3 },
      localPrefillReasons: { 'short-uncached-suffix': 2, 'prefill-pool-busy': 0 },
      byWorker: { d0: { decode: 5, prefill: 2 }, p0: { decode: 0, prefill: 3 } },
      prefixRequestedBlocks: 40,
      prefixMatchedBlocks: 30,
      prefixMatchedByTier: { device: 25, host: 5, disk: 0, store: 0 },
    };
    const reg = new Registry();
    gatewayMetrics(reg, { routerStats: () => stats });
    const text = await reg.metrics();
    expect(sample(text, 'pdserve_router_decisions_total{policy="kv-aware",role="decode",worker="d0"}')).toBe(5);
    expect(sample(text, 'pdserve_router_decisions_total{policy="kv-aware",role="prefill",worker="p0"}')).toBe(3);
    expect(sample(text, 'pdserve_router_prefill_total{mode="remote"}')).toBe(3);
    expect(sample(text, 'pdserve_router_prefill_total{mode="local",reason="short-uncached-suffix"}')).toBe(2);
    expect(sample(text, 'pdserve_router_prefix_matched_blocks_total')).toBe(30);
    expect(sample(text, 'pdserve_router_prefix_requested_blocks_total')).toBe(40);
    expect(sample(text, 'pdserve_router_prefix_tier_blocks_total{tier="host"}')).toBe(5);
    expect(sample(text, 'pdserve_router_no_candidate_total')).toBe(2);
  });

  it('reads store tiers at scrape time', async () => {
    const reg = new Registry();
    kvStoreMetrics(reg, {
      tiers: () => [
        { tier: 'memory', blocks: 3, bytes: 300, capacityBytes: 1000 },
        { tier: 'disk', blocks: 9, bytes: 900, capacityBytes: 10_000 },
      ],
    });
    const text = await reg.metrics();
    expect(sample(text, 'pdserve_kvstore_blocks{tier="disk"}')).toBe(9);
    expect(sample(text, 'pdserve_kvstore_capacity_bytes{tier="memory"}')).toBe(1000);
  });
});

describe('histogram buckets', () => {
  const sets = {
    TTFT_BUCKETS,
    ITL_BUCKETS,
    REQUEST_DURATION_BUCKETS,
    STEP_BUCKETS,
    TRANSFER_BUCKETS,
    BATCH_SIZE_BUCKETS,
    QUEUE_TIME_BUCKETS,
    SEQUENCE_LENGTH_BUCKETS,
  };

  it('are strictly increasing and positive', () => {
    for (const [name, b] of Object.entries(sets)) {
      expect(b.length, name).toBeGreaterThan(5);
      expect(b[0]!, name).toBeGreaterThan(0);
      for (let i = 1; i < b.length; i++) expect(b[i]!, `${name}[${i}]`).toBeGreaterThan(b[i - 1]!);
    }
  });

  it('span the latencies an LLM server sees', () => {
    expect(TTFT_BUCKETS[0]).toBeLessThanOrEqual(0.005);
    expect(TTFT_BUCKETS.at(-1)).toBeGreaterThanOrEqual(60);
    expect(ITL_BUCKETS[0]).toBeLessThanOrEqual(0.001);
    expect(ITL_BUCKETS.at(-1)).toBeGreaterThanOrEqual(5);
    expect(REQUEST_DURATION_BUCKETS.at(-1)).toBeGreaterThanOrEqual(600);
    expect(STEP_BUCKETS[0]).toBeLessThan(0.001);
    expect(STEP_BUCKETS.at(-1)).toBeGreaterThanOrEqual(5);
    // Resolution where SLOs are drawn: at least 4 TTFT buckets between 100 ms and 1 s, 4 ITL buckets in 10-100 ms.
    expect(TTFT_BUCKETS.filter((b) => b > 0.1 && b <= 1).length).toBeGreaterThanOrEqual(4);
    expect(ITL_BUCKETS.filter((b) => b > 0.01 && b <= 0.1).length).toBeGreaterThanOrEqual(4);
  });

  it('are what the registered histograms use', async () => {
    const reg = new Registry();
    const g = gatewayMetrics(reg);
    g.interTokenLatency.observe({ model: 'tiny' }, 0.02);
    const text = await reg.metrics();
    const les = [...text.matchAll(/^pdserve_inter_token_latency_seconds_bucket\{le="([^"]+)",model="tiny"\}/gm)].map((m) => m[1]);
    expect(les).toEqual([...ITL_BUCKETS.map(String), '+Inf']);
  });
});
