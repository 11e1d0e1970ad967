import { buildTinyModel } from '@pdserve/model';
import { Flags, int, oneOf, type CommandSpec } from '../args';
import { progressBar } from '../progress';

export const modelTiny: CommandSpec = {
  name: 'model tiny',
  summary: 'Build the built-in tiny Llama-style model (random weights, real tokenizer) as a Hugging Face-layout directory.',
  usage: 'model tiny --out DIR [--seed N] [--layers N] [--hidden N] [--heads N] [--kv-heads N] [--ffn N] [--tokenizer llama2|qwen3]',
  flags: {
    out: { type: 'string', help: 'directory to write', required: true },
    seed: { type: 'string', help: 'weight seed; the same seed gives byte-identical files', default: '0', value: int() },
    layers: { type: 'string', help: 'decoder layers', default: '4', value: int(1) },
    hidden: { type: 'string', help: 'hidden size', default: '256', value: int(1) },
    heads: { type: 'string', help: 'attention heads', default: '8', value: int(1) },
    'kv-heads': { type: 'string', help: 'key/value heads (grouped-query attention)', default: '2', value: int(1) },
    ffn: { type: 'string', help: 'MLP intermediate size', default: '688', value: int(1) },
    tokenizer: { type: 'string', help: 'llama2 (vocab 32000) or qwen3 (vocab 151936)', default: 'llama2', value: oneOf('llama2', 'qwen3') },
  },
  async run(f: Flags) {
    const tokenizer = f.str('tokenizer') as 'llama2' | 'qwen3';
    const out = f.required('out');
    const bar = progressBar('building tiny model');
    const t0 = performance.now();
    await buildTinyModel(
      {
        out,
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
