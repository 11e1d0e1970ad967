import { readFile, writeFile } from 'node:fs/promises';
import {
  DEFAULT_CACHE_TOKENS,
  findCapacity,
  formatCapacity,
  formatSimReport,
  parseCostModel,
  readTrace,
  renderReportPage,
  simReportPage,
  simulate,
  TraceError,
  type CapacityResult,
  type CostModel,
  type EngineLimits,
  type SimOptions,
  type SimReport,
} from '@pdserve/bench';
import { POLICY_NAMES, type PolicyName } from '@pdserve/router';
import { Flags, int, listOf, num, oneOf, UsageError, type CommandSpec, type FlagValue } from '../args';
import { countBar } from '../progress';

/** One simulated configuration and what it gave. */
export interface SimRun {
  readonly name: string;
  readonly policy: PolicyName;
  /** kv-store tier capacity in tokens (fed by evictions); null: none. */
  readonly storeTokens: number | null;
  /** The workers' caches pooled Mooncake-style (any worker fetches what any other caches). */
  readonly globalPool: boolean;
  readonly report: SimReport;
  readonly capacity: CapacityResult | null;
}

/** What `simulate --output` writes. */
export interface SimulationFile {
  readonly version: 1;
  readonly kind: 'pdserve-simulation';
  readonly trace: string;
  readonly costModel: { readonly source: string | null; readonly cost: CostModel };
  readonly runs: readonly SimRun[];
}

// Checked with the flags (parseFlags), before the trace is read; run() only converts them.
const TOKENS: FlagValue = {
  kind: 'custom',
  placeholder: 'TOKENS',
  check: (v) => (parseTokenCount(v) === undefined ? 'must be a token count ≥ 1 like 131072, 128k or 3M' : undefined),
};
const HOST_PARALLELISM: FlagValue = {
  kind: 'custom',
  placeholder: 'X|measured',
  check: (v) => (v === 'measured' || Number(v) > 0 ? undefined : 'must be a positive number or "measured"'),
};

