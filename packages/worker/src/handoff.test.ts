// The pushed handoff's pieces alone: the meta codec both ends share, and the admission of transfers
// (expected ones taken in, a Begin that comes first held for its claim, unclaimed ones refused).
import { describe, expect, it, vi } from 'vitest';
import type { IncomingTransfer, TransferError, TransferOffer } from '@pdserve/transfer';
import { TransferAdmission, UNCLAIMED_BEGIN_MS } from './admission';
import type { GenerateOutput, GenerateRequest } from '@pdserve/contracts';
import type { LLMEngine } from '@pdserve/engine';
import { samplingParams } from '@pdserve/model/sampling';
import { samplingToWire } from './codec';
import { prefillAndPush } from './handoff';
import {
  HandoffMetaError,
  decodeHandoffMeta,
  decodeHandoffPartMeta,
  encodeHandoffMeta,
  encodeHandoffPartMeta,
  handoffOfPart,
  handoffPartId,
  type HandoffMeta,
} from './handoff-meta';

const first = {
  first_token: 42,
  first_logprob: -0.5,
  first_top: [
    { token_id: 42, logprob: -0.5 },
    { token_id: 7, logprob: -1.25 },
  ],
  cached_tokens: 16,
  prompt_tokens: 40,
};

describe('handoff meta codec', () => {
  it('round-trips, with and without sampler state', () => {
    const seeded: HandoffMeta = { first, rngState: [1, 2, 3, 0xffff_ffff], fromBlock: 2 };
    expect(decodeHandoffMeta(encodeHandoffMeta(seeded))).toEqual(seeded);
    const greedy: HandoffMeta = { first, fromBlock: 0 };
    expect(decodeHandoffMeta(encodeHandoffMeta(greedy))).toEqual(greedy);
  });

  it('refuses what is missing or malformed, field by field', () => {
    const good = encodeHandoffMeta({ first, fromBlock: 1 });
    const bad = [
      { ...good, from_block: '-1' },
      { ...good, from_block: 'x' },
      { ...good, first: '{' },
      { ...good, first: 'null' },
      { ...good, first: JSON.stringify({ ...first, first_token: 1.5 }) },
      { ...good, first: JSON.stringify({ ...first, first_top: [{ token_id: 'a', logprob: 0 }] }) },
      { ...good, first: JSON.stringify({ ...first, cached_tokens: undefined }) },
      { ...good, rng_state: '1,2,3' },
      { ...good, rng_state: '1,2,3,4294967296' },
      { from_block: '0' },
    ];
    for (const meta of bad) expect(() => decodeHandoffMeta(meta)).toThrow(HandoffMetaError);
  });
});

describe('streamed handoff parts: ids and meta', () => {
  it('names part k of a transfer so that only that transfer claims it', () => {
    const id = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
    expect(handoffOfPart(handoffPartId(id, 0))).toBe(id);
    expect(handoffOfPart(handoffPartId(id, 127))).toBe(id);
    for (const notPart of [id, `${id}-p`, `${id}-p01`, `${id}-px`, '-p3', `${id}-p1234567`]) expect(handoffOfPart(notPart)).toBeUndefined();
    expect(decodeHandoffPartMeta(encodeHandoffPartMeta({ fromBlock: 32 }))).toEqual({ fromBlock: 32 });
    expect(decodeHandoffPartMeta(encodeHandoffPartMeta({ fromBlock: 3, cachedTokens: 0 }))).toEqual({ fromBlock: 3, cachedTokens: 0 });
    for (const bad of [
      {} as Record<string, string>,
      { from_block: '-1' },
      { from_block: '1.5' },
      { from_block: 'x' },
      { from_block: '1', cached_tokens: '' },
      { from_block: '1', cached_tokens: '-3' },
      { from_block: '1', cached_tokens: 'many' },
    ])
      expect(() => decodeHandoffPartMeta(bad)).toThrow(HandoffMetaError);
  });
});

function offer(transferId: string): TransferOffer & { abort(): void } {
  const ac = new AbortController();
  return { transferId, meta: {}, blocks: [], peer: '127.0.0.1', signal: ac.signal, abort: () => ac.abort() };
}

