// kv-store throughput and the TTFT it buys, between two processes on this machine.
//   node --import tsx scripts/bench-kvstore.ts [--reps 5] [--warmup 15] [--blocks 1000] [--only tcp,shm,grpc] [--prompt 2048] [--ttft-reps 3 | 0] [--with-pushed]
//   node --import tsx scripts/bench-kvstore.ts --preset qwen2.5-0.5b   (a real model's blocks: the 2,048-token prefix, 48 MiB)
// The parent plays the worker; it spawns a child running a kv-store node (KvStore gRPC service, its
// transfer receiver) and a raw TCP sink (which dials us, as the tcp transport's receiver does). Put: the
// blocks through the transfer engine, the put begun by the transfer's Begin and committed as the store
// admits them (KvStoreClient.put). Get: over tcp pulled, as a worker gets (KvStoreClient.pull: the Get
// offers the blocks at the store's data port, where the parent's receiver asked for them as the Get left,
// under its own token, and they come listed, then batched), over shm and grpc pushed (the
// store sends the blocks to the parent's receiver; its reply follows, checked untimed); timed until they
// are all there, verified (not copied out), which is where a worker's get ends; with --with-pushed, over
// tcp the pushed get is timed too, in the same rounds. Then Remove, so that every round moves the bytes. Raw: the
// same bytes over a plain TCP socket, no framing or checksums, both ways: to the store (held against put)
// and from it (child to parent, as a get goes, landing in a buffer of the transfer's size as a get lands
// in its slab; held against get). Each process's CPU time per GiB is
// reported for the get and its raw copy. `--ttft-reps 0` skips the TTFT part. Blocks are the tiny model's (4 layers x 2
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
  /** The child's raw source, for the raw copy in the get's direction (store to worker). */
  readonly rawBack: string;
}

