import { readFile, writeFile } from 'node:fs/promises';
import { parseKeyFile } from '@pdserve/api';
import { basename } from 'node:path';
import {
  benchReportPage,
  compareReports,
  formatReport,
  renderReportPage,
  runBench,
  TraceError,
  type BenchOptions,
  type BenchReport,
  type Endpoint,
  type LabelledBenchReport,
  type WorkloadSpec,
} from '@pdserve/bench';
import { Flags, int, num, oneOf, url as urlOf, UsageError, type CommandSpec, type FlagValue } from '../args';
import { countBar } from '../progress';

// Checked with the flags (parseFlags), before anything is sent; run() only converts them (workloadOf, rateOf, ...).
const WORKLOADS = ['shared-prefix', 'multi-turn', 'random'] as const;
const WORKLOAD: FlagValue = {
  kind: 'custom',
  placeholder: 'NAME|trace:FILE',
  check: (w) =>
    (WORKLOADS as readonly string[]).includes(w) || /^trace:./.test(w)
      ? undefined
      : 'must be shared-prefix, multi-turn, random or trace:FILE',
};
const RATE: FlagValue = {
  kind: 'custom',
  placeholder: 'R|inf',
  check: (r) => (r === 'inf' || Number(r) > 0 ? undefined : 'must be a positive number or inf'),
};
const JSON_OBJECT: FlagValue = {
  kind: 'custom',
  placeholder: 'JSON',
  check: (s) => (isObject(parseJson(s)) ? undefined : 'must be a JSON object'),
};

