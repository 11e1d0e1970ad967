// The raw TCP copy the transfer benchmarks set beside their transports: the same bytes over one plain
// socket, no framing or checksums. Protocol: an 8-byte little-endian length, then that many bytes; the
// sink answers one byte when all have arrived. As in the tcp transport, the sink dials the sender and
// reads with `onread` into one reused buffer: no Buffer per read. (With a listening sink and 'data'
// events, the 32 MiB of 64 KiB Buffers each copy left behind roughly doubled the receive CPU of the tcp
// transfer timed next in the same process.)
import { connect, createServer, type Server, type Socket } from 'node:net';

/** The sending end: a loopback port for the sink to dial, and the socket once it has. */
export async function listenRawSource(): Promise<{
  readonly server: Server;
  readonly address: string;
  readonly connected: Promise<Socket>;
}> {
  let accepted: (s: Socket) => void = () => undefined;
  const connected = new Promise<Socket>((resolve) => {
    accepted = resolve;
  });
  const server = createServer({ noDelay: true }, (s) => accepted(s));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, address: `127.0.0.1:${(server.address() as { port: number }).port}`, connected };
}

/**
 * The sink: dials the source and counts what arrives, answering `k` after each announced length (and
 * telling `onCopy`). With `landBytes`, a copy of at most that many bytes is read into one buffer of that
 * size, reused for every copy, as a transfer lands in its (pooled) receive slab; otherwise every read goes
 * into one 1 MiB scratch buffer (cache-resident, the bytes thrown away).
 */
export function dialRawSink(address: string, opts: { readonly onCopy?: () => void; readonly landBytes?: number } = {}): Socket {
  const [host, port] = address.split(':');
  const scratch = Buffer.allocUnsafe(1024 * 1024);
  const land = opts.landBytes === undefined ? null : new Uint8Array(opts.landBytes);
  let armed: Uint8Array = scratch;
  let want = -1;
  let got = 0;
  let headFill = 0;
  const head = Buffer.alloc(8);
  const copied = (): void => {
    socket.write('k');
    opts.onCopy?.();
    want = -1;
  };
  const socket: Socket = connect({
    host,
    port: Number(port),
    noDelay: true,
    onread: {
      buffer: () => {
        // Mid-copy into the landing buffer: the rest of the copy, straight where it belongs.
        armed =
          land !== null && want >= 0 && want <= land.byteLength
            ? land.subarray(got, want)
            : want < 0 && land !== null
              ? head.subarray(headFill)
              : scratch;
        return armed;
      },
      callback: (n: number): boolean => {
        if (armed !== scratch) {
          if (want < 0) {
            headFill += n;
            if (headFill === 8) {
              want = Number(head.readBigUInt64LE(0));
              headFill = 0;
              got = 0;
              if (want === 0) copied();
            }
          } else {
            got += n;
            if (got === want) copied();
          }
          return true;
        }
        let at = 0;
        while (at < n) {
          if (want < 0) {
            const take = Math.min(8 - headFill, n - at);
            scratch.copy(head, headFill, at, at + take);
            headFill += take;
            at += take;
            if (headFill < 8) break;
            want = Number(head.readBigUInt64LE(0));
            headFill = 0;
            got = 0;
          }
          const take = Math.min(want - got, n - at);
          got += take;
          at += take;
          if (got === want) copied();
        }
        return true;
      },
    },
  });
  socket.on('error', () => undefined);
  return socket;
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
