// Sampling fields beyond the basics, through the HTTP API in `serve` and the disaggregated cluster (where
// they cross gRPC twice: to the prefill worker for the first token, to the decode worker for the rest).
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureTinyModel, loadModelSpec, ModelRunner, referenceGenerate, samplingParams } from '@pdserve/model';
import { completion } from '@pdserve/testkit';
import { Tokenizer } from '@pdserve/tokenizer';
import { startDisaggregated, startServe, waitIdle, type Topology } from './lib/topologies';

let tokenizer: Tokenizer;
let runner: ModelRunner;
/** prompt_logprobs per topology, compared once both ran. */
const seen = new Map<string, unknown[]>() as Map<string, (Record<string, { logprob: number; rank: number }> | null)[]>;
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
    const res = await client().completions.create({
      model: 'tiny',
      prompt: 'Pets:',
      max_tokens: 6,
      temperature: 0,
      logit_bias: { [id]: 100 },
    });
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
    const held = await client().completions.create({
      model: 'tiny',
      prompt: 'End',
      max_tokens: 10,
      temperature: 0,
      logit_bias: eos,
      min_tokens: 4,
    } as OpenAI.CompletionCreateParamsNonStreaming);
    expect(held.choices[0]!.finish_reason).toBe('stop');
    expect(held.usage!.completion_tokens).toBeGreaterThanOrEqual(4);
    expect(held.usage!.completion_tokens).toBeLessThanOrEqual(5);
    await waitIdle(topo());
  });

  it('echo with logprobs: the prompt tokens scored by the model, the first null; the output scored as when generated', async () => {
    const prompt = 'Score this prompt, token by token';
    const gen = await client().completions.create({ model: 'tiny', prompt, max_tokens: 4, temperature: 0, logprobs: 2 });
    const genText = gen.choices[0]!.text;
    const ids = [...tokenizer.encode(prompt)];
    const res = await client().completions.create({ model: 'tiny', prompt, max_tokens: 4, temperature: 0, logprobs: 2, echo: true });
    const lp = res.choices[0]!.logprobs!;
    expect(res.choices[0]!.text).toBe(prompt + genText);
    expect(lp.tokens!.length).toBe(ids.length + 4);
    expect(lp.token_logprobs![0]).toBeNull();
    expect(lp.token_logprobs!.slice(1).every((v) => typeof v === 'number' && v <= 0)).toBe(true);
    // The output scores as it did without echo (the prompt now computed whole: equal to float precision).
    lp.token_logprobs!.slice(ids.length).forEach((v, i) => expect(v).toBeCloseTo(gen.choices[0]!.logprobs!.token_logprobs![i]!, 4));
    expect(res.usage!.prompt_tokens_details?.cached_tokens ?? 0).toBe(0); // computed whole, not from the cache
    await waitIdle(topo());
  });

  it('prompt_logprobs: the same values in serve and in the cluster, each prompt token with its rank', async () => {
    const prompt = 'Same logprobs everywhere';
    const ids = tokenizer.encode(prompt);
    const res = (await client().completions.create({
      model: 'tiny',
      prompt,
      max_tokens: 1,
      temperature: 0,
      ...{ prompt_logprobs: 3 },
    })) as OpenAI.Completion & {
      choices: { prompt_logprobs: (Record<string, { logprob: number; rank: number }> | null)[] }[];
    };
    const pl = res.choices[0]!.prompt_logprobs;
    expect(pl).toHaveLength(ids.length);
    expect(pl[0]).toBeNull();
    pl.slice(1).forEach((e, i) => {
      const own = e![String(ids[i + 1])]!;
      expect(own.rank).toBeGreaterThanOrEqual(1);
      expect(Object.keys(e!).length).toBeGreaterThanOrEqual(3);
    });
    seen.set(name, pl);
    if (seen.size === 2) {
      const [a, b] = [...seen.values()];
      a!.forEach((e, i) => {
        if (e === null) return expect(b![i]).toBeNull();
        for (const [id, v] of Object.entries(e)) expect(b![i]![id]!.logprob).toBeCloseTo(v.logprob, 4);
      });
    }
  });

  it('priority is accepted and the output is the same as without it', async () => {
    const body = { model: 'tiny', prompt: 'Queue order', max_tokens: 6, temperature: 0 };
    const a = await client().completions.create(body);
    const b = await client().completions.create({ ...body, priority: -5 } as OpenAI.CompletionCreateParamsNonStreaming);
    expect(b.choices[0]!.text).toBe(a.choices[0]!.text);
  });
});
