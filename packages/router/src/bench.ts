// Routing benchmark: 1,000 workers, ~1,000,000 indexed blocks, chains of 64 blocks.
// Run: node --import tsx packages/router/src/bench.ts
import { performance } from 'node:perf_hooks';
import { createRng, mix32 } from './rng';
import { Router } from './router';
import { PrefixIndex } from './prefix-index';
import { LoadTracker } from './load-tracker';
import { STORE_HOLDER, type WorkerInfo } from './types';

const BLOCK_SIZE = 16;
const DECODE_WORKERS = 800;
const PREFILL_WORKERS = 200;
const SYSTEM_PROMPTS = 100;
const SYSTEM_BLOCKS = 32;
const CONVERSATIONS_PER_WORKER = 31;
const CONVERSATION_BLOCKS = 32; // unique blocks after the system prompt: 64-block chains
const WARMUP = 2_000;
const DECISIONS = 20_000;

/** Distinct 16-hex-digit hashes for distinct n < 2^32 (mix32 is a bijection). */
function hash(n: number): string {
  return (
    mix32(n).toString(16).padStart(8, '0') +
    mix32(n ^ 0x9e3779b9)
      .toString(16)
      .padStart(8, '0')
  );
}
let nextBlock = 0;
const freshBlocks = (n: number): string[] => Array.from({ length: n }, () => hash(nextBlock++));

const random = createRng(2024);
const pick = (n: number): number => Math.floor(random() * n);
const prompts = Array.from({ length: SYSTEM_PROMPTS }, () => freshBlocks(SYSTEM_BLOCKS));

const workers: WorkerInfo[] = [
  ...Array.from({ length: DECODE_WORKERS }, (_, i): WorkerInfo => ({ id: `decode-${i}`, role: 'decode' })),
  ...Array.from({ length: PREFILL_WORKERS }, (_, i): WorkerInfo => ({ id: `prefill-${i}`, role: 'prefill' })),
];
// The bench feeds the index and the load tracker directly, as the gateway feeds the router.
const index = new PrefixIndex();
const loads = new LoadTracker();
const router = new Router({ blockSize: BLOCK_SIZE, index, loads });
router.setWorkers(workers);

function reportLoad(worker: string): void {
  loads.report({
    worker,
    running: pick(32),
    waiting: pick(4),
    freeBlocks: 1000 + pick(4000),
    totalBlocks: 8192,
    queuedPrefillTokens: pick(4096),
    ts: 0,
  });
}

// Populate through the event path: every worker holds the hot prompt 0 and conversations on other prompts
// (prompt popularity skewed towards low ids); the store holds half of every fourth conversation.
const t0 = performance.now();
const conversations: string[][] = [];
let batches = 0;
index.applySnapshot(STORE_HOLDER, 's', 0, []);
let storeSeq = 0;
for (const w of workers) {
  index.applySnapshot(w.id, 'i', 0, []);
  let seq = 0;
  index.applyBatch({ worker: w.id, incarnation: 'i', seq: ++seq, events: [{ kind: 'stored', hashes: prompts[0]!, tier: 'device' }] });
  for (let c = 0; c < CONVERSATIONS_PER_WORKER; c++) {
    const p = Math.floor(SYSTEM_PROMPTS * random() * random());
    const chain = [...prompts[p]!, ...freshBlocks(CONVERSATION_BLOCKS)];
    conversations.push(chain);
    const tier = c % 3 === 0 ? 'host' : 'device';
    index.applyBatch({ worker: w.id, incarnation: 'i', seq: ++seq, events: [{ kind: 'stored', hashes: chain, tier }] });
    batches++;
    if (c % 4 === 0) {
      index.applyBatch({
        worker: STORE_HOLDER,
        incarnation: 's',
        seq: ++storeSeq,
        events: [{ kind: 'stored', hashes: chain.slice(0, SYSTEM_BLOCKS + CONVERSATION_BLOCKS / 2), tier: 'store' }],
      });
    }
  }
  reportLoad(w.id);
}
const buildMs = performance.now() - t0;

/** 50% an existing conversation, 25% the hot prompt held by every worker + new turn, 25% another prompt + new turn. */
function nextChain(): string[] {
  const r = random();
  if (r < 0.5) return conversations[pick(conversations.length)]!;
  const p = r < 0.75 ? 0 : pick(SYSTEM_PROMPTS);
  return [...prompts[p]!, ...freshBlocks(CONVERSATION_BLOCKS)];
}
const requests = Array.from({ length: WARMUP + DECISIONS }, (_, i) => ({
  requestId: `r${i}`,
  chain: nextChain(),
  promptTokens: 64 * BLOCK_SIZE + 9,
}));

// Passes over the same requests, timing each call. Wall time counts preemption by other processes on a
// busy machine; process CPU time (getrusage, µs) does not, but counts GC helper threads.
function measure(what: 'route' | 'matchPrefix', clock: 'wall' | 'cpu'): Float64Array {
  const out = new Float64Array(DECISIONS);
  for (let i = 0; i < requests.length; i++) {
    const req = requests[i]!;
    if (i % 1000 === 0) for (const w of workers) reportLoad(w.id); // as workers do every few hundred ms
    const wall = performance.now();
    const cpu = clock === 'cpu' ? process.cpuUsage() : undefined;
    if (what === 'route') router.route(req);
    else index.matchPrefix(req.chain);
    if (i < WARMUP) continue;
    if (cpu === undefined) out[i - WARMUP] = (performance.now() - wall) * 1000;
    else {
      const used = process.cpuUsage(cpu);
      out[i - WARMUP] = used.user + used.system;
    }
  }
  return out;
}
const passes: [string, Float64Array][] = [
  ['route, wall', measure('route', 'wall')],
  ['route, wall', measure('route', 'wall')],
  ['route, cpu', measure('route', 'cpu')],
  ['route, cpu', measure('route', 'cpu')],
  ['matchPrefix, wall', measure('matchPrefix', 'wall')],
];

const pct = (xs: Float64Array, q: number): string => {
  const s = Float64Array.from(xs).sort();
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!.toFixed(1);
};
const size = index.size();
const stats = router.stats();
const line = (label: string, xs: Float64Array): string =>
  `  ${label.padEnd(17)} p50 ${pct(xs, 0.5)} µs  p90 ${pct(xs, 0.9)} µs  p99 ${pct(xs, 0.99)} µs  p99.9 ${pct(xs, 0.999)} µs  max ${pct(xs, 1)} µs`;
const lines = [
  `index: ${size.blocks.toLocaleString()} blocks, ${size.holders} holders, built from ${batches.toLocaleString()} batches in ${buildMs.toFixed(0)} ms; heap ${(process.memoryUsage().heapUsed / 2 ** 20).toFixed(0)} MiB`,
  `route() over ${DECODE_WORKERS} decode + ${PREFILL_WORKERS} prefill candidates, 64-block chains, ${DECISIONS.toLocaleString()} decisions per pass:`,
  ...passes.map(([label, xs]) => line(label, xs)),
  `  prefix hit ${(stats.prefixMatchedBlocks / stats.prefixRequestedBlocks).toFixed(3)}, remote prefill ${stats.byPrefill.remote}, local ${stats.byPrefill.local}`,
];
process.stdout.write(lines.join('\n') + '\n');