export const benchCommand: CommandSpec = {
  name: 'bench',
  summary: 'Benchmark an OpenAI-compatible server (pdserve or not): synthetic workloads or trace replay; TTFT, TPOT, ITL, goodput.',
  usage:
    'bench --url URL [--model ID] [--workload shared-prefix|multi-turn|random|trace:FILE] [--rate R | --concurrency C] [--requests N | --duration S] [--slo-ttft MS] [--output FILE.json] [--report FILE.html]\n' +
    '       pdserve bench --compare A.json B.json [--report FILE.html]',
  positionals: true,
  flags: {
    url: {
      type: 'string',
      help: 'base URL of the server, e.g. http://127.0.0.1:8000 (a trailing /v1 is fine)',
      value: urlOf('http:', 'https:'),
    },
    model: { type: 'string', help: 'model id to send (default: the first one /v1/models lists)' },
    workload: {
      type: 'string',
      help: 'shared-prefix, multi-turn, random, or trace:FILE (Mooncake trace format)',
      default: 'random',
      value: WORKLOAD,
    },
    endpoint: {
      type: 'string',
      help: 'completions (token-id prompts, exact lengths) or chat (text prompts)',
      default: 'completions',
      value: oneOf('completions', 'chat'),
    },
    rate: {
      type: 'string',
      help: 'requests per second, Poisson arrivals; inf = all at once (default: trace timestamps, or all at once)',
      value: RATE,
    },
    concurrency: { type: 'string', help: 'most requests in flight (alone: a closed loop)', value: int(1) },
    requests: { type: 'string', help: 'requests to send (default: 100, or the whole trace)', value: int(1) },
    duration: { type: 'string', help: 'stop sending after this many seconds', value: num({ above: 0 }) },
    seed: { type: 'string', help: 'seeds prompts, lengths and arrivals', default: '0', value: int(0) },
    'slo-ttft': { type: 'string', help: 'goodput counts requests with TTFT ≤ this (ms)', value: num({ above: 0 }) },
    'slo-tpot': { type: 'string', help: 'goodput counts requests with TPOT ≤ this (ms)', value: num({ above: 0 }) },
    output: { type: 'string', help: 'write the full report (every request) as JSON' },
    report: {
      type: 'string',
      help: 'write a self-contained HTML report (TTFT/ITL distributions, throughput over time, hit rate); with --compare: both runs overlaid',
    },
    'input-len': {
      type: 'string',
      help: 'random: mean prompt tokens; shared-prefix: unique suffix; multi-turn: tokens per user turn',
      value: int(1),
    },
    'max-tokens': {
      type: 'string',
      help: 'max_tokens per request (random: the mean); traces: a cap on scaled output lengths',
      value: int(1),
    },
    'prefix-len': { type: 'string', help: 'shared-prefix / multi-turn: system prompt tokens', value: int(0) },
    'num-prefixes': { type: 'string', help: 'shared-prefix / multi-turn: distinct system prompts', value: int(1) },
    sessions: { type: 'string', help: 'multi-turn: sessions in flight together', value: int(1) },
    turns: { type: 'string', help: 'multi-turn: turns per session', value: int(1) },
    'range-ratio': { type: 'string', help: 'random: lengths uniform in [len × (1 − r), len × (1 + r)]', value: num({ min: 0 }) },
    'time-scale': { type: 'string', help: 'trace: arrival times × this (0.1 = 10× faster)', value: num({ above: 0 }) },
    'block-scale': {
      type: 'string',
      help: 'trace: tokens per hash-id block in the replay (prompts scale by it / 512, sharing kept)',
      value: int(1),
    },
    'length-scale': { type: 'string', help: 'trace: output lengths × this', value: num({ above: 0 }) },
    'max-input-len': { type: 'string', help: 'trace: cut prompts to this many tokens (a prefix, so sharing is kept)', value: int(1) },
    'trace-block-size': { type: 'string', help: 'trace: tokens per hash id in the file', default: '512', value: int(1) },
    'ignore-eos': { type: 'boolean', help: 'send ignore_eos so that every request generates max_tokens (pdserve and vLLM)' },
    'text-prompts': {
      type: 'boolean',
      help: 'completions: send prompts as text instead of token ids (for servers without token-id prompts)',
    },
    temperature: { type: 'string', help: 'sampling temperature', default: '0', value: num({ min: 0 }) },
    'extra-body': { type: 'string', help: 'JSON object merged into every request body, e.g. {"top_k": 5}', value: JSON_OBJECT },
    'api-key': { type: 'string', help: 'sent as Authorization: Bearer …; never written to the report' },
    'api-key-file': { type: 'string', help: 'the first key of a key file (one per line, # comments skipped), as --api-key' },
    timeout: { type: 'string', help: 'per-request timeout, seconds', default: '600', value: num({ above: 0 }) },
    compare: { type: 'string', help: 'with a second file after it: print two saved reports side by side with ratios' },
  },
  check(f) {
    if (f.str('compare') !== undefined) {
      if (f.positionals.length !== 1) throw new UsageError('--compare takes two report files: --compare A.json B.json');
      return;
    }
    if (f.positionals.length > 0) throw new UsageError(`unexpected argument "${f.positionals[0]}" (see: pdserve bench --help)`);
    f.required('url');
  },
  async run(f: Flags) {
    const compare = f.str('compare');
    if (compare !== undefined) {
      const [a, b] = await Promise.all([readReport(compare), readReport(f.positionals[0]!)]);
      process.stdout.write(compareReports(a, b) + '\n');
      await writeHtmlReport(f.str('report'), [
        { label: `A: ${basename(compare)}`, report: a },
        { label: `B: ${basename(f.positionals[0]!)}`, report: b },
      ]);
      return;
    }
    const url = f.required('url');
    const apiKey = await apiKeyOf(f);
    const model = f.str('model') ?? (await firstModel(url, apiKey));
    const opts: BenchOptions = {
      url,
      model,
      workload: workloadOf(f.str('workload') ?? 'random'),
      endpoint: endpointOf(f.str('endpoint') ?? 'completions'),
      tokenIds: f.bool('text-prompts') ? false : undefined,
      rate: rateOf(f.str('rate')),
      concurrency: f.int('concurrency', 1),
      requests: f.int('requests', 1),
      durationSec: f.num('duration'),
      seed: f.int('seed', 0),
      sloTtftMs: f.num('slo-ttft'),
      sloTpotMs: f.num('slo-tpot'),
      inputLen: f.int('input-len', 1),
      maxTokens: f.int('max-tokens', 1),
      prefixLen: f.int('prefix-len', 0),
      numPrefixes: f.int('num-prefixes', 1),
      sessions: f.int('sessions', 1),
      turns: f.int('turns', 1),
      rangeRatio: f.num('range-ratio'),
      timeScale: f.num('time-scale'),
      blockScale: f.int('block-scale', 1),
      lengthScale: f.num('length-scale'),
      maxInputLen: f.int('max-input-len', 1),
      traceBlockSize: f.int('trace-block-size', 1),
      ignoreEos: f.bool('ignore-eos'),
      temperature: f.num('temperature'),
      extraBody: extraBodyOf(f.str('extra-body')),
      apiKey,
      requestTimeoutSec: f.num('timeout'),
    };
    const abort = new AbortController();
    const onSignal = (): void => abort.abort();
    process.once('SIGINT', onSignal);
    const bar = countBar('bench');
    let report: BenchReport;
    try {
      report = await runBench({ ...opts, signal: abort.signal }, (p) => {
        const until = p.durationSec !== undefined ? ` of ${p.durationSec} s` : '';
        bar.update(p.done, p.total, `${p.failed} failed, ${p.inFlight} in flight, ${p.elapsedSec.toFixed(1)} s${until}`);
      });
    } catch (err) {
      // Bad options and bad trace files are the user's to fix: one line, exit code 2.
      if (err instanceof RangeError || err instanceof TraceError) throw new UsageError(err.message);
      throw err;
    } finally {
      process.removeListener('SIGINT', onSignal);
    }
    bar.end(`${report.counts.completed} completed, ${report.counts.failed} failed in ${report.durationSec.toFixed(1)} s`);
    process.stdout.write(formatReport(report) + '\n');
    const output = f.str('output');
    if (output !== undefined) {
      await writeFile(output, JSON.stringify(report, null, 2) + '\n');
      process.stdout.write(`wrote ${output}\n`);
    }
    await writeHtmlReport(f.str('report'), [{ label: output === undefined ? 'this run' : basename(output), report }]);
    // Scripts can tell a run where nothing worked (server down, wrong model) from a slow one.
    if (report.counts.sent > 0 && report.counts.completed === 0) {
      throw new Error(`no request completed (first error: ${report.requests[0]?.error ?? 'unknown'})`);
    }
  },
};