export const simulateCommand: CommandSpec = {
  name: 'simulate',
  summary: 'Simulate a cluster of any size on a trace, routing with the real router: prefix hit rate, TTFT/TBT, capacity under SLO.',
  usage:
    'simulate --trace FILE --decode M [--prefill N] [--policy kv-aware | --compare-policies] [--cache-tokens N] [--kv-store TOKENS [--compare-store]]\n' +
    '       [--cost-model FILE] [--slo-ttft MS] [--block-scale 512] [--time-scale 1] [--output FILE.json] [--report FILE.html]',
  flags: {
    trace: {
      type: 'string',
      help: 'trace file in the Mooncake format (JSON lines with timestamp, input_length, output_length, hash_ids)',
      required: true,
    },
    prefill: { type: 'string', help: 'dedicated prefill workers (0: decode workers are mixed)', default: '0', value: int(0) },
    decode: { type: 'string', help: 'decode (or mixed) workers', required: true, value: int(1) },
    policy: {
      type: 'string',
      help: `routing policy, or a comma-separated list: ${POLICY_NAMES.join(', ')}`,
      default: 'kv-aware',
      value: listOf(...POLICY_NAMES),
    },
    'compare-policies': { type: 'boolean', help: 'run every policy (overrides --policy)' },
    'cache-tokens': {
      type: 'string',
      help: 'per-worker prefix cache capacity, tokens (suffixes k, M: 3M = 3,000,000)',
      default: String(DEFAULT_CACHE_TOKENS),
      value: TOKENS,
    },
    'kv-store': {
      type: 'string',
      help: 'add a kv-store tier of this many tokens (suffixes k, M): blocks workers evict go there; hits are fetched',
      value: TOKENS,
    },
    'global-pool': {
      type: 'boolean',
      help: "pool the workers' caches Mooncake-style: any worker fetches the blocks any other caches (same capacity)",
    },
    'compare-store': {
      type: 'boolean',
      help: 'run each policy with local caches only, with the global pool, and with the kv-store tier if --kv-store is given',
    },
    'cost-model': { type: 'string', help: 'cost model JSON written by `pdserve calibrate` (default: placeholders for the tiny model)' },
    'block-scale': {
      type: 'string',
      help: 'tokens per trace hash-id block: the simulated block size (prompts scale by it / 512)',
      value: int(1),
    },
    'time-scale': { type: 'string', help: 'arrival times × this (0.5 = twice the request rate)', default: '1', value: num({ above: 0 }) },
    'length-scale': { type: 'string', help: 'output lengths × this', default: '1', value: num({ above: 0 }) },
    'max-requests': { type: 'string', help: 'replay only the first N requests', value: int(1) },
    'max-input-len': { type: 'string', help: 'cut prompts to this many tokens (as bench --max-input-len)', value: int(1) },
    'max-tokens': { type: 'string', help: 'cap output lengths (as bench --max-tokens)', value: int(1) },
    'trace-block-size': { type: 'string', help: 'tokens per hash id in the trace file', default: '512', value: int(1) },
    'slo-ttft': {
      type: 'string',
      help: 'TTFT objective (ms): report attainment and search the capacity (highest request rate) under it',
      value: num({ above: 0 }),
    },
    'capacity-percentile': {
      type: 'string',
      help: 'the TTFT percentile the capacity search holds under --slo-ttft',
      default: 'p90',
      value: oneOf('p50', 'p90', 'p99'),
    },
    'capacity-iterations': { type: 'string', help: 'most simulations per capacity search', default: '10', value: int(1) },
    'host-parallelism': {
      type: 'string',
      help: "all workers share one host running this many steps at once at full speed (a local cluster on CPU cores); 'measured': the cost model file's",
      value: HOST_PARALLELISM,
    },
    'max-running': {
      type: 'string',
      help: 'engine: most sequences in the running batch (default: the cost model file, else 64)',
      value: int(1),
    },
    'max-batch-tokens': { type: 'string', help: 'engine: most tokens per step (default: the cost model file, else 2048)', value: int(1) },
    'prefill-chunk-tokens': {
      type: 'string',
      help: 'engine: longest prefill chunk per sequence per step (default: the cost model file, else 256)',
      value: int(0),
    },
    output: { type: 'string', help: 'write every run (reports and capacity probes) as JSON' },
    report: {
      type: 'string',
      help: 'write a self-contained HTML report: TTFT and inter-token latency distributions, throughput over time, hit rate per policy, every run overlaid',
    },
  },
  check(f) {
    if (f.str('kv-store') !== undefined && f.bool('global-pool') && !f.bool('compare-store'))
      throw new UsageError('--kv-store and --global-pool are exclusive (or compare them with --compare-store)');
  },
  async run(f: Flags) {
    const tracePath = f.required('trace');
    const decode = f.int('decode', 1)!;
    const prefill = f.int('prefill', 0) ?? 0;
    const policies = f.bool('compare-policies') ? [...POLICY_NAMES] : policiesOf(f.str('policy') ?? 'kv-aware');
    const cacheTokens = tokenCount(f, 'cache-tokens') ?? DEFAULT_CACHE_TOKENS;
    const given = tokenCount(f, 'kv-store') ?? null;
    const layouts: { storeTokens: number | null; globalPool: boolean }[] = f.bool('compare-store')
      ? [
          { storeTokens: null, globalPool: false },
          { storeTokens: null, globalPool: true },
          ...(given === null ? [] : [{ storeTokens: given, globalPool: false }]),
        ]
      : [{ storeTokens: given, globalPool: f.bool('global-pool') }];
    const costPath = f.str('cost-model');
    const model =
      costPath === undefined ? { cost: undefined, engine: null, hostParallelism: null } : costModelFrom(await readText(costPath), costPath);
    const engine: Partial<EngineLimits> = {
      ...model.engine,
      ...defined({
        maxRunning: f.int('max-running', 1),
        maxBatchTokens: f.int('max-batch-tokens', 1),
        prefillChunkTokens: f.int('prefill-chunk-tokens', 0),
      }),
    };
    const hp = f.str('host-parallelism');
    let parallelism: number | undefined;
    if (hp === 'measured') {
      if (model.hostParallelism === null)
        throw new UsageError('--host-parallelism measured needs a --cost-model file from `pdserve calibrate` that measured it');
      parallelism = model.hostParallelism;
    } else if (hp !== undefined) {
      parallelism = Number(hp);
    }
    const slo = f.num('slo-ttft');
    const pct = (f.str('capacity-percentile') ?? 'p90') as 'p50' | 'p90' | 'p99';
    let trace;
    try {
      trace = await readTrace(tracePath);
    } catch (err) {
      if (err instanceof TraceError) throw new UsageError(err.message);
      throw new UsageError(`cannot read trace ${tracePath}: ${(err as Error).message}`);
    }
    const base: SimOptions = {
      trace,
      decodeWorkers: decode,
      prefillWorkers: prefill,
      cacheTokens,
      cost: model.cost,
      engine,
      sharedHost: parallelism === undefined ? null : { parallelism },
      timeScale: f.num('time-scale'),
      blockScale: f.int('block-scale', 1),
      lengthScale: f.num('length-scale'),
      traceBlockSize: f.int('trace-block-size', 1),
      maxRequests: f.int('max-requests', 1),
      maxInputLen: f.int('max-input-len', 1),
      maxTokens: f.int('max-tokens', 1),
      sloTtftMs: slo,
    };
    const htmlReport = f.str('report');
    const bar = countBar('simulate');
    const total = policies.length * layouts.length;
    const runs: SimRun[] = [];
    for (const policy of policies) {
      for (const { storeTokens, globalPool } of layouts) {
        const opts: SimOptions = { ...base, policy, globalPool, store: storeTokens === null ? null : { capacityTokens: storeTokens } };
        const name = `${policy}, ${globalPool ? 'global pool' : storeTokens === null ? 'local caches' : `kv-store ${storeTokens.toLocaleString('en-US')} tokens`}`;
        bar.update(runs.length, total, name);
        let report: SimReport;
        try {
          // The HTML report's distributions need every request; the capacity search does not.
          report = simulate({ ...opts, recordRequests: htmlReport !== undefined });
        } catch (err) {
          if (err instanceof RangeError) throw new UsageError(err.message);
          throw err;
        }
        const capacity =
          slo === undefined ? null : findCapacity(opts, { sloTtftMs: slo, percentile: pct, iterations: f.int('capacity-iterations', 1) });
        runs.push({ name, policy, storeTokens, globalPool, report, capacity });
      }
    }
    bar.end(`${runs.length} simulation${runs.length === 1 ? '' : 's'}`);
    if (runs.length === 1) {
      process.stdout.write(formatSimReport(runs[0]!.report) + '\n');
      if (runs[0]!.capacity) process.stdout.write(formatCapacity(runs[0]!.capacity) + '\n');
    } else {
      process.stdout.write(formatRuns(runs) + '\n');
    }
    const output = f.str('output');
    if (output !== undefined) {
      // Per-request records (kept for --report) stay out of the JSON, which reads the same with or without it.
      const saved = runs.map((r) => ({ ...r, report: { ...r.report, perRequest: undefined } }));
      const file: SimulationFile = {
        version: 1,
        kind: 'pdserve-simulation',
        trace: tracePath,
        costModel: { source: costPath ?? null, cost: runs[0]!.report.config.cost },
        runs: saved,
      };
      await writeFile(output, JSON.stringify(file, null, 2) + '\n');
      process.stdout.write(`wrote ${output}\n`);
    }
    if (htmlReport !== undefined) {
      await writeFile(htmlReport, renderReportPage(simReportPage(tracePath, runs)));
      process.stdout.write(`wrote ${htmlReport}\n`);
    }
  },
};

