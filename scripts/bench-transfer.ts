// Transfer engine throughput between two processes on this machine.
//   node --import tsx scripts/bench-transfer.ts [--reps 5] [--blocks 1000] [--only tcp,raw] [--sizes 32768,1048576]
// The parent is the sender; it spawns a receiver child that runs a TransferReceiver (admitting by
// dropping the blocks) and a raw TCP sink. For each block size it moves the same bytes with each
// transport and as a raw TCP copy (no framing, no checksums), and prints the median GB/s of the
// repetitions and the ratio to raw.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { TransferReceiver, TransferSender, type KvBlock, type TransferAdvertisement, type TransportKind } from '@pdserve/transfer';

interface ReceiverInfo {
  readonly grpcAddress: string;
  readonly advertisement: TransferAdvertisement;
  readonly rawAddress: string;
}

const GiB = 1024 * 1024 * 1024;

async function runReceiver(): Promise<void> {
  let admitted = 0;
  const rx = await TransferReceiver.start({
    host: '127.0.0.1',
    limits: { maxTransferBytes: 2 * GiB, maxPendingBytes: 4 * GiB, maxBlocks: 100_000 },
    onTransfer: (t) => {
      admitted += t.blocks.length; // the bytes are dropped: this measures moving them, not storing them
    },
  });
  const grpcAddress = await rx.serveGrpc('127.0.0.1', 0);
  // Raw sink: an 8-byte little-endian length, then that many bytes; answers one byte when all arrived.
  const raw = createServer({ noDelay: true }, (s: Socket) => {
    let want = -1;
    let got = 0;
    let head = Buffer.alloc(0);
    s.on('data', (chunk: Buffer) => {
      let c = chunk;
      if (want < 0) {
        head = Buffer.concat([head, c]);
        if (head.byteLength < 8) return;
        want = Number(head.readBigUInt64LE(0));
        c = head.subarray(8);
        head = Buffer.alloc(0);
      }
      got += c.byteLength;
      if (got >= want) {
        s.write('k');
        want = -1;
        got = 0;
      }
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
  const rawPort = (raw.address() as { port: number }).port;
  const info: ReceiverInfo = { grpcAddress, advertisement: rx.advertisement(), rawAddress: `127.0.0.1:${rawPort}` };
  process.stdout.write(`${JSON.stringify(info)}\n`);
  process.stdin.resume();
  process.stdin.on('end', () => {
    void rx.close().then(() => process.exit(0));
  });
  void admitted;
}

/** Sends the blocks' bytes over one persistent raw socket, same batching as the tcp transport. */
async function rawCopy(socket: Socket, blocks: readonly KvBlock[]): Promise<void> {
  const total = blocks.reduce((n, b) => n + b.data.byteLength, 0);
  const ack = new Promise<void>((resolve) => socket.once('data', () => resolve()));
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(total));
  socket.write(head);
  let i = 0;
  while (i < blocks.length) {
    socket.cork();
    let batch = 0;
    while (i < blocks.length && batch < 2 * 1024 * 1024) {
      const d = (blocks[i++] as KvBlock).data;
      socket.write(d);
      batch += d.byteLength;
    }
    socket.uncork();
    if (socket.writableLength > 8 * 1024 * 1024) await new Promise((r) => socket.once('drain', r));
  }
  await ack;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

function arg(name: string, fallback: number): number {
  const at = process.argv.indexOf(name);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
}

function list(name: string, fallback: readonly string[]): string[] {
  const at = process.argv.indexOf(name);
  return at >= 0 ? (process.argv[at + 1] ?? '').split(',') : [...fallback];
}

async function runSender(): Promise<void> {
  const reps = Math.max(3, arg('--reps', 5));
  const count = arg('--blocks', 1000);
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--receiver'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const firstLine = await new Promise<string>((resolve) => {
    createInterface({ input: child.stdout }).once('line', resolve);
  });
  const info = JSON.parse(firstLine) as ReceiverInfo;
  const tx = new TransferSender({ tcp: { maxIdlePerPeer: 2 } });
  const peer = { grpcAddress: info.grpcAddress, advertisement: info.advertisement };
  const [rawHost, rawPort] = info.rawAddress.split(':');
  const rawSocket = connect({ host: rawHost, port: Number(rawPort), noDelay: true });
  await new Promise((r) => rawSocket.once('connect', r));

  const rows: string[][] = [['block', 'blocks', 'MiB', 'transport', 'GB/s (median)', 'min–max', 'vs raw']];
  const transports = list('--only', ['raw', 'tcp', 'shm', 'grpc']) as ('raw' | TransportKind)[];
  for (const blockBytes of list('--sizes', ['32768', '1048576']).map(Number)) {
    const blocks: KvBlock[] = Array.from({ length: count }, (_, i) => ({
      hash: i.toString(16).padStart(16, '0'),
      data: new Uint8Array(randomBytes(blockBytes)),
    }));
    const total = count * blockBytes;
    let rawMedian = 0;
    for (const t of transports) {
      const once = async (): Promise<number> => {
        const t0 = performance.now();
        if (t === 'raw') await rawCopy(rawSocket, blocks);
        else await tx.send({ peer, transport: t, blocks, deadlineMs: 120_000 });
        return total / ((performance.now() - t0) / 1000) / 1e9;
      };
      await once(); // warm-up: JIT, connection pool, TCP autotuning
      const rates: number[] = [];
      for (let r = 0; r < reps; r++) rates.push(await once());
      const med = median(rates);
      if (t === 'raw') rawMedian = med;
      rows.push([
        blockBytes >= 1024 * 1024 ? `${blockBytes / 1024 / 1024} MiB` : `${blockBytes / 1024} KiB`,
        String(count), (total / 1024 / 1024).toFixed(0), t, med.toFixed(2),
        `${Math.min(...rates).toFixed(2)}–${Math.max(...rates).toFixed(2)}`,
        t === 'raw' ? '1.00' : (med / rawMedian).toFixed(2),
      ]);
      process.stderr.write(`  ${rows.at(-1)?.join('  ')}\n`);
    }
  }
  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length))) ?? [];
  const line = (r: string[]): string => r.map((cell, c) => cell.padEnd(widths[c] ?? 0)).join('  ');
  process.stdout.write(`\nKV transfer, two processes on one host, median of ${reps} (after 1 warm-up):\n\n`);
  for (const r of rows) process.stdout.write(`${line(r)}\n`);
  tx.close();
  rawSocket.destroy();
  child.stdin?.end();
}

if (process.argv.includes('--receiver')) await runReceiver();
else await runSender();