/** The parent's addresses, which the child registers as a worker's: a store takes puts from and sends gets to registered members only. */
interface ParentInfo {
  readonly grpcAddress: string;
  readonly dataAddress: string;
  /** The blocks' size and number, for the child's raw copy of as many bytes. */
  readonly blockLength: number;
  readonly blocks: number;
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
  const back = await listenRawSource();
  const info: ChildInfo = { grpcAddress: svc.grpcAddress, rawBack: back.address };
  process.stdout.write(`${JSON.stringify(info)}\n`);
  const lines = createInterface({ input: process.stdin });
  let backBlocks: { data: Uint8Array }[] = [];
  // After the parent's addresses: `raw` (copy the blocks' bytes to the parent, answering `raw-done`) and
  // `cpu` (this process's CPU time so far, in µs).
  lines.on('line', (l) => {
    if (l === 'raw') void back.connected.then((s) => rawCopy(s, backBlocks)).then(() => process.stdout.write('raw-done\n'));
    else if (l === 'cpu') {
      const u = process.cpuUsage();
      process.stdout.write(`${u.user + u.system}\n`);
    }
  });
  lines.once('line', (l) => {
    const parent = JSON.parse(l) as ParentInfo;
    backBlocks = Array.from({ length: parent.blocks }, () => ({ data: new Uint8Array(randomBytes(parent.blockLength)) }));
    const member = (id: string, grpcAddress: string) =>
      cp.registry.register({
        id,
        role: 'mixed',
        grpcAddress,
        adminAddress: '',
        model: MODEL,
        capacity: { totalBlocks: 0, blockSize: 0, maxNumSeqs: 0 },
        dataAddress: parent.dataAddress,
        incarnation: 'x',
        startedAt: Date.now(),
      });
    void member('bench-worker', parent.grpcAddress).then(() => process.stdout.write('registered\n'));
  });
  lines.on('close', () => {
    raw.destroy();
    back.server.close();
    void back.connected.then((s) => s.destroy());
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
  // The child's lines, in order: its addresses, `registered`, then one answer per command.
  const answers: ((line: string) => void)[] = [];
  childLines.on('line', (l) => answers.shift()?.(l));
  const nextLine = (): Promise<string> => new Promise((resolve) => answers.push(resolve));
  const ask = (command: string): Promise<string> => {
    const answer = nextLine();
    child.stdin.write(`${command}\n`);
    return answer;
  };
  const info = JSON.parse(await nextLine()) as ChildInfo;
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
  const blocks: KvBlock[] = Array.from({ length: count }, (_, i) => {
    const hash = (0x1000_0000 + i).toString(16).padStart(16, '0');
    return { hash, data: encodeBlock(LAYOUT, new Uint8Array(randomBytes(blockBytes(LAYOUT))), hash, LAYOUT.blockSize) };
  });
  const parentInfo: ParentInfo = {
    grpcAddress: sinkAddress,
    dataAddress: await sender.listen(),
    blockLength: blocks[0]!.data.byteLength,
    blocks: count,
  };
  await ask(JSON.stringify(parentInfo)); // `registered`
  const rawSocket = await rawSource.connected;
  const total = blocks.reduce((n, b) => n + b.data.byteLength, 0);
  let backCopied: () => void = () => undefined;
  const backSink = dialRawSink(info.rawBack, { onCopy: () => backCopied(), landBytes: total });
  const hashes = blocks.map((b) => b.hash);
  const transports = list('--only', ['tcp', 'shm', 'grpc']) as ('raw' | TransportKind)[];

  const raw = async (): Promise<number> => {
    const t0 = performance.now();
    await rawCopy(rawSocket, blocks);
    return total / ((performance.now() - t0) / 1000) / 1e9;
  };
  // The raw copy the get is held against: the same number of bytes, the same way (store to worker, the
  // worker reading with onread), timed from the parent's word to the last byte in, as a get is.
  const rawBack = async (): Promise<number> => {
    const copied = new Promise<void>((resolve) => {
      backCopied = resolve;
    });
    const t0 = performance.now();
    const done = ask('raw');
    await copied;
    const secs = (performance.now() - t0) / 1000;
    await done;
    return total / secs / 1e9;
  };
  // CPU time of each process over one operation (µs): [parent, child].
  const cpuOf = async <T>(op: () => Promise<T>): Promise<[T, number, number]> => {
    const c0 = Number(await ask('cpu'));
    const p0 = process.cpuUsage();
    const out = await op();
    const p1 = process.cpuUsage(p0);
    const c1 = Number(await ask('cpu'));
    return [out, p1.user + p1.system, c1 - c0];
  };
  const put = async (t: TransportKind): Promise<number> => {
    const t0 = performance.now();
    await store.put(sender, MODEL, blocks, { transport: t });
    return total / ((performance.now() - t0) / 1000) / 1e9;
  };
  // A get over tcp is pulled, as a worker's is (KvStoreClient.pull: the reply is the offer, our receiver
  // pulls it, the pull asked for with the Get once the store's data port is known: a worker has it from the
  // registry, we from the first reply); `push` times the store sending to our receiver instead (its Transfer
  // call, Begin, Ready, pull).
  let storeData: string | undefined;
  const get = async (t: TransportKind, push = false): Promise<number> => {
    const transferId = `bench-${randomBytes(6).toString('hex')}`;
    const arrived = new Promise<number>((resolve) => counted.set(transferId, resolve));
    const t0 = performance.now();
    const req = {
      model_id: MODEL,
      hashes,
      lease_ms: 0,
      sink: { grpc_address: sinkAddress, transfer_id: transferId, transport: t },
    };
    const reply = t === 'tcp' && !push ? store.pull(sink, req, { source: storeData }) : store.get(req);
    // Done when every block is in and verified, as for a worker (StoreLink): the reply, which follows the
    // store hearing of the admission, is checked after the clock stops (a failed get rejects it first).
    await Promise.race([reply, arrived]);
    const got = await arrived;
    const secs = (performance.now() - t0) / 1000;
    const res = await reply;
    if (res.tcp_source !== '') storeData = res.tcp_source;
    counted.delete(transferId);
    if (res.blocks !== count || got !== count) throw new Error(`get returned ${res.blocks} of ${count} blocks`);
    return total / secs / 1e9;
  };

  // One phase per transport, each with its own raw copies interleaved (raw and put, each first in turn; then
  // get; then Remove, so that every round moves the bytes): load from elsewhere on the machine hits both
  // alike, and one transport's garbage (gRPC leaves plenty) is not collected in another's timings. Warm-up rounds first: a store runs
  // warm, and both processes' JIT takes ~15 rounds to settle (put's first rounds ran at 0.2-0.6 GB/s, then
  // steadily at 1.0-1.1).
  const rows: string[][] = [
    [
      'transport',
      'raw → store GB/s',
      'put GB/s',
      'put ÷ raw',
      'raw ← store GB/s',
      'get GB/s',
      'get ÷ raw ←',
      'get pushed ÷ raw ←',
      'put min–max',
      'get min–max',
    ],
  ];
  const cpuRows: string[][] = [['operation', 'worker (parent) CPU ms/GiB', 'store (child) CPU ms/GiB']];
  const range = (xs: number[]): string => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}`;
  const perGiB = (us: number[]): string => (median(us) / 1000 / (total / 2 ** 30)).toFixed(0);
  for (const t of transports.filter((x): x is TransportKind => x !== 'raw')) {
    const xs = { raw: [] as number[], put: [] as number[], back: [] as number[], get: [] as number[], pushed: [] as number[] };
    const cpu = { back: [[], []] as number[][], get: [[], []] as number[][], pushed: [[], []] as number[][] };
    // After the put: the raw copy back and the get (with --with-pushed, over tcp also the get pushed), each first in turn.
    type After = 'back' | 'get' | 'pushed';
    const after: (readonly [After, () => Promise<[number, number, number]>])[] = [
      ['back', () => cpuOf(rawBack)],
      ['get', () => cpuOf(() => get(t))],
    ];
    // --with-pushed: over tcp also the pushed get, in the same rounds (a third operation after each put).
    if (t === 'tcp' && process.argv.includes('--with-pushed')) after.push(['pushed', () => cpuOf(() => get(t, true))]);
    for (let r = 0; r < warmup + reps; r++) {
      const [rawGbps, putGbps] = await eachFirstInTurn(r, raw, () => put(t));
      const measured: Partial<Record<After, [number, number, number]>> = {};
      for (let k = 0; k < after.length; k++) {
        const [name, op] = after[(r + k) % after.length]!;
        measured[name] = await op();
      }
      await store.remove(MODEL, hashes);
      if (r < warmup) continue;
      xs.raw.push(rawGbps);
      xs.put.push(putGbps);
      for (const [name] of after) {
        const [gbps, parentCpu, childCpu] = measured[name]!;
        xs[name].push(gbps);
        cpu[name][0]!.push(parentCpu);
        cpu[name][1]!.push(childCpu);
      }
    }
    const [r, p, rb, g] = [median(xs.raw), median(xs.put), median(xs.back), median(xs.get)];
    rows.push([
      t,
      r.toFixed(2),
      p.toFixed(2),
      (p / r).toFixed(2),
      rb.toFixed(2),
      g.toFixed(2),
      (g / rb).toFixed(2),
      xs.pushed.length === 0 ? '—' : (median(xs.pushed) / rb).toFixed(2),
      range(xs.put),
      range(xs.get),
    ]);
    cpuRows.push([`raw ← store (${t} phase)`, perGiB(cpu.back[0]!), perGiB(cpu.back[1]!)]);
    cpuRows.push([`get over ${t}${t === 'tcp' ? ' (pulled)' : ''}`, perGiB(cpu.get[0]!), perGiB(cpu.get[1]!)]);
    if (xs.pushed.length > 0) cpuRows.push(['get over tcp, pushed', perGiB(cpu.pushed[0]!), perGiB(cpu.pushed[1]!)]);
    process.stderr.write(`  ${rows.at(-1)!.join('  ')}\n`);
  }
  const report = (): void => {
    process.stdout.write(
      `\nkv-store between two processes on one host (${count} blocks of the ${MODEL} model, ${(blockBytes(LAYOUT) / 1024).toFixed(0)} KiB each, ${(total / 2 ** 20).toFixed(1)} MiB); one phase per transport, median of ${reps} rounds (a raw copy to the store and a put, each first in turn; then a raw copy from the store and a get${process.argv.includes('--with-pushed') ? ' — over tcp also a pushed get —' : ''}, each first in turn) after ${warmup} warm-up rounds.\n`,
    );
    process.stdout.write(
      "put = the blocks through the transfer engine, the put begun by its Begin and committed as the store admits them;\nget = until every block is in our receiver and verified (where a worker's get ends): over tcp pulled, as a worker gets (the pull asked for with the Get, the store listing the blocks on the data connection, its reply checked against the list; the first get pulls after the reply), over shm and grpc pushed (the store sends to our receiver; its reply follows); get pushed = the tcp get the pushed way;\nraw → / ← store = the same bytes over one plain TCP socket (no framing, no checksums), the receiving side reading with onread: → into a 1 MiB scratch buffer, ← (the get's direction, store to worker, timed from the worker's word to the last byte in) into one buffer of the transfer's size, reused, as a get lands in the receiver's pooled slab.\n\n",
    );
    process.stdout.write(`${table(rows)}\n\nCPU time per GiB moved, both processes, median over the same rounds:\n\n${table(cpuRows)}\n\n`);
  };

  // TTFT: cold vs prefix from the store (--ttft-reps 0: throughput only).
  const ttftReps = Math.max(0, arg('--ttft-reps', PRESET ? 1 : 3));
  const closeTransfers = async (): Promise<void> => {
    backSink.destroy();
    store.close();
    sender.close();
    await sink.close();
    rawSocket.destroy();
    rawSource.server.close();
    child.stdin.end();
  };
  if (ttftReps === 0) {
    report();
    await closeTransfers();
    return;
  }
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
      puller: sink,
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
  report();
  process.stdout.write(
    `TTFT, ${promptLen}-token prompt, ${MODEL} model, median of ${ttftReps}: cold ${(median(cold) * 1000).toFixed(0)} ms; prefix from the store ${(median(warm) * 1000).toFixed(0)} ms (lookup + get + verified import + ${promptLen % LAYOUT.blockSize || LAYOUT.blockSize} tokens computed); ratio ${ratio.toFixed(2)} (target <= ${PRESET ? '0.15' : '0.35'}).\n`,
  );
  process.stdout.write(
    `(${s.prefetchedTokens} tokens prefetched, ${s.prefetchRejects} rejected; ${link.stats().offloadedBlocks} blocks offloaded, ${link.stats().offloadDropped} dropped)\n`,
  );
  await engine.close();
  link.close();
  await closeTransfers();
}

if (process.argv.includes('--child')) await runChild();
else await runParent();
