// kv-store throughput and the TTFT it buys, between two processes on this machine.
//   node --import tsx scripts/bench-kvstore.ts [--reps 5] [--warmup 15] [--blocks 1000] [--only tcp,shm,grpc] [--prompt 2048] [--ttft-reps 3]
//   node --import tsx scripts/bench-kvstore.ts --preset qwen2.5-0.5b   (a real model's blocks: the 2,048-token prefix, 48 MiB)
// The parent plays the worker; it spawns a child running a kv-store node (KvStore gRPC service, its
// transfer receiver) and a raw TCP sink (which dials us, as the tcp transport's receiver does). Put: the
// blocks through the transfer engine, the put begun by the transfer's Begin and committed as the store
// admits them (KvStoreClient.put). Get: the store sends the blocks to the parent's transfer receiver,
// timed until they are all there, verified (not copied out), which is where a worker's get ends (the Get
// reply follows; it is checked, untimed); then Remove, so that every round moves the bytes. Raw: the
// same bytes over a plain TCP socket, no framing or checksums. Blocks are the tiny model's (4 layers x 2
// KV heads x 32 dims x 16 tokens, 32 KiB + a 40-byte header), or with --preset that model's (qwen2.5-0.5b:
// 24 layers x 2 KV heads x 64 dims x 16 tokens, 384 KiB; by default as many as --prompt's prefix fills).
// TTFT: a prompt computed cold versus the same prompt whose prefix comes back from the store (lookup, get,
// verified import, then the last tokens computed), on the same engine with its cache emptied.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { connectControlPlane, InProcessHub, silentLogger, type Membership, type ServiceRecord } from '@pdserve/control-plane';
import { LLMEngine } from '@pdserve/engine';
import { blockBytes, encodeBlock, type KvLayout } from '@pdserve/kv-cache';
import { KvStoreClient, startKvStoreService } from '@pdserve/kv-store';
import { ensureTinyModel, loadModelSpec, PRESETS, samplingParams, type PresetName } from '@pdserve/model';
import { TransferReceiver, TransferSender, type IncomingTransfer, type KvBlock, type TransportKind } from '@pdserve/transfer';
import { StoreLink } from '@pdserve/worker';
import { arg, dialRawSink, list, listenRawSource, rawCopy } from './lib/raw-tcp';
import { eachFirstInTurn, median, randomTokens } from './lib/stats';

const BLOCK_SIZE = 16;
const PRESET = (() => {
  const at = process.argv.indexOf('--preset');
  if (at < 0) return undefined;
  const name = process.argv[at + 1] ?? '';
  if (!(name in PRESETS)) throw new Error(`--preset: unknown ${name} (known: ${Object.keys(PRESETS).join(', ')})`);
  return name as PresetName;
})();
const MODEL = PRESET ?? 'tiny';
// The model (built once into the cache; a preset's first build takes minutes) and its KV block layout.
const MODEL_DIR = await ensureTinyModel(PRESET ? { preset: PRESET } : {});
const SPEC = loadModelSpec(MODEL_DIR, MODEL);
const LAYOUT: KvLayout = { numLayers: SPEC.numLayers, numKvHeads: SPEC.numKvHeads, headDim: SPEC.headDim, blockSize: BLOCK_SIZE };

interface ChildInfo {
  readonly grpcAddress: string;
}

/** The parent's addresses, which the child registers as a worker's: a store takes puts from and sends gets to registered members only. */
interface ParentInfo {
  readonly grpcAddress: string;
  readonly dataAddress: string;
}

async function runChild(): Promise<void> {
  const cp = await connectControlPlane({ cluster: 'bench', hub: new InProcessHub(), logger: silentLogger });
  const svc = await startKvStoreService({
    nodeId: 'bench-store',
    controlPlane: cp,
    logger: silentLogger,
    memoryBytes: 512 * 1024 * 1024,
    models: [{ id: MODEL, layout: LAYOUT }],
  });
  const raw = dialRawSink(process.argv[process.argv.indexOf('--raw-source') + 1] ?? '');
  const info: ChildInfo = { grpcAddress: svc.grpcAddress };
  process.stdout.write(`${JSON.stringify(info)}\n`);
  const lines = createInterface({ input: process.stdin });
  lines.once('line', (l) => {
    const parent = JSON.parse(l) as ParentInfo;
    void cp.registry
      .register({
        id: 'bench-worker',
        role: 'mixed',
        grpcAddress: parent.grpcAddress,
        adminAddress: '',
        model: MODEL,
        capacity: { totalBlocks: 0, blockSize: 0, maxNumSeqs: 0 },
        dataAddress: parent.dataAddress,
        incarnation: 'x',
        startedAt: Date.now(),
      })
      .then(() => process.stdout.write('registered\n'));
  });
  lines.on('close', () => {
    raw.destroy();
    void svc
      .close()
      .then(() => cp.close())
      .then(() => process.exit(0));
  });
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(3, ...rows.map((r) => (r[c] ?? '').length)));
  const line = (r: string[]): string => `| ${r.map((cell, c) => cell.padEnd(widths[c]!)).join(' | ')} |`;
  return [line(rows[0]!), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...rows.slice(1).map(line)].join('\n');
}