/** One line per run: the numbers that differ between policies and cache layouts. */
export function formatRuns(runs: readonly SimRun[]): string {
  const c = runs[0]!.report.config;
  const cluster = c.prefillWorkers > 0 ? `${c.prefillWorkers} prefill + ${c.decodeWorkers} decode` : `${c.decodeWorkers} mixed`;
  const fmt = (x: number | null, d = 0): string => (x === null ? '—' : x.toFixed(d));
  const head = [
    `cluster: ${cluster} workers, cache ${c.cacheTokens.toLocaleString('en-US')} tokens/worker, block ${c.blockSize}, time ×${c.timeScale}, ${runs[0]!.report.requests} requests`,
    '',
    ['run', 'hit rate', 'local', 'fetched', 'prefill computed', 'TTFT p50', 'p90', 'p99 ms', 'TBT p50', 'p99 ms', 'capacity req/s'].join(
      ' | ',
    ),
  ];
  const rows = runs.map((r) => {
    const p = r.report.prefix;
    const t = r.report.latencyMs;
    const cap =
      r.capacity === null
        ? '—'
        : r.capacity.requestsPerSec === null
          ? 'none'
          : `${r.capacity.requestsPerSec.toFixed(2)}${r.capacity.bound === 'meets-at-fastest' ? '+' : ''}`;
    return [
      r.name,
      `${(p.hitRate * 100).toFixed(1)}%`,
      `${(p.localHitRate * 100).toFixed(1)}%`,
      `${(p.storeHitRate * 100).toFixed(1)}%`,
      p.prefillTokensComputed.toLocaleString('en-US'),
      fmt(t.ttft.p50),
      fmt(t.ttft.p90),
      fmt(t.ttft.p99),
      fmt(t.tbt.p50, 1),
      fmt(t.tbt.p99, 1),
      cap,
    ].join(' | ');
  });
  return [...head, ...rows].join('\n');
}

const policiesOf = (s: string): PolicyName[] => s.split(',').map((p) => p.trim()) as PolicyName[];

/** A token count: an integer, or with a decimal suffix (128k = 128,000; 3M = 3,000,000); undefined if not one. */
function parseTokenCount(v: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)([kKmMgG]?)$/.exec(v.trim());
  if (!m) return undefined;
  const n = Math.round(Number(m[1]) * { '': 1, k: 1e3, m: 1e6, g: 1e9 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g']);
  return n >= 1 ? n : undefined;
}

const tokenCount = (f: Flags, name: string): number | undefined => {
  const v = f.str(name);
  return v === undefined ? undefined : parseTokenCount(v);
};

function defined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${path}: ${(err as Error).message}`);
  }
}

function costModelFrom(text: string, path: string): ReturnType<typeof parseCostModel> {
  try {
    return parseCostModel(text, path);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}
