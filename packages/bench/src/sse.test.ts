import { describe, expect, it } from 'vitest';
import { SseParser, readSse, type SseEvent } from './sse';

const STREAM =
  ': keep-alive comment\r\n' +
  'data: {"a":1}\r\n\r\n' +
  'event: update\n' +
  'id: 7\n' +
  'data: line one\n' +
  'data:line two\n\n' +
  'data: {"text":"héllo 😀"}\r\r' +
  'data: [DONE]\n\n';

const EXPECTED: SseEvent[] = [
  { event: 'message', data: '{"a":1}', id: undefined },
  { event: 'update', data: 'line one\nline two', id: '7' },
  { event: 'message', data: '{"text":"héllo 😀"}', id: '7' },
  { event: 'message', data: '[DONE]', id: '7' },
];

function parseIn(pieces: readonly string[]): SseEvent[] {
  const p = new SseParser();
  const out: SseEvent[] = [];
  for (const s of pieces) out.push(...p.push(s));
  out.push(...p.end());
  return out;
}

function bodyOf(chunks: readonly Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(c) {
      for (const ch of chunks) c.enqueue(ch);
      c.close();
    },
  });
}

describe('SseParser', () => {
  it('parses whole text: comments, CRLF/LF/CR endings, multi-line data, event and id fields, [DONE]', () => {
    expect(parseIn([STREAM])).toEqual(EXPECTED);
  });

  it('gives the same events whatever the split, including between CR and LF', () => {
    for (let size = 1; size <= 7; size++) {
      const pieces: string[] = [];
      for (let i = 0; i < STREAM.length; i += size) pieces.push(STREAM.slice(i, i + size));
      expect(parseIn(pieces)).toEqual(EXPECTED);
    }
    const crlf = STREAM.indexOf('\r\n');
    expect(parseIn([STREAM.slice(0, crlf + 1), STREAM.slice(crlf + 1)])).toEqual(EXPECTED);
  });

  it('drops an unterminated last event and ignores empty dispatches', () => {
    expect(parseIn(['\n\n: only comments\n\ndata: partial'])).toEqual([]);
    expect(parseIn(['\ufeffdata: x\n\n'])).toEqual([{ event: 'message', data: 'x', id: undefined }]);
  });
});

describe('readSse', () => {
  it('decodes UTF-8 split inside a multi-byte character', async () => {
    const bytes = new TextEncoder().encode(STREAM);
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < bytes.length; i += 3) chunks.push(bytes.subarray(i, i + 3));
    const out: SseEvent[] = [];
    for await (const ev of readSse(bodyOf(chunks))) out.push(ev);
    expect(out).toEqual(EXPECTED);
  });
});
