// The receiving end of the raw TCP data plane. A connection carries frames of one transfer at a time
// (the sender holds it exclusively while sending, then may reuse it for the next transfer); the first
// frame's token binds the connection to a registered transfer. Anything unexpected - an unknown
// token, a bad frame, a checksum mismatch - destroys the connection and fails the transfer.
import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { BlockAssembly } from './assembly.js';
import { TransferError, asTransferError } from './errors.js';
import { FrameDecoder, TOKEN_BYTES, tokenWords, type FrameHeader, type FrameSink } from './frame-codec.js';

/** A transfer waiting for frames. */
export interface TcpInbound {
  readonly assembly: BlockAssembly;
  /** The data plane broke this transfer; the owner discards it and reports `error`. */
  fail(error: TransferError): void;
}

export interface TcpRegistration {
  /** Put this in Ready; every frame of the transfer carries it. */
  readonly token: Uint8Array;
  /** Stops accepting frames for the transfer and cuts any connection still carrying it. */
  release(): void;
}

interface Entry {
  readonly inbound: TcpInbound;
  readonly sockets: Set<Socket>;
}

export interface TcpDataServerOptions {
  readonly host: string;
  readonly port?: number;
  /** A connection that carries nothing for this long is closed (ms). */
  readonly idleTimeoutMs?: number;
}

export class TcpDataServer {
  private readonly entries = new Map<string, Entry>();
  private readonly sockets = new Set<Socket>();

  private constructor(private readonly server: Server, private readonly idleTimeoutMs: number) {
    server.on('connection', (s) => this.onConnection(s));
  }

  static async listen(opts: TcpDataServerOptions): Promise<TcpDataServer> {
    const server = createServer({ noDelay: true });
    const self = new TcpDataServer(server, opts.idleTimeoutMs ?? 120_000);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port ?? 0, opts.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return self;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  register(inbound: TcpInbound): TcpRegistration {
    const token = randomBytes(TOKEN_BYTES);
    const { lo, hi } = tokenWords(token);
    const key = keyOf(lo, hi);
    const entry: Entry = { inbound, sockets: new Set() };
    this.entries.set(key, entry);
    return {
      token,
      release: () => {
        if (this.entries.get(key) !== entry) return;
        this.entries.delete(key);
        // A connection still bound here is mid-transfer: it cannot be resynchronized, so it goes.
        for (const s of entry.sockets) s.destroy();
      },
    };
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private onConnection(socket: Socket): void {
    this.sockets.add(socket);
    socket.setTimeout(this.idleTimeoutMs, () => socket.destroy());
    let bound: Entry | null = null;
    let boundLo = 0;
    let boundHi = 0;
    const sink: FrameSink = {
      onHeader: (h: FrameHeader) => {
        if (bound === null || h.tokenLo !== boundLo || h.tokenHi !== boundHi) {
          if (bound !== null) throw new TransferError('PROTOCOL', 'frame of another transfer mid-transfer');
          const entry = this.entries.get(keyOf(h.tokenLo, h.tokenHi));
          if (entry === undefined) throw new TransferError('PROTOCOL', 'frame for an unknown transfer token');
          bound = entry;
          boundLo = h.tokenLo;
          boundHi = h.tokenHi;
          entry.sockets.add(socket);
        }
        return bound.inbound.assembly.bufferFor(h.blockIndex, h.length);
      },
      onFrame: (h: FrameHeader, payload: Uint8Array) => {
        const entry = bound as Entry;
        entry.inbound.assembly.acceptWhole(h.blockIndex, payload, h.checksum);
        if (entry.inbound.assembly.complete) {
          // Done with this transfer: the connection is free to carry the sender's next one.
          entry.sockets.delete(socket);
          bound = null;
        }
      },
    };
    const decoder = new FrameDecoder(sink);
    socket.on('data', (chunk: Buffer) => {
      try {
        decoder.push(chunk);
      } catch (e) {
        const err = asTransferError(e, 'PROTOCOL');
        const entry = bound;
        bound = null;
        socket.destroy();
        entry?.inbound.fail(err);
      }
    });
    socket.on('error', () => undefined); // 'close' follows and reports
    socket.on('close', () => {
      this.sockets.delete(socket);
      const entry = bound;
      bound = null;
      if (entry === null) return;
      entry.sockets.delete(socket);
      const a = entry.inbound.assembly;
      if (!a.complete) {
        entry.inbound.fail(new TransferError('CONNECTION_LOST',
          `data connection closed after ${a.verifiedBlocks} of ${a.blockCount} blocks`));
      }
    });
  }
}

function keyOf(lo: number, hi: number): string {
  return `${lo}.${hi}`;
}
