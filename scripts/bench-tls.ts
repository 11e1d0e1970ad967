// What mTLS inside the cluster costs: the tcp data plane's GB/s and a remote prefill's TTFT, TLS on ÷ off.
//   node --import tsx scripts/bench-tls.ts [--only transfer,ttft] [--reps 7] [--warmup 10] [--blocks 1000] [--sizes 32768,1048576] [--requests 12] [--prompt 512]
// Transfer: the parent sends, a child process receives, over two receivers side by side (plaintext, and mTLS
// with a throwaway CA); the two take turns round by round (each first in turn), so load from elsewhere hits
// both alike. CPU = process CPU time per GiB moved, sender and receiver: where TLS's cost goes.
// TTFT: two in-process clusters of a prefill and a decode worker (one with mTLS, one without) on the tiny
// model; a pushed handoff as the gateway runs it, timed to the first token (the prefill's) and to the second
// (the decode worker's, once the KV arrived over the tcp data plane and was imported).
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { connectControlPlane, InProcessHub, silentLogger } from '@pdserve/control-plane';
import { blockCrc32, encodeBlock, type KvLayout } from '@pdserve/kv-cache';
import { ensureTinyModel, samplingParams } from '@pdserve/model';
import { makeThrowawayCa, readTlsDir, type TlsMaterial } from '@pdserve/rpc';
import { TransferReceiver, TransferSender, type KvBlock, type TransferAdvertisement } from '@pdserve/transfer';
import { samplingToWire, startWorkerService, WorkerClient, type WorkerService } from '@pdserve/worker';
import { startLineChild } from './lib/child';
import { arg, list } from './lib/raw-tcp';
import { eachFirstInTurn, median, randomTokens } from './lib/stats';

const GiB = 1024 * 1024 * 1024;
type Mode = 'plain' | 'tls';

interface ReceiverInfo {
  readonly plain: { grpcAddress: string; advertisement: TransferAdvertisement };
  readonly tls: { grpcAddress: string; advertisement: TransferAdvertisement };
}

async function runReceiver(tlsDir: string): Promise<void> {
  const tls = readTlsDir(tlsDir);
  const start = async (material: TlsMaterial | undefined) => {
    const rx = await TransferReceiver.start({
      transports: ['tcp'],
      tls: material,
      slabPoolBytes: 2 * GiB,
      limits: { maxTransferBytes: 2 * GiB, maxPendingBytes: 4 * GiB, maxPendingBytesPerPeer: 4 * GiB, maxBlocks: 100_000 },
      onTransfer: () => undefined, // moving bytes, not storing them
    });
    return { rx, info: { grpcAddress: await rx.serveGrpc('127.0.0.1', 0), advertisement: rx.advertisement() } };
  };
  const [plain, secure] = [await start(undefined), await start(tls)];
  process.stdout.write(`${JSON.stringify({ plain: plain.info, tls: secure.info } satisfies ReceiverInfo)}\n`);
  const lines = createInterface({ input: process.stdin });
  lines.on('line', () => {
    const u = process.cpuUsage();
    process.stdout.write(`${u.user + u.system}\n`);
  });
  lines.on('close', () => void Promise.all([plain.rx.close(), secure.rx.close()]).then(() => process.exit(0)));
}

interface Sample {
  readonly gbps: number;
  readonly txCpu: number;
  readonly rxCpu: number;
}

