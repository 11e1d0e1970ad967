// Transfer engine throughput between two processes on this machine.
//   node --import tsx scripts/bench-transfer.ts [--reps 5] [--warmup 15] [--blocks 1000] [--only tcp,shm,grpc] [--sizes 32768,1048576]
// The parent is the sender; it spawns a receiver child that runs a TransferReceiver (admitting by
// dropping the blocks) and a raw TCP sink (which dials us, as the tcp transport's receiver does). For each
// KV payload size (--sizes, multiples of 8 KiB) it moves the same encoded blocks with each transport and as
// a raw TCP copy (no framing, no checksums), and prints the median GB/s of the repetitions and the ratio to
// raw. Every block is verified by the receiver; the sender passes the CRC-32 it derives from the block's
// header, as workers do.
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { blockCrc32, encodeBlock, type KvLayout } from '@pdserve/kv-cache';
import { TransferReceiver, TransferSender, type KvBlock, type TransferAdvertisement, type TransportKind } from '@pdserve/transfer';
import { startLineChild } from './lib/child';
import { arg, dialRawSink, list, listenRawSource, rawCopy } from './lib/raw-tcp';
import { eachFirstInTurn, median } from './lib/stats';

interface ReceiverInfo {
  readonly grpcAddress: string;
  readonly advertisement: TransferAdvertisement;
}

const GiB = 1024 * 1024 * 1024;

async function runReceiver(): Promise<void> {
  const rx = await TransferReceiver.start({
    limits: { maxTransferBytes: 2 * GiB, maxPendingBytes: 4 * GiB, maxBlocks: 100_000 },
    // Room to reuse a 1 GiB receive slab, as a worker whose KV pool is sized for such transfers would.
    slabPoolBytes: 2 * GiB,
    // Admitting drops the blocks: this measures moving bytes, not storing them.
    onTransfer: () => undefined,
  });
  const grpcAddress = await rx.serveGrpc('127.0.0.1', 0);
  const raw = dialRawSink(process.argv[process.argv.indexOf('--raw-source') + 1] ?? '');
  const info: ReceiverInfo = { grpcAddress, advertisement: rx.advertisement() };
  process.stdout.write(`${JSON.stringify(info)}\n`);
  // Each stdin line asks for this process's CPU time so far (µs, user + system).
  const lines = createInterface({ input: process.stdin });
  lines.on('line', () => {
    const u = process.cpuUsage();
    process.stdout.write(`${u.user + u.system}\n`);
  });
  lines.on('close', () => {
    raw.destroy();
    void rx.close().then(() => process.exit(0));
  });
}

interface Sample {
  readonly gbps: number;
  /** CPU ms per GiB moved, sender and receiver. */
  readonly txCpu: number;
  readonly rxCpu: number;
}

