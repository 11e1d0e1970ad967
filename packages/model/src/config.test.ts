import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureTinyModel, loadModelSpec, ModelLoadError, ModelRunner } from './index';

let good: string;
let scratch: string;
beforeAll(async () => {
  good = await ensureTinyModel();
  scratch = mkdtempSync(join(tmpdir(), 'pdserve-config-'));
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A copy of the tiny model's small files (the ONNX graph is linked by path, not copied). */
function variant(name: string, edit: (dir: string) => void): string {
  const dir = join(scratch, name);
  cpSync(good, dir, { recursive: true, filter: (src) => !src.endsWith('.onnx_data') });
  edit(dir);
  return dir;
}

function oneLineError(fn: () => unknown, pattern: RegExp): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as Error).message).toMatch(pattern);
    expect((err as Error).message).not.toContain('\n');
    return;
  }
  throw new Error('expected an error');
}

describe('model directory loader', () => {
  it('reads the tiny model', () => {
    const spec = loadModelSpec(good, 'tiny');
    expect(spec).toMatchObject({
      id: 'tiny',
      modelType: 'llama',
      numLayers: 4,
      numHeads: 8,
      numKvHeads: 2,
      headDim: 32,
      vocabSize: 32000,
      eosTokenIds: [2],
    });
  });

  it('reads an Optimum-style Qwen2/Qwen3/Mistral config (head_dim given or derived, eos lists, flat model.onnx)', () => {
    const dir = variant('qwen', (d) => {
      const cfg = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
      writeFileSync(join(d, 'config.json'), JSON.stringify({ ...cfg, model_type: 'qwen3', head_dim: 64, eos_token_id: [151645, 151643] }));
      writeFileSync(join(d, 'generation_config.json'), JSON.stringify({ eos_token_id: 151645 }));
    });
    const spec = loadModelSpec(dir);
    expect(spec.headDim).toBe(64);
    expect(spec.eosTokenIds).toEqual([151645, 151643]);
    const mistral = variant('mistral', (d) => {
      const cfg = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
      delete cfg.head_dim;
      delete cfg.num_key_value_heads;
      writeFileSync(join(d, 'config.json'), JSON.stringify({ ...cfg, model_type: 'mistral' }));
    });
    expect(loadModelSpec(mistral)).toMatchObject({ headDim: 32, numKvHeads: 8 });
  });

  it('names the problem in one line', () => {
    oneLineError(() => loadModelSpec(join(scratch, 'nope')), /model directory .*nope does not exist/);
    oneLineError(() => loadModelSpec(variant('no-config', (d) => rmSync(join(d, 'config.json')))), /config\.json not found/);
    oneLineError(
      () => loadModelSpec(variant('bad-json', (d) => writeFileSync(join(d, 'config.json'), '{"model_type": '))),
      /config\.json .* is not valid JSON/,
    );
    oneLineError(
      () => loadModelSpec(variant('gpt2', (d) => writeFileSync(join(d, 'config.json'), JSON.stringify({ model_type: 'gpt2' })))),
      /unknown model_type "gpt2" in config\.json/,
    );
    oneLineError(
      () =>
        loadModelSpec(
          variant('no-layers', (d) =>
            writeFileSync(
              join(d, 'config.json'),
              JSON.stringify({ model_type: 'llama', hidden_size: 64, num_attention_heads: 4, vocab_size: 10 }),
            ),
          ),
        ),
      /config\.json is missing the field num_hidden_layers/,
    );
    oneLineError(() => loadModelSpec(variant('no-tok', (d) => rmSync(join(d, 'tokenizer.json')))), /tokenizer\.json not found/);
    oneLineError(
      () => loadModelSpec(variant('no-onnx', (d) => rmSync(join(d, 'onnx'), { recursive: true }))),
      /onnx\/model\.onnx not found/,
    );
  });

  it('a corrupt ONNX file fails to load with a one-line error', async () => {
    const dir = variant('corrupt', (d) => writeFileSync(join(d, 'onnx', 'model.onnx'), 'not a protobuf'));
    const err = await ModelRunner.create(loadModelSpec(dir)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as Error).message).toMatch(/cannot load .*model\.onnx/);
    expect((err as Error).message).not.toContain('\n');
  });
});
