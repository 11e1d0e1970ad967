// The raw TCP copy the transfer benchmarks set beside their transports: the same bytes over one plain
// socket, no framing or checksums. Protocol: an 8-byte little-endian length, then that many bytes; the
// sink answers one byte when all have arrived.
import { createServer, type Server, type Socket } from 'node:net';

export async function startRawSink(): Promise<{ readonly server: Server; readonly address: string }> {
  const server = createServer({ noDelay: true }, (s: Socket) => {
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
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, address: `127.0.0.1:${(server.address() as { port: number }).port}` };
}

/** Sends the blocks' bytes over one persistent raw socket, same batching as the tcp transport. */
export async function rawCopy(socket: Socket, blocks: readonly { readonly data: Uint8Array }[]): Promise<void> {
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
      const d = blocks[i++]!.data;
      socket.write(d);
      batch += d.byteLength;
    }
    socket.uncork();
    if (socket.writableLength > 8 * 1024 * 1024) await new Promise((r) => socket.once('drain', r));
  }
  await ack;
}

/** `--name N` from the command line, or the fallback. */
export function arg(name: string, fallback: number): number {
  const at = process.argv.indexOf(name);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
}

/** `--name a,b,c` from the command line, or the fallback. */
export function list(name: string, fallback: readonly string[]): string[] {
  const at = process.argv.indexOf(name);
  return at >= 0 ? (process.argv[at + 1] ?? '').split(',') : [...fallback];
}
