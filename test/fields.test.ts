// Sampling fields beyond the basics, through the HTTP API in `serve` and the disaggregated cluster (where
// they cross gRPC twice: to the prefill worker for the first token, to the decode worker for the rest).
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureTinyModel, loadModelSpec, ModelRunner, referenceGenerate, samplingParams } from '@pdserve/model';
import { completion } from '@pdserve/testkit';
import { Tokenizer } from '@pdserve/tokenizer';
import { startDisaggregated, startServe, waitIdle, type Topology } from './topologies';

let tokenizer: Tokenizer;
let runner: ModelRunner;
const topologies: Topology[] = [];

beforeAll(async () => {
  const dir = await ensureTinyModel();
  tokenizer = await Tokenizer.fromDir(dir);
  runner = await ModelRunner.create(loadModelSpec(dir));
  topologies.push(await startServe(dir, tokenizer), await startDisaggregated(dir));
}, 120_000);
afterAll(async () => {
  await Promise.all(topologies.map((t) => t.close()));
  await runner?.release();
});

/** The reference loop's text for a prompt under these sampling values (the oracle). */
async function reference(prompt: string, p: Parameters<typeof samplingParams>[0]): Promise<string> {
  const ids = tokenizer.encode(prompt);
  const out = await referenceGenerate(runner, ids, samplingParams({ temperature: 0, stopTokenIds: tokenizer.eosTokenIds, ...p }));
  return completion(tokenizer, ids, out.tokenIds);
}

describe.each(['serve', 'disaggregated'] as const)('%s', (name) => {
  const topo = (): Topology => topologies.find((t) => t.name === name)!;
  const client = (): OpenAI => new OpenAI({ baseURL: `${topo().url}/v1`, apiKey: 'x', maxRetries: 0 });

  it('logit_bias +100 on one token makes every token (the first one too) that token', async () => {
    const id = tokenizer.tokenToId('▁cat')!;
    const res = await client().completions.create({ model: 'tiny', prompt: 'Pets:', max_tokens: 6, temperature: 0, logit_bias: { [id]: 100 } });
    expect(res.choices[0]!.text).toBe(completion(tokenizer, tokenizer.encode('Pets:'), Array(6).fill(id)));
  });

  it('logit_bias -100 bans the tokens the model would pick: output equals the reference loop under the same bias', async () => {
    const ids = tokenizer.encode('Bans');
    const plain = await referenceGenerate(runner, ids, samplingParams({ temperature: 0, maxTokens: 4 }));
    const bias = Object.fromEntries(plain.tokenIds.map((t) => [t, -100]));
    const banned = await client().completions.create({ model: 'tiny', prompt: 'Bans', max_tokens: 6, temperature: 0, logit_bias: bias });
    expect(banned.choices[0]!.text).toBe(await reference('Bans', { maxTokens: 6, logitBias: bias }));
    expect(banned.choices[0]!.text).not.toBe(await reference('Bans', { maxTokens: 6 }));
  });

  it('min_tokens holds EOS back: EOS favoured by +100 ends at once without it, after min_tokens with it', async () => {
    const eos = { [tokenizer.eosTokenIds[0]!]: 100 };
    const bare = await client().completions.create({ model: 'tiny', prompt: 'End', max_tokens: 10, temperature: 0, logit_bias: eos });
    expect(bare.choices[0]!.finish_reason).toBe('stop');
    expect(bare.usage!.completion_tokens).toBeLessThanOrEqual(1);
    const held = await client().completions.create({ model: 'tiny', prompt: 'End', max_tokens: 10, temperature: 0, logit_bias: eos, min_tokens: 4 } as OpenAI.CompletionCreateParamsNonStreaming);
    expect(held.choices[0]!.finish_reason).toBe('stop');
    expect(held.usage!.completion_tokens).toBeGreaterThanOrEqual(4);
    expect(held.usage!.completion_tokens).toBeLessThanOrEqual(5);
    await waitIdle(topo());
  });

  it('priority is accepted and the output is the same as without it', async () => {
    const body = { model: 'tiny', prompt: 'Queue order', max_tokens: 6, temperature: 0 };
    const a = await client().completions.create(body);
    const b = await client().completions.create({ ...body, priority: -5 } as OpenAI.CompletionCreateParamsNonStreaming);
    expect(b.choices[0]!.text).toBe(a.choices[0]!.text);
  });
});