function incoming(transferId: string): IncomingTransfer {
  const data = new Uint8Array([1, 2, 3]);
  return {
    transferId,
    transport: 'tcp',
    meta: { k: 'v' },
    blocks: [{ hash: '00', data, checksum: 9 }],
    bytes: 3,
    signal: new AbortController().signal,
    retain: () => undefined,
  };
}

describe('transfer admission', () => {
  it('takes in an expected transfer: begun, then arrived with copies of its blocks', async () => {
    const a = new TransferAdmission();
    const e = a.expect('t1', 10_000);
    expect(a.begin(offer('t1'))).toBeUndefined(); // expected: admitted at Begin, nothing held
    await e.begun;
    const t = incoming('t1');
    a.admit(t);
    const got = await e.arrived;
    expect(got.meta).toEqual({ k: 'v' });
    expect(got.blocks[0]!.data).toEqual(t.blocks[0]!.data);
    expect(got.blocks[0]!.data).not.toBe(t.blocks[0]!.data);
    e.done();
    expect(a.pending).toEqual({ expected: 0, unclaimed: 0 });
  });

  it('holds a Begin that comes before its claim, and lets it in when the claim comes', async () => {
    const a = new TransferAdmission();
    const held = a.begin(offer('t2'));
    expect(held).toBeInstanceOf(Promise);
    expect(a.pending.unclaimed).toBe(1);
    const e = a.expect('t2', 10_000);
    await expect(held).resolves.toBeUndefined();
    await e.begun;
    expect(a.pending).toEqual({ expected: 1, unclaimed: 0 });
    e.done();
  });

  it('refuses a Begin nobody claims in time, a whole transfer nobody expects, and one expected twice', async () => {
    vi.useFakeTimers();
    try {
      const a = new TransferAdmission();
      const held = a.begin(offer('t3')) as Promise<void>;
      const verdict = held.then(
        () => 'admitted',
        (e: Error) => e.message,
      );
      await vi.advanceTimersByTimeAsync(UNCLAIMED_BEGIN_MS + 1);
      expect(await verdict).toMatch(/unexpected transfer t3/);
      expect(a.pending.unclaimed).toBe(0);
      expect(() => a.admit(incoming('t4'))).toThrow(/unexpected transfer t4/);
      a.expect('t5', 1_000);
      expect(() => a.expect('t5', 1_000)).toThrow(/already expected/);
    } finally {
      vi.useRealTimers();
    }
  });

  it('stops waiting when the transfer is discarded, times out, or its sender leaves while held', async () => {
    const a = new TransferAdmission();
    const e = a.expect('t6', 10_000);
    a.discard('t6', Object.assign(new Error('checksum'), { code: 'CHECKSUM_MISMATCH' }) as unknown as TransferError);
    await expect(e.arrived).rejects.toThrow('checksum');
    e.done();
    const late = a.expect('t7', 20);
    await expect(late.arrived).rejects.toThrow(/did not arrive within 20 ms/);
    late.done();
    const o = offer('t8');
    const held = a.begin(o) as Promise<void>;
    o.abort();
    await expect(held).rejects.toThrow(/discarded/);
    expect(a.pending).toEqual({ expected: 0, unclaimed: 0 });
  });
});

