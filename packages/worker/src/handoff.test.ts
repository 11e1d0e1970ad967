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
import { HandoffMetaError, decodeHandoffMeta, encodeHandoffMeta, type HandoffMeta } from './handoff-meta';

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