async function transferBench(tlsDir: string, tls: TlsMaterial): Promise<string[][]> {
  const reps = Math.max(3, arg('--reps', 7));
  const warmup = Math.max(1, arg('--warmup', 10));
  const count = arg('--blocks', 1000);
  const child = await startLineChild<ReceiverInfo>(fileURLToPath(import.meta.url), ['--receiver', tlsDir]);
  const { info } = child;
  const childCpu = (): Promise<number> => child.cpu();
  const ownCpu = (): number => child.ownCpu();
  const senders = { plain: new TransferSender(), tls: new TransferSender({ tls }) };
  const rows: string[][] = [['block', 'MiB', 'mode', 'GB/s median', 'min–max', 'TLS ÷ plain', 'CPU ms/GiB tx', 'rx']];
  for (const blockBytes of list('--sizes', ['32768', '1048576']).map(Number)) {
    const layout: KvLayout = { numLayers: blockBytes / 8192, numKvHeads: 2, headDim: 32, blockSize: 16 };
    const blocks: KvBlock[] = Array.from({ length: count }, (_, i) => {
      const hash = i.toString(16).padStart(16, '0');
      const data = encodeBlock(layout, new Uint8Array(randomBytes(blockBytes)), hash, layout.blockSize);
      return { hash, data, checksum: blockCrc32(data) };
    });
    const total = blocks.reduce((n, b) => n + b.data.byteLength, 0);
    const once = async (mode: Mode): Promise<Sample> => {
      const rx0 = await childCpu();
      const tx0 = ownCpu();
      const t0 = performance.now();
      await senders[mode].send({ peer: info[mode], transport: 'tcp', blocks, deadlineMs: 120_000 });
      const secs = (performance.now() - t0) / 1000;
      const tx1 = ownCpu();
      const rx1 = await childCpu();
      const perGiB = GiB / total / 1000;
      return { gbps: total / secs / 1e9, txCpu: (tx1 - tx0) * perGiB, rxCpu: (rx1 - rx0) * perGiB };
    };
    const samples: Record<Mode, Sample[]> = { plain: [], tls: [] };
    for (let r = 0; r < warmup + reps; r++) {
      const [p, t] = await eachFirstInTurn(
        r,
        () => once('plain'),
        () => once('tls'),
      );
      if (r >= warmup) {
        samples.plain.push(p);
        samples.tls.push(t);
      }
    }
    const plainMedian = median(samples.plain.map((s) => s.gbps));
    const size = blockBytes >= 1024 * 1024 ? `${blockBytes / 1024 / 1024} MiB` : `${blockBytes / 1024} KiB`;
    for (const mode of ['plain', 'tls'] as const) {
      const xs = samples[mode];
      const rates = xs.map((x) => x.gbps);
      rows.push([
        size,
        (total / 1024 / 1024).toFixed(0),
        mode,
        median(rates).toFixed(2),
        `${Math.min(...rates).toFixed(2)}–${Math.max(...rates).toFixed(2)}`,
        (median(rates) / plainMedian).toFixed(2),
        median(xs.map((x) => x.txCpu)).toFixed(0),
        median(xs.map((x) => x.rxCpu)).toFixed(0),
      ]);
    }
    process.stderr.write(`  ${rows.at(-2)!.join('  ')}\n  ${rows.at(-1)!.join('  ')}\n`);
  }
  senders.plain.close();
  senders.tls.close();
  child.process.stdin?.end();
  return rows;
}