describe('transfer admission of a streamed handoff', () => {
  it("takes in the parts of the transfer it expects with parts, each handed over at once; the transfer's own promises wait for its last one", async () => {
    const a = new TransferAdmission();
    const parts: { from: string; data: Uint8Array }[] = [];
    const e = a.expect('s1', 10_000, (p) => parts.push({ from: p.meta['k']!, data: p.blocks[0]!.data }));
    let begun = false;
    void e.begun.then(() => (begun = true));
    expect(a.begin(offer(handoffPartId('s1', 0)))).toBeUndefined(); // admitted at Begin, nothing held
    const t = incoming(handoffPartId('s1', 0));
    a.admit(t);
    expect(parts).toHaveLength(1);
    expect(parts[0]!.data).toEqual(t.blocks[0]!.data);
    expect(parts[0]!.data).not.toBe(t.blocks[0]!.data); // a copy: the receive slab is reused
    await Promise.resolve();
    expect(begun).toBe(false);
    // A part lost is only that part: the transfer is still awaited.
    a.discard(handoffPartId('s1', 1), Object.assign(new Error('cut'), { code: 'PEER_GONE' }) as unknown as TransferError);
    a.admit(incoming('s1'));
    await expect(e.arrived).resolves.toMatchObject({ meta: { k: 'v' } });
    e.done();
    // Done: its parts are refused like any transfer nobody expects.
    expect(() => a.admit(incoming(handoffPartId('s1', 2)))).toThrow(/unexpected transfer/);
  });

  it('holds a part whose Begin comes before its claim and lets it in with the claim; a transfer expected without parts does not claim them', async () => {
    vi.useFakeTimers();
    try {
      const a = new TransferAdmission();
      const early = a.begin(offer(handoffPartId('s2', 0))) as Promise<void>;
      expect(a.pending.unclaimed).toBe(1);
      const e = a.expect('s2', 10_000, () => undefined);
      await expect(early).resolves.toBeUndefined();
      expect(a.pending.unclaimed).toBe(0);
      e.done();
      const plain = a.expect('s3', 10_000); // a pushed (not streamed) handoff
      const part = (a.begin(offer(handoffPartId('s3', 0))) as Promise<void>).then(
        () => 'admitted',
        (err: Error) => err.message,
      );
      await vi.advanceTimersByTimeAsync(UNCLAIMED_BEGIN_MS + 1);
      expect(await part).toMatch(/unexpected transfer s3-p0/);
      expect(() => a.admit(incoming(handoffPartId('s3', 1)))).toThrow(/unexpected transfer/);
      plain.done();
    } finally {
      vi.useRealTimers();
    }
  });

  it('a part its handler refuses (malformed meta) is refused, and the transfer still awaited', async () => {
    const a = new TransferAdmission();
    const e = a.expect('s4', 10_000, (p) => decodeHandoffPartMeta(p.meta));
    expect(() => a.admit(incoming(handoffPartId('s4', 0)))).toThrow(HandoffMetaError);
    a.admit(incoming('s4'));
    await expect(e.arrived).resolves.toBeDefined();
    e.done();
  });
});

