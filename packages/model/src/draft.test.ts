import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModelSpec, ModelLoadError } from './config';
import { checkDraftCompatible } from './draft';
import { ModelRunner } from './runner';
import { buildTinyModel, draftPair } from './tiny/index';

const SHAPE = { layers: 3, hidden: 64, heads: 4, kvHeads: 2, ffn: 128, seed: 3 } as const;

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'pdserve-draft-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function pair(scale: number): Promise<{ target: string; draft: string }> {
  const p = draftPair(SHAPE, 1, scale);
  const target = join(root, `target-${scale}`);
  const draft = join(root, `draft-${scale}`);
  await buildTinyModel({ out: target, ...p.target });
  await buildTinyModel({ out: draft, ...p.draft });
  return { target, draft };
}

/** Teacher-forced agreement: the fraction of positions of one sequence where both models' argmax match. */
async function agreement(targetDir: string, draftDir: string, tokens: number[]): Promise<number> {
  const argmaxes = async (dir: string): Promise<number[]> => {
    const r = await ModelRunner.create(loadModelSpec(dir));
    const res = await r.forward({ rows: [{ tokenIds: tokens, pastLen: 0, numLogits: tokens.length }], pastWidth: 0 });
    await r.release();
    const V = r.spec.vocabSize;
    return tokens.map((_, i) => {
      const row = res.logits.subarray(i * V, (i + 1) * V);
      let best = 0;
      for (let j = 1; j < V; j++) if (row[j]! > row[best]!) best = j;
      return best;
    });
  };
  const [a, b] = [await argmaxes(targetDir), await argmaxes(draftDir)];
  return a.filter((t, i) => t === b[i]).length / a.length;
}

const TOKENS = Array.from({ length: 96 }, (_, i) => 100 + ((i * 7919) % 5000));

describe('synthetic draft pair', () => {
  it('agrees fully at residual scale 0 and less as the scale grows', async () => {
    const zero = await pair(0);
    const mid = await pair(0.5);
    const full = await pair(1);
    expect(await agreement(zero.target, zero.draft, TOKENS)).toBe(1);
    const aMid = await agreement(mid.target, mid.draft, TOKENS);
    const aFull = await agreement(full.target, full.draft, TOKENS);
    expect(aMid).toBeLessThan(1);
    expect(aFull).toBeLessThan(aMid);
    // The draft is the target's first layer: the same seed's other layers are not in it.
    checkDraftCompatible(loadModelSpec(zero.target), loadModelSpec(zero.draft));
  });

  it('rejects a draft with another vocabulary size or another tokenizer, naming the problem', async () => {
    const { target, draft } = await pair(0);
    const bigger = join(root, 'bigger-vocab');
    cpSync(draft, bigger, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(bigger, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(bigger, 'config.json'), JSON.stringify({ ...cfg, vocab_size: 32001 }));
    expect(() => checkDraftCompatible(loadModelSpec(target), loadModelSpec(bigger))).toThrow(
      /vocab_size 32001 differs from the target's 32000/,
    );

    const swapped = join(root, 'other-tokenizer');
    cpSync(draft, swapped, { recursive: true });
    const tok = JSON.parse(readFileSync(join(swapped, 'tokenizer.json'), 'utf8')) as { model: { vocab: Record<string, number> } };
    const [a, b] = Object.keys(tok.model.vocab).slice(1000, 1002) as [string, string];
    [tok.model.vocab[a], tok.model.vocab[b]] = [tok.model.vocab[b]!, tok.model.vocab[a]!];
    writeFileSync(join(swapped, 'tokenizer.json'), JSON.stringify(tok));
    const err = (() => {
      try {
        checkDraftCompatible(loadModelSpec(target), loadModelSpec(swapped));
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as Error).message).toMatch(/same tokenizer/);
  });
});