async function runParent(): Promise<void> {
  const reps = Math.max(3, arg('--reps', 5));
  const warmup = Math.max(1, arg('--warmup', 15));
  const promptLen = arg('--prompt', 2048);
  const count = arg('--blocks', PRESET ? Math.floor(promptLen / LAYOUT.blockSize) : 1000);
  const rawSource = await listenRawSource();
  const child = spawn(
    process.execPath,
    [
      ...process.execArgv,
      fileURLToPath(import.meta.url),
      '--child',
      '--raw-source',
      rawSource.address,
      ...(PRESET ? ['--preset', PRESET] : []),
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const childLines = createInterface({ input: child.stdout });
  const info = await new Promise<ChildInfo>((resolve) => childLines.once('line', (l) => resolve(JSON.parse(l) as ChildInfo)));
  const store = new KvStoreClient(info.grpcAddress);
  const sender = new TransferSender();
  // Get throughput ends when the blocks are in our receiver, verified (`counted`); the TTFT run's store
  // link gets copies to import, as a worker's does (`waiting`).
  const counted = new Map<string, (blocks: number) => void>();
  const waiting = new Map<string, (blocks: KvBlock[]) => void>();
  const sink = await TransferReceiver.start({
    onTransfer: (t: IncomingTransfer) => {
      counted.get(t.transferId)?.(t.blocks.length);
      waiting.get(t.transferId)?.(t.blocks.map((b) => ({ hash: b.hash, data: b.data.slice(), checksum: b.checksum })));
    },
  });
  const sinkAddress = await sink.serveGrpc('127.0.0.1', 0);
  const registered = new Promise((resolve) => childLines.once('line', resolve));
  child.stdin.write(`${JSON.stringify({ grpcAddress: sinkAddress, dataAddress: await sender.listen() } satisfies ParentInfo)}\n`);
  await registered;
  const rawSocket = await rawSource.connected;

  const blocks: KvBlock[] = Array.from({ length: count }, (_, i) => {
    const hash = (0x1000_0000 + i).toString(16).padStart(16, '0');
    return { hash, data: encodeBlock(LAYOUT, new Uint8Array(randomBytes(blockBytes(LAYOUT))), hash, LAYOUT.blockSize) };
  });
  const hashes = blocks.map((b) => b.hash);
  const total = blocks.reduce((n, b) => n + b.data.byteLength, 0);
  const transports = list('--only', ['tcp', 'shm', 'grpc']) as ('raw' | TransportKind)[];

  const raw = async (): Promise<number> => {
    const t0 = performance.now();
    await rawCopy(rawSocket, blocks);
    return total / ((performance.now() - t0) / 1000) / 1e9;
  };
  const put = async (t: TransportKind): Promise<number> => {
    const t0 = performance.now();
    await store.put(sender, MODEL, blocks, { transport: t });
    return total / ((performance.now() - t0) / 1000) / 1e9;
  };
  const get = async (t: TransportKind): Promise<number> => {
    const transferId = `bench-${randomBytes(6).toString('hex')}`;
    const arrived = new Promise<number>((resolve) => counted.set(transferId, resolve));
    const t0 = performance.now();
    const reply = store.get({
      model_id: MODEL,
      hashes,
      lease_ms: 0,
      sink: { grpc_address: sinkAddress, transfer_id: transferId, transport: t },
    });
    // Done when every block is in and verified, as for a worker (StoreLink): the reply, which follows the
    // store hearing of the admission, is checked after the clock stops (a failed get rejects it first).
    await Promise.race([reply, arrived]);
    const got = await arrived;
    const secs = (performance.now() - t0) / 1000;
    const res = await reply;
    counted.delete(transferId);
    if (res.blocks !== count || got !== count) throw new Error(`get returned ${res.blocks} of ${count} blocks`);
    return total / secs / 1e9;
  };

  // One phase per transport, each with its own raw copies interleaved (raw and put, each first in turn; then
  // get; then Remove, so that every round moves the bytes): load from elsewhere on the machine hits both
  // alike, and one transport's garbage (gRPC leaves plenty) is not collected in another's timings. Warm-up rounds first: a store runs
  // warm, and both processes' JIT takes ~15 rounds to settle (put's first rounds ran at 0.2-0.6 GB/s, then
  // steadily at 1.0-1.1).
  const rows: string[][] = [['transport', 'raw copy GB/s', 'put GB/s', 'put ÷ raw', 'get GB/s', 'get ÷ raw', 'put min–max', 'get min–max']];
  const range = (xs: number[]): string => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}`;
  for (const t of transports.filter((x): x is TransportKind => x !== 'raw')) {
    const xs = { raw: [] as number[], put: [] as number[], get: [] as number[] };
    for (let r = 0; r < warmup + reps; r++) {
      const [rawGbps, putGbps] = await eachFirstInTurn(r, raw, () => put(t));
      const round = { raw: rawGbps, put: putGbps, get: await get(t) };
      await store.remove(MODEL, hashes);
      if (r >= warmup) for (const k of ['raw', 'put', 'get'] as const) xs[k].push(round[k]);
    }
    const [r, p, g] = [median(xs.raw), median(xs.put), median(xs.get)];
    rows.push([t, r.toFixed(2), p.toFixed(2), (p / r).toFixed(2), g.toFixed(2), (g / r).toFixed(2), range(xs.put), range(xs.get)]);
    process.stderr.write(`  ${rows.at(-1)!.join('  ')}\n`);
  }

  // TTFT: cold vs prefix from the store.
  const ttftReps = Math.max(1, arg('--ttft-reps', PRESET ? 1 : 3));
  const engine = await LLMEngine.create({ modelDir: MODEL_DIR, modelId: MODEL, blockSize: LAYOUT.blockSize, maxModelLen: promptLen + 16 });
  const record0: ServiceRecord = {
    id: 'bench-store',
    role: 'kv-store',
    grpcAddress: info.grpcAddress,
    adminAddress: '',
    model: MODEL,
    capacity: { totalBlocks: 0, blockSize: 0, maxNumSeqs: 0 },
    incarnation: 'x',
    startedAt: Date.now(),
  };
  const membership: Membership = {
    snapshot: () => new Map([[record0.id, record0]]),
    synced: true,
    onChange: () => () => undefined,
    refresh: async () => undefined,
    close: () => undefined,
  };
  let nextId = 0;
  const link = new StoreLink(
    engine,
    membership,
    sender,
    {
      address: () => sinkAddress,
      expect: (id) => {
        const arrived = new Promise<KvBlock[]>((resolve) => waiting.set(id, resolve));
        return { arrived, done: () => waiting.delete(id) };
      },
    },
    silentLogger,
    { maxQueuedBlocks: 4096, batchBlocks: 256 },
  );
  engine.offload(link);
  const firstToken = async (ids: number[], prefetch: boolean): Promise<number> => {
    const t0 = performance.now();
    const prefetched = prefetch ? await link.prefetch(ids) : undefined;
    for await (const o of engine.generate({
      requestId: `t${nextId++}`,
      promptTokenIds: ids,
      sampling: samplingParams({ temperature: 0, maxTokens: 1 }),
      prefetched,
    })) {
      if (o.tokenIds.length > 0) break;
    }
    return (performance.now() - t0) / 1000;
  };
  await firstToken(randomTokens(promptLen, 999), false); // warm-up
  engine.pool.evictFree();
  await link.flushed();
  const cold: number[] = [];
  const warm: number[] = [];
  for (let r = 0; r < ttftReps; r++) {
    const ids = [1, ...randomTokens(promptLen - 1, r + 1, Math.min(32000, SPEC.vocabSize))];
    cold.push(await firstToken(ids, false));
    engine.pool.evictFree(); // the prefix leaves this engine for the store
    await link.flushed();
    warm.push(await firstToken(ids, true));
    engine.pool.evictFree();
    await link.flushed();
  }
  const s = engine.stats();
  const ratio = median(warm) / median(cold);
  process.stdout.write(
    `\nkv-store between two processes on one host (${count} blocks of the ${MODEL} model, ${(blockBytes(LAYOUT) / 1024).toFixed(0)} KiB each, ${(total / 2 ** 20).toFixed(1)} MiB); one phase per transport, median of ${reps} rounds (a raw copy and a put, each first in turn, then a get) after ${warmup} warm-up rounds.\n`,
  );
  process.stdout.write(
    "put = the blocks through the transfer engine, the put begun by its Begin and committed as the store admits them;\nget = Get with the store sending to our receiver, until every block is there and verified (where a worker's get ends; the reply follows);\nraw copy = the same bytes over one plain TCP socket (no framing, no checksums).\n\n",
  );
  process.stdout.write(`${table(rows)}\n\n`);
  process.stdout.write(
    `TTFT, ${promptLen}-token prompt, ${MODEL} model, median of ${ttftReps}: cold ${(median(cold) * 1000).toFixed(0)} ms; prefix from the store ${(median(warm) * 1000).toFixed(0)} ms (lookup + get + verified import + ${promptLen % LAYOUT.blockSize || LAYOUT.blockSize} tokens computed); ratio ${ratio.toFixed(2)} (target <= ${PRESET ? '0.15' : '0.35'}).\n`,
  );
  process.stdout.write(
    `(${s.prefetchedTokens} tokens prefetched, ${s.prefetchRejects} rejected; ${link.stats().offloadedBlocks} blocks offloaded, ${link.stats().offloadDropped} dropped)\n`,
  );
  await engine.close();
  link.close();
  store.close();
  sender.close();
  await sink.close();
  rawSocket.destroy();
  rawSource.server.close();
  child.stdin.end();
}

if (process.argv.includes('--child')) await runChild();
else await runParent();