async function ttftBench(tls: TlsMaterial): Promise<string[][]> {
  const requests = arg('--requests', 12);
  const promptTokens = arg('--prompt', 512);
  const dir = await ensureTinyModel();
  const engine = { modelDir: dir, modelId: 'tiny', kvCacheBytes: 64 * 1024 * 1024 };
  const clusters: Record<Mode, { prefill: WorkerService; decode: WorkerService; client: WorkerClient; close: () => Promise<void> }> =
    {} as never;
  for (const mode of ['plain', 'tls'] as const) {
    const material = mode === 'tls' ? tls : undefined;
    const cp = await connectControlPlane({ cluster: `bench-${mode}`, hub: new InProcessHub(), logger: silentLogger });
    const prefill = await startWorkerService({
      role: 'prefill',
      instanceId: `p-${mode}`,
      engine,
      controlPlane: cp,
      logger: silentLogger,
      tls: material,
      kvStore: undefined,
    });
    const decode = await startWorkerService({
      role: 'decode',
      instanceId: `d-${mode}`,
      engine,
      controlPlane: cp,
      logger: silentLogger,
      transports: ['tcp'],
      tls: material,
    });
    const client = new WorkerClient(decode.grpcAddress, material);
    clusters[mode] = {
      prefill,
      decode,
      client,
      close: async () => (client.close(), await prefill.close(), await decode.close(), await cp.close()),
    };
  }
  const sampling = samplingToWire(samplingParams({ temperature: 0, maxTokens: 2, ignoreEos: true }));
  let n = 0;
  // Every request's prompt is new (no prefix cache anywhere): the prefill worker computes all of it and pushes its
  // KV to the decode worker, as the gateway's pushed handoff does (packages/gateway/src/cluster-client.ts).
  const once = async (mode: Mode): Promise<{ first: number; second: number }> => {
    const c = clusters[mode];
    const id = `r${++n}`;
    const prompt = randomTokens(promptTokens, n);
    const t0 = performance.now();
    const prefilling = c.prefill.server.grpcAddress;
    const events = new WorkerClient(prefilling, mode === 'tls' ? tls : undefined);
    try {
      const stream = events.prefill({
        request_id: id,
        prompt_token_ids: prompt,
        sampling,
        from_block: 0,
        target: { grpc_address: c.decode.grpcAddress, transfer_id: id, transport: 'tcp' },
      });
      let first = 0;
      const prefilled = (async () => {
        for await (const e of stream) if (e.kind === 'first' && first === 0) first = performance.now() - t0;
      })();
      let tokens = 0;
      let second = 0;
      for await (const chunk of c.client.generate({
        request_id: id,
        prompt_token_ids: prompt,
        sampling,
        priority: 0,
        prefill: { mode: 'pushed', prefill_worker: c.prefill.instanceId, transfer_id: id },
      })) {
        tokens += chunk.token_ids.length;
        if (tokens >= 2 && second === 0) second = performance.now() - t0;
      }
      await prefilled;
      return { first, second };
    } finally {
      events.close();
    }
  };
  const samples: Record<Mode, { first: number; second: number }[]> = { plain: [], tls: [] };
  for (let r = 0; r < 3 + requests; r++) {
    const [p, t] = await eachFirstInTurn(
      r,
      () => once('plain'),
      () => once('tls'),
    );
    if (r >= 3) {
      samples.plain.push(p);
      samples.tls.push(t);
    }
  }
  for (const mode of ['plain', 'tls'] as const) {
    if (clusters[mode].decode.engine.stats().prefillTokensComputed !== 0)
      throw new Error(`${mode}: the decode worker prefilled (a handoff failed)`);
    await clusters[mode].close();
  }
  const rows: string[][] = [['prompt', 'mode', 'TTFT ms median', 'second token ms median', 'TTFT TLS ÷ plain', 'second TLS ÷ plain']];
  const med = (mode: Mode, k: 'first' | 'second'): number => median(samples[mode].map((s) => s[k]));
  for (const mode of ['plain', 'tls'] as const) {
    rows.push([
      `${promptTokens} tokens`,
      mode,
      med(mode, 'first').toFixed(1),
      med(mode, 'second').toFixed(1),
      (med(mode, 'first') / med('plain', 'first')).toFixed(2),
      (med(mode, 'second') / med('plain', 'second')).toFixed(2),
    ]);
  }
  return rows;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c] ?? 0)).join('  ')).join('\n');
}

if (process.argv.includes('--receiver')) {
  await runReceiver(process.argv[process.argv.indexOf('--receiver') + 1]!);
} else {
  const tlsDir = makeThrowawayCa();
  try {
    const tls = readTlsDir(tlsDir);
    const only = list('--only', ['transfer', 'ttft']);
    if (only.includes('transfer')) {
      const transfer = await transferBench(tlsDir, tls);
      process.stdout.write(
        `\nKV transfer over the tcp data plane between two processes, plaintext vs mTLS (TLS 1.3, P-256 certificates);\nmedian of the measured rounds after warm-up, the two modes each first in turn. CPU = process CPU time per GiB moved.\n\n${table(transfer)}\n`,
      );
    }
    if (!only.includes('ttft')) process.exit(0);
    const ttft = await ttftBench(tls);
    process.stdout.write(
      `\nPushed handoff on the tiny model (prefill worker → decode worker, KV over tcp), new prompt each request:\nTTFT = until the prefill worker's first token; second token = the decode worker's, after the KV arrived and was imported.\n\n${table(ttft)}\n`,
    );
  } finally {
    rmSync(tlsDir, { recursive: true, force: true });
  }
}
