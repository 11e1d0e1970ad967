// Attack suite, at the edge: the single-engine server over the real engine and the tiny model. A client that
// stops reading its stream has its request aborted at the write timeout and the engine's KV blocks return
// to idle.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiServer, silentLogger, type ApiServer } from '@pdserve/api';
import { LLMEngine } from '@pdserve/engine';
import { ensureTinyModel } from '@pdserve/model';
import { Tokenizer } from '@pdserve/tokenizer';
import { waitFor } from '@pdserve/testkit';

/**
 * A served model name of 8 KB: every streamed chunk repeats it, so a stream fills the socket buffers (about
 * 4 MB on loopback) within a few dozen engine steps, whatever the machine's speed.
 */
const BIG_NAME = `tiny-${'x'.repeat(8 * 1024)}`;

let engine: LLMEngine;
let api: ApiServer;
let url: string;

beforeAll(async () => {
  const dir = await ensureTinyModel();
  const tokenizer = await Tokenizer.fromDir(dir);
  engine = await LLMEngine.create({ modelDir: dir, modelId: 'tiny', kvCacheBytes: 64 << 20 });
  api = createApiServer({ models: [{ id: BIG_NAME, engine, tokenizer, maxModelLen: engine.maxModelLen }], port: 0, logger: silentLogger, writeTimeoutMs: 500 });
  url = (await api.listen()).url;
}, 120_000);

afterAll(async () => {
  await api?.close();
  await engine?.close();
});

describe('a stalled stream reader', () => {
  it('has its request aborted at the write timeout: the engine\'s KV blocks return to idle long before the request could finish', async () => {
    const n = 16;
    const maxTokens = 2000;
    const sock = net.connect(Number(new URL(url).port), '127.0.0.1');
    sock.on('error', () => undefined);
    const body = JSON.stringify({ model: BIG_NAME, prompt: 'Stream a lot', max_tokens: maxTokens, n, temperature: 0, ignore_eos: true, stream: true });
    sock.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    const head = await new Promise<string>((resolve) => {
      let got = '';
      const onData = (d: Buffer): void => {
        got += d.toString();
        if (!got.includes('data: ')) return;
        sock.off('data', onData);
        sock.pause(); // the reader stops reading mid-stream
        resolve(got);
      };
      sock.on('data', onData);
    });
    expect(head.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    expect(engine.stats().running).toBe(n);
    const steps0 = engine.stats().steps;
    await waitFor('the engine to be idle', () => {
      const s = engine.stats();
      return s.running === 0 && s.waiting === 0 && s.usedBlocks === 0;
    }, 50_000, 20);
    // Far fewer steps than max_tokens: the requests were aborted, not finished.
    expect(engine.stats().steps - steps0).toBeLessThan(maxTokens / 2);
    // The server cut the connection: once the client reads again, the stream ends without [DONE].
    let tail = '';
    const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
    sock.on('data', (d: Buffer) => (tail = (tail + d.toString()).slice(-64)));
    sock.resume();
    await closed;
    expect(tail).not.toContain('[DONE]');
  }, 60_000);
});
