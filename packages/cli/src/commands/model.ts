import { buildTinyModel, PRESETS, type PresetName } from '@pdserve/model';
import { Flags, UsageError, type CommandSpec } from '../args';
import { progressBar } from '../progress';

export const modelTiny: CommandSpec = {
  name: 'model tiny',
  summary: 'Build the built-in tiny Llama-style model, or a real model\'s shape (--preset), with random weights and a real tokenizer, as a Hugging Face-layout directory.',
  usage: `model tiny --out DIR [--preset ${Object.keys(PRESETS).join('|')}] [--seed N] [--layers N] [--hidden N] [--heads N] [--kv-heads N] [--ffn N] [--tokenizer llama2|qwen3]`,
  flags: {
    out: { type: 'string', help: 'directory to write' },
    preset: { type: 'string', help: `a real model's shape with random weights: ${Object.keys(PRESETS).join(', ')} (flags given override it)` },
    seed: { type: 'string', help: 'weight seed; the same seed gives byte-identical files', default: '0' },
    layers: { type: 'string', help: 'decoder layers (default 4)' },
    hidden: { type: 'string', help: 'hidden size (default 256)' },
    heads: { type: 'string', help: 'attention heads (default 8)' },
    'kv-heads': { type: 'string', help: 'key/value heads, grouped-query attention (default 2)' },
    ffn: { type: 'string', help: 'MLP intermediate size (default 688)' },
    tokenizer: { type: 'string', help: 'llama2 (vocab 32000) or qwen3 (vocab 151936) (default llama2)' },
  },
  async run(f: Flags) {
    const tokenizer = f.str('tokenizer');
    if (tokenizer !== undefined && tokenizer !== 'llama2' && tokenizer !== 'qwen3') throw new UsageError(`--tokenizer must be llama2 or qwen3, got "${tokenizer}"`);
    const preset = f.str('preset');
    if (preset !== undefined && !(preset in PRESETS)) throw new UsageError(`--preset must be one of ${Object.keys(PRESETS).join(', ')}, got "${preset}"`);
    const out = f.required('out');
    const bar = progressBar('building tiny model');
    const t0 = performance.now();
    await buildTinyModel(
      {
        out,
        preset: preset as PresetName | undefined,
        seed: f.int('seed'),
        layers: f.int('layers', 1),
        hidden: f.int('hidden', 1),
        heads: f.int('heads', 1),
        kvHeads: f.int('kv-heads', 1),
        ffn: f.int('ffn', 1),
        tokenizer,
      },
      (done, total) => bar.update(done, total),
    );
    bar.end();
    process.stdout.write(`wrote ${out} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  },
};