describe('prefill side, streamed', () => {
  /** An engine that exports parts of two blocks (blocks 0-5) while it computes, then the first token and block 6. */
  function streamingEngine(finishAfterMs = 0): LLMEngine {
    const block = (i: number): Uint8Array => new Uint8Array([i, i, i]);
    return {
      blockSize: 4,
      modelId: 'm',
      async *generate(req: GenerateRequest): AsyncGenerator<GenerateOutput> {
        for (let from = 0; from < 6; from += 2) {
          await new Promise((r) => setTimeout(r, 1));
          req.exportKv!.onBlocks!({ fromBlock: from, blocks: [block(from), block(from + 1)] });
        }
        await new Promise((r) => setTimeout(r, finishAfterMs));
        yield { tokenIds: [9], promptTokens: 26, cachedTokens: 0 };
        yield { tokenIds: [], promptTokens: 26, cachedTokens: 0, finishReason: 'length', kv: { fromBlock: 6, blocks: [block(6)] } };
      },
    } as unknown as LLMEngine;
  }

  const req = (streamParts: boolean, leaveTail = false, len = 26) => ({
    request_id: 'r',
    prompt_token_ids: Array.from({ length: len }, (_, i) => i + 1),
    sampling: samplingToWire(samplingParams({ temperature: 0, maxTokens: 8 })),
    from_block: 0,
    target: { grpc_address: 'x', transfer_id: 'h', transport: 'tcp', stream_parts: streamParts, leave_tail: leaveTail },
  });

  interface Sent {
    transferId: string;
    meta: Record<string, string>;
    blocks: { data: Uint8Array }[];
  }

  function sender(
    failing: ReadonlySet<string>,
    slow: ReadonlyMap<string, number> = new Map(),
  ): { sent: Sent[]; send(t: Sent): Promise<unknown> } {
    const sent: Sent[] = [];
    return {
      sent,
      send: async (t: Sent) => {
        sent.push(t);
        await new Promise((r) => setTimeout(r, slow.get(t.transferId) ?? 0));
        if (failing.has(t.transferId)) throw new Error(`transfer ${t.transferId} cut`);
        return { transferId: t.transferId, transport: 'tcp', blocks: t.blocks.length, bytes: 3 * t.blocks.length, elapsedMs: 0 };
      },
    };
  }

  /** Pushes `req(streamParts)` from `engine` through `s`. */
  const push = (engine: LLMEngine, s: ReturnType<typeof sender>, streamParts = true) =>
    prefillAndPush({ engine, sender: s as never }, req(streamParts), new AbortController().signal, () => undefined);

  /** What went out: each transfer's id, meta from_block and its blocks' first bytes. */
  const sentOf = (s: ReturnType<typeof sender>) => s.sent.map((t) => [t.transferId, t.meta['from_block'], t.blocks.map((b) => b.data[0])]);

  it('sends each part as it is exported, then the first token with only the last blocks', async () => {
    const s = sender(new Set());
    const out = await push(streamingEngine(), s);
    expect(sentOf(s)).toEqual([
      ['h-p0', '0', [0, 1]],
      ['h-p1', '2', [2, 3]],
      ['h-p2', '4', [4, 5]],
      ['h', '6', [6]],
    ]);
    expect(out.receipt).toMatchObject({ blocks: 7, bytes: 21 });
  });

  it('a part that fails ends the streaming: it and every later part go with the last transfer', async () => {
    const s = sender(new Set(['h-p1']));
    const out = await push(streamingEngine(), s);
    expect(sentOf(s)).toEqual([
      ['h-p0', '0', [0, 1]],
      ['h-p1', '2', [2, 3]],
      ['h', '2', [2, 3, 4, 5, 6]],
    ]);
    expect(out.receipt).toMatchObject({ blocks: 7 });
  });

  it('parts exported while one is in flight go as one; those still waiting when the prefill ends go with the last transfer', async () => {
    // h-p0 is slow: the next two parts wait, then go together while the engine still computes.
    const merged = sender(new Set(), new Map([['h-p0', 100]]));
    await push(streamingEngine(400), merged);
    expect(sentOf(merged)).toEqual([
      ['h-p0', '0', [0, 1]],
      ['h-p1', '2', [2, 3, 4, 5]],
      ['h', '6', [6]],
    ]);
    // The engine ends while h-p0 is in flight: the waiting parts are not sent on their own.
    const folded = sender(new Set(), new Map([['h-p0', 200]]));
    const out = await push(streamingEngine(), folded);
    expect(sentOf(folded)).toEqual([
      ['h-p0', '0', [0, 1]],
      ['h', '2', [2, 3, 4, 5, 6]],
    ]);
    expect(out.receipt).toMatchObject({ blocks: 7 });
  });

  it('leaving the tail: the engine gets the prompt but its last block and samples nothing; the last transfer carries what the prefill worker had cached, no first token', async () => {
    const block = (i: number): Uint8Array => new Uint8Array([i, i, i]);
    const seen: GenerateRequest[] = [];
    // 26 tokens in blocks of 4: blocks 0-5 (24 tokens) are computed here, block 6 (tokens 24, 25) by the target.
    const engine = {
      blockSize: 4,
      modelId: 'm',
      async *generate(r: GenerateRequest): AsyncGenerator<GenerateOutput> {
        seen.push(r);
        r.exportKv!.onBlocks!({ fromBlock: 0, blocks: [block(0), block(1), block(2), block(3)] });
        yield {
          tokenIds: [],
          promptTokens: 24,
          cachedTokens: 8,
          finishReason: 'length',
          kv: { fromBlock: 4, blocks: [block(4), block(5)] },
        };
      },
    } as unknown as LLMEngine;
    const s = sender(new Set());
    const firsts: unknown[] = [];
    const out = await prefillAndPush({ engine, sender: s as never }, req(true, true), new AbortController().signal, (f) => firsts.push(f));
    expect(seen[0]!.promptTokenIds).toEqual(req(true).prompt_token_ids.slice(0, 24));
    expect(seen[0]!.exportKv?.withoutToken).toBe(true);
    expect(firsts).toEqual([]);
    expect(out.first).toBeUndefined();
    expect(out.cachedTokens).toBe(8);
    expect(sentOf(s)).toEqual([
      ['h-p0', '0', [0, 1, 2, 3]],
      ['h', '4', [4, 5]],
    ]);
    expect(s.sent[1]!.meta).toEqual({ from_block: '4', cached_tokens: '8' });
    expect(out.receipt).toMatchObject({ blocks: 6 });
  });

  it('leaving the tail is refused when no full block lies below the last prompt token, or with prompt logprobs', async () => {
    const s = sender(new Set());
    const run = (r: ReturnType<typeof req>) =>
      prefillAndPush({ engine: streamingEngine(), sender: s as never }, r, new AbortController().signal, () => undefined);
    for (const len of [1, 4]) await expect(run(req(true, true, len))).rejects.toMatchObject({ code: 'invalid_request', param: 'target' });
    const withLogprobs = {
      ...req(true, true),
      sampling: samplingToWire(samplingParams({ temperature: 0, maxTokens: 8, promptLogprobs: 1 })),
    };
    await expect(run(withLogprobs)).rejects.toMatchObject({ code: 'invalid_request', param: 'target' });
    expect(s.sent).toEqual([]);
  });

  it('without stream_parts, no part goes: everything travels after the first token', async () => {
    const engine = streamingEngine();
    const s = sender(new Set());
    // The engine is told no onBlocks: it then exports every block at the end.
    const whole = {
      ...engine,
      async *generate(r: GenerateRequest): AsyncGenerator<GenerateOutput> {
        expect(r.exportKv?.onBlocks).toBeUndefined();
        yield { tokenIds: [9], promptTokens: 26, cachedTokens: 0 };
        yield {
          tokenIds: [],
          promptTokens: 26,
          cachedTokens: 0,
          finishReason: 'length',
          kv: { fromBlock: 0, blocks: [new Uint8Array(3)] },
        };
      },
    } as unknown as LLMEngine;
    await push(whole, s, false);
    expect(s.sent.map((t) => t.transferId)).toEqual(['h']);
  });
});

