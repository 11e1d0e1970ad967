// The raw TCP data plane's frame: a fixed 24-byte header, then one whole block's bytes.
//
//   offset  size  field (little-endian)
//        0     4  magic 'PKV1'
//        4     4  block index within the transfer
//        8     4  payload length in bytes
//       12     4  XXH32 of the payload
//       16     8  transfer token (random, handed out by the receiver in Ready)
//
// The decoder copies each payload once, straight from the socket's chunks into the buffer the sink
// gives it for that block; only a header split across two chunks is gathered in a 24-byte scratch.

export const FRAME_HEADER_BYTES = 24;
export const FRAME_MAGIC = 0x3156_4b50; // bytes 'P' 'K' 'V' '1'
export const TOKEN_BYTES = 8;

export interface FrameHeader {
  readonly blockIndex: number;
  readonly length: number;
  readonly checksum: number;
  readonly tokenLo: number;
  readonly tokenHi: number;
}

/** Writes a header into `target` (at least FRAME_HEADER_BYTES long). */
export function encodeFrameHeader(
  target: Uint8Array, token: Uint8Array, blockIndex: number, length: number, checksum: number,
): void {
  putU32(target, 0, FRAME_MAGIC);
  putU32(target, 4, blockIndex);
  putU32(target, 8, length);
  putU32(target, 12, checksum);
  target.set(token.subarray(0, TOKEN_BYTES), 16);
}

function putU32(b: Uint8Array, at: number, v: number): void {
  b[at] = v;
  b[at + 1] = v >>> 8;
  b[at + 2] = v >>> 16;
  b[at + 3] = v >>> 24;
}

function getU32(b: Uint8Array, at: number): number {
  return (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;
}

/** Splits an 8-byte token into the two words a header carries. */
export function tokenWords(token: Uint8Array): { readonly lo: number; readonly hi: number } {
  return { lo: getU32(token, 0), hi: getU32(token, 4) };
}

export class FrameError extends Error {
  override readonly name = 'FrameError';
}

export interface FrameSink {
  /** A header arrived: return the buffer (exactly `length` bytes) its payload is read into, or throw. */
  onHeader(header: FrameHeader): Uint8Array;
  /** The payload is complete in the buffer onHeader returned. */
  onFrame(header: FrameHeader, payload: Uint8Array): void;
}

export class FrameDecoder {
  private readonly scratch = new Uint8Array(FRAME_HEADER_BYTES);
  private scratchFill = 0;
  private header: FrameHeader | null = null;
  private payload: Uint8Array | null = null;
  private payloadFill = 0;

  constructor(private readonly sink: FrameSink) {}

  /** True between frames: nothing of a frame has been read yet. */
  get idle(): boolean {
    return this.header === null && this.scratchFill === 0;
  }

  /** Feeds one chunk read from the socket; throws FrameError (or the sink's error) on a bad stream. */
  push(chunk: Uint8Array): void {
    let pos = 0;
    const end = chunk.byteLength;
    while (pos < end) {
      if (this.header === null) {
        if (this.scratchFill === 0 && end - pos >= FRAME_HEADER_BYTES) {
          this.beginFrame(chunk, pos);
          pos += FRAME_HEADER_BYTES;
        } else {
          const take = Math.min(FRAME_HEADER_BYTES - this.scratchFill, end - pos);
          this.scratch.set(chunk.subarray(pos, pos + take), this.scratchFill);
          this.scratchFill += take;
          pos += take;
          if (this.scratchFill < FRAME_HEADER_BYTES) return;
          this.scratchFill = 0;
          this.beginFrame(this.scratch, 0);
        }
        if (this.header !== null && this.payloadFill === (this.payload as Uint8Array).byteLength) this.finishFrame();
        continue;
      }
      const payload = this.payload as Uint8Array;
      const take = Math.min(payload.byteLength - this.payloadFill, end - pos);
      payload.set(chunk.subarray(pos, pos + take), this.payloadFill);
      this.payloadFill += take;
      pos += take;
      if (this.payloadFill === payload.byteLength) this.finishFrame();
    }
  }

  private beginFrame(bytes: Uint8Array, at: number): void {
    if (getU32(bytes, at) !== FRAME_MAGIC) throw new FrameError('bad frame magic');
    const header: FrameHeader = {
      blockIndex: getU32(bytes, at + 4),
      length: getU32(bytes, at + 8),
      checksum: getU32(bytes, at + 12),
      tokenLo: getU32(bytes, at + 16),
      tokenHi: getU32(bytes, at + 20),
    };
    const payload = this.sink.onHeader(header);
    if (payload.byteLength !== header.length) throw new FrameError('payload buffer does not match frame length');
    this.header = header;
    this.payload = payload;
    this.payloadFill = 0;
  }

  private finishFrame(): void {
    const header = this.header as FrameHeader;
    const payload = this.payload as Uint8Array;
    this.header = null;
    this.payload = null;
    this.payloadFill = 0;
    this.sink.onFrame(header, payload);
  }
}
