// A tiny OpenAI-compatible streaming server for this package's tests (not exported from the package).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isRecord } from './json';

export interface FakeServerOptions {
  /** Delay before the first token, ms. */
  readonly ttftMs: number;
  /** Delay between tokens, ms. */
  readonly itlMs: number;
  /** Every n-th request (1-based) fails with HTTP 503. */
  readonly failEvery?: number;
  /** Prefix-cache block size for cached_tokens accounting. */
  readonly blockSize?: number;
}

export interface FakeServer {
  readonly url: string;
  /** Request bodies received, in arrival order. */
  readonly bodies: Record<string, unknown>[];
  close(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Streams `max_tokens` one-token chunks with the configured delays, splitting each SSE event across two
 * writes at an arbitrary point and adding comment lines, then a usage chunk and [DONE]. Token-id prompts
 * get cached_tokens from a block-level prefix cache over everything seen before.
 */
export async function startFakeServer(opts: FakeServerOptions): Promise<FakeServer> {
  const bodies: Record<string, unknown>[] = [];
  const seen = new Set<string>();
  const blockSize = opts.blockSize ?? 16;
  let count = 0;
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let raw = '';
    for await (const chunk of req) raw += String(chunk);
    const body: unknown = JSON.parse(raw);
    if (!isRecord(body)) throw new Error('body is not an object');
    bodies.push(body);
    count++;
    if (opts.failEvery !== undefined && count % opts.failEvery === 0) {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'overloaded', type: 'server_error', code: 503 } }));
      return;
    }
    const chat = req.url === '/v1/chat/completions';
    const prompt = body['prompt'];
    const ids = Array.isArray(prompt) ? prompt.map(Number) : [];
    let cached = 0;
    for (let b = 0; (b + 1) * blockSize <= ids.length; b++) {
      const key = ids.slice(0, (b + 1) * blockSize).join(',');
      if (seen.has(key) && cached === b * blockSize) cached += blockSize;
      seen.add(key);
    }
    const promptTokens = Array.isArray(prompt) ? ids.length : JSON.stringify(body['messages'] ?? prompt).split(' ').length;
    const maxTokens = Number(body['max_tokens']);
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const send = async (data: string): Promise<void> => {
      const ev = `data: ${data}\n\n`;
      const cut = 1 + (data.length % (ev.length - 1));
      res.write(ev.slice(0, cut));
      res.write(ev.slice(cut));
    };
    const head = { id: 'x', created: 0, model: body['model'], object: chat ? 'chat.completion.chunk' : 'text_completion' };
    if (chat)
      await send(
        JSON.stringify({ ...head, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }], usage: null }),
      );
    res.write(': keep-alive\r\n\r\n');
    await sleep(opts.ttftMs);
    for (let i = 0; i < maxTokens; i++) {
      if (i > 0) await sleep(opts.itlMs);
      const last = i === maxTokens - 1;
      const choice = chat
        ? { index: 0, delta: { content: ` w${i}` }, finish_reason: last ? 'length' : null }
        : { index: 0, text: ` w${i}`, logprobs: null, finish_reason: last ? 'length' : null };
      await send(JSON.stringify({ ...head, choices: [choice], usage: null }));
    }
    const usage = {
      prompt_tokens: promptTokens,
      completion_tokens: maxTokens,
      total_tokens: promptTokens + maxTokens,
      prompt_tokens_details: { cached_tokens: cached },
    };
    await send(JSON.stringify({ ...head, choices: [], usage }));
    await send('[DONE]');
    res.end();
  };
  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      res.writeHead(500);
      res.end(String(err));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    bodies,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