async function runSender(): Promise<void> {
  const reps = Math.max(3, arg('--reps', 5));
  const warmup = Math.max(1, arg('--warmup', 15));
  const count = arg('--blocks', 1000);
  const rawSource = await listenRawSource();
  const child = await startLineChild<ReceiverInfo>(fileURLToPath(import.meta.url), ['--receiver', '--raw-source', rawSource.address]);
  const { info } = child;
  const childCpu = (): Promise<number> => child.cpu();
  const ownCpu = (): number => child.ownCpu();
  const tx = new TransferSender();
  const peer = { grpcAddress: info.grpcAddress, advertisement: info.advertisement };
  const rawSocket = await rawSource.connected;

  const header = ['block', 'blocks', 'MiB', 'transport', 'GB/s median', 'min–max', 'vs raw', 'CPU ms/GiB tx', 'rx'];
  const rows: string[][] = [header];
  const transports = list('--only', ['tcp', 'shm', 'grpc']) as ('raw' | TransportKind)[];
  for (const blockBytes of list('--sizes', ['32768', '1048576']).map(Number)) {
    // KV blocks as a prefill worker sends them: encoded (a 40-byte header holding the payload's CRC-32)
    // and handed over with the CRC-32 derived from that header. The tiny model's layout at 32 KiB; more
    // layers for bigger blocks.
    const layout: KvLayout = { numLayers: blockBytes / 8192, numKvHeads: 2, headDim: 32, blockSize: 16 };
    const blocks: KvBlock[] = Array.from({ length: count }, (_, i) => {
      const hash = i.toString(16).padStart(16, '0');
      const data = encodeBlock(layout, new Uint8Array(randomBytes(blockBytes)), hash, layout.blockSize);
      return { hash, data, checksum: blockCrc32(data) };
    });
    const total = blocks.reduce((n, b) => n + b.data.byteLength, 0);
    const once = async (t: 'raw' | TransportKind): Promise<Sample> => {
      const rx0 = await childCpu();
      const tx0 = ownCpu();
      const t0 = performance.now();
      if (t === 'raw') await rawCopy(rawSocket, blocks);
      else await tx.send({ peer, transport: t, blocks, deadlineMs: 120_000 });
      const secs = (performance.now() - t0) / 1000;
      const tx1 = ownCpu();
      const rx1 = await childCpu();
      const perGiB = GiB / total / 1000;
      return { gbps: total / secs / 1e9, txCpu: (tx1 - tx0) * perGiB, rxCpu: (rx1 - rx0) * perGiB };
    };
    // One phase per transport, each with its own raw copies interleaved (raw, transport, raw, ...): load
    // from elsewhere on the machine hits both alike, and one transport's garbage (gRPC leaves plenty) is
    // not collected in another's timings (interleaving all four, tcp's receive CPU doubled). Warm-up rounds
    // first: a server runs warm, and both processes' JIT takes ~15 rounds to settle (a kv-store put's first
    // rounds ran at 0.2-0.6 GB/s, then steadily at 1.0-1.1); also the connection pool and TCP autotuning.
    const size = blockBytes >= 1024 * 1024 ? `${blockBytes / 1024 / 1024} MiB` : `${blockBytes / 1024} KiB`;
    const row = (t: string, xs: readonly Sample[], rawMedian: number): string[] => {
      const rates = xs.map((x) => x.gbps);
      const med = median(rates);
      return [
        size,
        String(count),
        (total / 1024 / 1024).toFixed(0),
        t,
        med.toFixed(2),
        `${Math.min(...rates).toFixed(2)}–${Math.max(...rates).toFixed(2)}`,
        rawMedian > 0 ? (med / rawMedian).toFixed(2) : '-',
        median(xs.map((x) => x.txCpu)).toFixed(0),
        median(xs.map((x) => x.rxCpu)).toFixed(0),
      ];
    };
    for (const t of transports.filter((x): x is TransportKind => x !== 'raw')) {
      const raws: Sample[] = [];
      const theirs: Sample[] = [];
      for (let r = 0; r < warmup + reps; r++) {
        const [raw, sample] = await eachFirstInTurn(
          r,
          () => once('raw'),
          () => once(t),
        );
        if (r >= warmup) {
          raws.push(raw);
          theirs.push(sample);
        }
      }
      const rawMedian = median(raws.map((x) => x.gbps));
      rows.push(row(`raw (${t} phase)`, raws, rawMedian), row(t, theirs, rawMedian));
      process.stderr.write(`  ${rows.at(-2)?.join('  ')}\n  ${rows.at(-1)?.join('  ')}\n`);
    }
  }
  const widths = header.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  const line = (r: string[]): string => r.map((cell, c) => cell.padEnd(widths[c] ?? 0)).join('  ');
  process.stdout.write(
    `\nKV transfer between two processes on one host; one phase per transport, median of ${reps} rounds (a raw copy and the transport, each first in turn) after ${warmup} warm-up rounds.\n`,
  );
  process.stdout.write("GB/s = 1e9 bytes per second from send() to the receiver's acknowledgement; raw = the same bytes over a\n");
  process.stdout.write('plain TCP socket, no framing or checksums. CPU = process CPU time (user + system) per GiB moved.\n\n');
  for (const r of rows) process.stdout.write(`${line(r)}\n`);
  tx.close();
  rawSocket.destroy();
  rawSource.server.close();
  child.process.stdin?.end();
}

if (process.argv.includes('--receiver')) await runReceiver();
else await runSender();