describe('prefill side', () => {
  it("runs the request's one token at its priority and under its constraints; the pushed meta leaves the prompt logprobs out", async () => {
    const asked: GenerateRequest[] = [];
    const engine = {
      blockSize: 16,
      modelId: 'm',
      async *generate(req: GenerateRequest): AsyncGenerator<GenerateOutput> {
        asked.push(req);
        const promptLogprobs = [{ tokenId: 6, logprob: -1, rank: 2, top: [] }];
        yield { tokenIds: [9], promptTokens: 2, cachedTokens: 0, promptLogprobs };
        yield { tokenIds: [], promptTokens: 2, cachedTokens: 0, finishReason: 'length', kv: { fromBlock: 0, blocks: [] } };
      },
    } as unknown as LLMEngine;
    const sent: { meta: Record<string, string> }[] = [];
    const sender = { send: async (t: { meta: Record<string, string> }) => (sent.push(t), { bytes: 0, transport: 'grpc' }) };
    const structuredOutput = { kind: 'json_schema' as const, schema: { type: 'object' } };
    const sampling = samplingToWire(samplingParams({ maxTokens: 50, minTokens: 5, structuredOutput, promptLogprobs: 0 }));
    const firsts: unknown[] = [];
    const req = {
      request_id: 'r',
      prompt_token_ids: [5, 6],
      sampling,
      from_block: 0,
      target: { grpc_address: 'x', transfer_id: 't', transport: 'grpc' },
      cache_salt: '',
      priority: -3,
      service_tier: 'flex',
    };
    await prefillAndPush({ engine, sender: sender as never }, req, new AbortController().signal, (f) => firsts.push(f));
    expect(asked[0]).toMatchObject({
      priority: -3,
      serviceTier: 'flex',
      sampling: { maxTokens: 1, minTokens: 1, structuredOutput, promptLogprobs: 0 },
    });
    expect(firsts[0]).toMatchObject({ first_token: 9, prompt_logprobs: [{ token_id: 6, logprob: -1, rank: 2, top: [] }] });
    expect(JSON.parse(sent[0]!.meta['first']!)).not.toHaveProperty('prompt_logprobs');
  });
});