async function writeHtmlReport(path: string | undefined, runs: readonly LabelledBenchReport[]): Promise<void> {
  if (path === undefined) return;
  await writeFile(path, renderReportPage(benchReportPage(runs)));
  process.stdout.write(`wrote ${path}\n`);
}

function parseJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function workloadOf(w: string): WorkloadSpec {
  return w.startsWith('trace:') ? { trace: w.slice('trace:'.length) } : (w as (typeof WORKLOADS)[number]);
}

const endpointOf = (e: string): Endpoint => e as Endpoint;

const rateOf = (r: string | undefined): number | undefined =>
  r === undefined ? undefined : r === 'inf' ? Number.POSITIVE_INFINITY : Number(r);

const extraBodyOf = (s: string | undefined): BenchOptions['extraBody'] =>
  s === undefined ? undefined : (JSON.parse(s) as BenchOptions['extraBody']);

/** The first model id the server lists at /v1/models. */
/** --api-key, else the first key of --api-key-file. */
async function apiKeyOf(f: Flags): Promise<string | undefined> {
  const file = f.str('api-key-file');
  if (f.str('api-key') !== undefined || file === undefined) return f.str('api-key');
  const key = parseKeyFile(await readFile(file, 'utf8'))[0];
  if (key === undefined) throw new UsageError(`--api-key-file ${file} holds no key`);
  return key;
}

async function firstModel(url: string, apiKey: string | undefined): Promise<string> {
  const root = url.replace(/\/+$/, '').replace(/\/v1$/, '');
  let body: unknown;
  try {
    const res = await fetch(`${root}/v1/models`, {
      signal: AbortSignal.timeout(10_000),
      headers: apiKey === undefined ? {} : { authorization: `Bearer ${apiKey}` },
    });
    body = await res.json();
  } catch (err) {
    throw new Error(`could not list models at ${root}/v1/models (${(err as Error).message}); pass --model`);
  }
  const data = (body as { data?: { id?: unknown }[] } | null)?.data;
  const id = Array.isArray(data) ? data[0]?.id : undefined;
  if (typeof id !== 'string') throw new Error(`${root}/v1/models lists no model; pass --model`);
  return id;
}

async function readReport(path: string): Promise<BenchReport> {
  let v: unknown;
  try {
    v = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new UsageError(`cannot read report ${path}: ${(err as Error).message}`);
  }
  const r = v as Partial<BenchReport> | null;
  if (r === null || typeof r !== 'object' || r.version !== 1 || r.counts === undefined || r.latencyMs === undefined) {
    throw new UsageError(`${path} is not a pdserve bench report (written by bench --output)`);
  }
  return r as BenchReport;
}
