/** One server-sent event; `event` defaults to `message` per the spec. */
export interface SseEvent {
  readonly event: string;
  readonly data: string;
  readonly id: string | undefined;
}

/**
 * Incremental parser for `text/event-stream` (WHATWG HTML § 9.2): lines end in CRLF, LF or CR, lines
 * starting with `:` are comments, `data:` lines accumulate, an empty line dispatches. Text may be pushed in
 * pieces split anywhere, including between the CR and LF of one line ending.
 */
export class SseParser {
  private buffer = '';
  private skipLf = false;
  private started = false;
  private data: string[] = [];
  private event = '';
  private id: string | undefined;

  /** Feeds decoded text; returns the events it completed. */
  push(text: string): SseEvent[] {
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    const out: SseEvent[] = [];
    // The buffer holds no line ending (they were all consumed), so only the new text needs scanning.
    let buf = this.buffer + text;
    let from = 0;
    for (let i = this.buffer.length; i < buf.length; i++) {
      const c = buf.charCodeAt(i);
      if (this.skipLf) {
        this.skipLf = false;
        if (c === 10) {
          from = i + 1;
          continue;
        }
      }
      if (c !== 10 && c !== 13) continue;
      this.line(buf.slice(from, i), out);
      from = i + 1;
      if (c === 13) this.skipLf = true;
    }
    buf = buf.slice(from);
    this.buffer = buf;
    return out;
  }

  /** End of stream: an event not terminated by an empty line is discarded, as the spec says. */
  end(): SseEvent[] {
    this.buffer = '';
    this.data = [];
    this.event = '';
    return [];
  }

  private line(line: string, out: SseEvent[]): void {
    if (line === '') {
      if (this.data.length > 0) out.push({ event: this.event || 'message', data: this.data.join('\n'), id: this.id });
      this.data = [];
      this.event = '';
      return;
    }
    if (line.charCodeAt(0) === 58 /* ':' */) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.event = value;
    else if (field === 'id' && !value.includes('\0')) this.id = value;
    // `retry` and unknown fields are ignored.
  }
}

/** Events of a response body, decoding UTF-8 across chunk boundaries. */
export async function* readSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent, void, undefined> {
  const parser = new SseParser();
  const decoder = new TextDecoder('utf-8');
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      yield* parser.push(decoder.decode(value, { stream: true }));
    }
    yield* parser.push(decoder.decode());
    yield* parser.end();
  } finally {
    reader.releaseLock();
  }
}
