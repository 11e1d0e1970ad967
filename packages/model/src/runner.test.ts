// ModelRunner.forwardNew: the new tokens' KV alone, fetched from the graph's new_key_values outputs where it
// has them and cut from present's right end where it does not (any Optimum export) — the same either way; and
// with argmaxOnly each logits row's argmax, from the graph's logits_argmax output or from the logits.
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTinyModel } from './tiny/index';
import { loadModelSpec, ModelRunner, type ForwardBatch } from './index';
import { LOGITS_ARGMAX, NEW_KV_PREFIX } from './runner';

const SHAPE = { layers: 2, hidden: 64, heads: 8, kvHeads: 2, ffn: 128, seed: 5 } as const;

let root: string;
let withNew: ModelRunner;
let without: ModelRunner;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'pdserve-runner-'));
  const full = join(root, 'full');
  await buildTinyModel({ out: full, ...SHAPE });
  // The same model with the Optimum contract only: its new_key_values and logits_argmax outputs dropped.
  const plain = join(root, 'plain');
  await cp(full, plain, { recursive: true });
  const file = join(plain, 'onnx', 'model.onnx');
  const model = onnxProto.onnx.ModelProto.decode(await readFile(file));
  model.graph!.output = model.graph!.output!.filter((o) => !o.name!.startsWith(NEW_KV_PREFIX) && o.name !== LOGITS_ARGMAX);
  await writeFile(file, onnxProto.onnx.ModelProto.encode(model).finish());
  withNew = await ModelRunner.create(loadModelSpec(full));
  without = await ModelRunner.create(loadModelSpec(plain));
});
afterAll(async () => {
  await withNew?.release();
  await without?.release();
  await rm(root, { recursive: true, force: true });
});

describe('ModelRunner.forwardNew', () => {
  it("returns present's right end, from the graph's own outputs or cut from present", async () => {
    const H = 2;
    const D = 8;
    const prompt = await withNew.forward({ rows: [{ tokenIds: [1, 415, 4996, 17354, 1701], pastLen: 0 }], pastWidth: 0 });
    // Two rows over a 5-column past (the second's 3 tokens right-aligned), 3 and 1 new tokens (left-padded).
    const past = prompt.present.map((kv) => ({
      key: Float32Array.from([...kv.key, ...kv.key]),
      value: Float32Array.from([...kv.value, ...kv.value]),
    }));
    const pastMask = Uint8Array.from([1, 1, 1, 1, 1, 0, 0, 1, 1, 1]);
    const batch: ForwardBatch = {
      rows: [
        { tokenIds: [29916, 975, 278], pastLen: 5, numLogits: 3 },
        { tokenIds: [306], pastLen: 3 },
      ],
      pastWidth: 5,
      past,
      pastMask,
    };
    const ref = await withNew.forward(batch);
    // Each logits row's argmax (the first of equal maxima): 3 rows for the first row, 1 for the second.
    const V = withNew.spec.vocabSize;
    const best = Array.from({ length: 4 }, (_, r) => {
      const row = ref.logits.subarray(r * V, (r + 1) * V);
      return row.indexOf(Math.max(...row));
    });
    const fromGraph = await withNew.forwardNew({ ...batch, argmaxOnly: true });
    const fromLogits = await without.forwardNew({ ...batch, argmaxOnly: true });
    expect([...fromGraph.argmax!]).toEqual(best);
    expect(fromGraph.logits.length).toBe(0);
    expect([...fromLogits.argmax!]).toEqual(best);
    expect(fromLogits.logits).toEqual(ref.logits);
    expect(fromGraph.newKv).toEqual((await withNew.forwardNew(batch)).newKv);
    const fetched = await withNew.forwardNew(batch);
    const cut = await without.forwardNew(batch);
    expect(withNew.spec.numKvHeads).toBe(H);
    expect(fetched.seqLen).toBe(3);
    for (const res of [fetched, cut]) {
      expect(res.logits).toEqual(ref.logits);
      res.newKv.forEach((kv, l) => {
        expect(kv.key.length).toBe(2 * H * 3 * D);
        for (let bh = 0; bh < 2 * H; bh++) {
          const right = (x: Float32Array): Float32Array => x.slice((bh * 8 + 5) * D, (bh + 1) * 8 * D);
          expect(kv.key.slice(bh * 3 * D, (bh + 1) * 3 * D), `layer ${l} row·head ${bh}`).toEqual(right(ref.present[l]!.key));
          expect(kv.value.slice(bh * 3 * D, (bh + 1) * 3 * D)).toEqual(right(ref.present[l]!.value));
        }
      });
    }
  });
});
