import { buildTinyModel, draftPair, PRESETS, QUANTIZATIONS, type PresetName, type Quantization } from '@pdserve/model';
import { Flags, int, num, oneOf, UsageError, type CommandSpec } from '../args';
import { progressBar } from '../progress';

export const modelTiny: CommandSpec = {
  name: 'model tiny',
  summary:
    "Build the built-in tiny Llama-style model, or a real model's shape (--preset), with random weights and a real tokenizer, as a Hugging Face-layout directory.",
  usage: `model tiny --out DIR [--preset ${Object.keys(PRESETS).join('|')}] [--seed N] [--layers N] [--hidden N] [--heads N] [--kv-heads N] [--ffn N] [--tokenizer llama2|qwen3] [--draft-out DIR [--draft-layers N] [--residual-scale S] [--draft-quantize int8|int4 [--draft-quantize-layers]]]`,
  flags: {
    out: { type: 'string', help: 'directory to write', required: true },
    preset: {
      type: 'string',
      help: "a real model's shape with random weights (flags given override it)",
      value: oneOf(...Object.keys(PRESETS)),
    },
    seed: { type: 'string', help: 'weight seed; the same seed gives byte-identical files', default: '0', value: int() },
    // No defaults here: a preset's shape applies unless a flag is given (the tiny defaults are the builder's).
    layers: { type: 'string', help: 'decoder layers (default 4)', value: int(1) },
    hidden: { type: 'string', help: 'hidden size (default 256)', value: int(1) },
    heads: { type: 'string', help: 'attention heads (default 8)', value: int(1) },
    'kv-heads': { type: 'string', help: 'key/value heads, grouped-query attention (default 2)', value: int(1) },
    ffn: { type: 'string', help: 'MLP intermediate size (default 688)', value: int(1) },
    tokenizer: { type: 'string', help: 'llama2 (vocab 32000) or qwen3 (vocab 151936) (default llama2)', value: oneOf('llama2', 'qwen3') },
    'draft-out': {
      type: 'string',
      help: "also write a synthetic speculative-decoding draft here: the target's first --draft-layers layers (shared embeddings and lm_head); the target's other layers add --residual-scale × their contribution (random weights: a test rig, not a real pair)",
    },
    'draft-layers': { type: 'string', help: 'layers of the draft (default 1)', default: '1', value: int(1) },
    'residual-scale': {
      type: 'string',
      help: "scale of the target's layers past the draft's: 0 = the draft's outputs, 1 = an ordinary model (default 0.3)",
      default: '0.3',
      value: num({ min: 0 }),
    },
    'draft-quantize': {
      type: 'string',
      help: "store the draft's lm_head quantized (onnxruntime MatMulNBits, blocks of 128): int8 or int4; a cheaper draft round, the target stays float32 (default: float32)",
      value: oneOf(...QUANTIZATIONS),
    },
    'draft-quantize-layers': { type: 'boolean', help: "quantize the draft's layer projections too, not only its lm_head" },
  },
  async run(f: Flags) {
    const tokenizer = f.str('tokenizer') as 'llama2' | 'qwen3' | undefined;
    const preset = f.str('preset') as PresetName | undefined;
    const out = f.required('out');
    const bar = progressBar('building tiny model');
    const t0 = performance.now();
    const shape = {
      preset,
      seed: f.int('seed'),
      layers: f.int('layers', 1),
      hidden: f.int('hidden', 1),
      heads: f.int('heads', 1),
      kvHeads: f.int('kv-heads', 1),
      ffn: f.int('ffn', 1),
      tokenizer,
    };
    const draftOut = f.str('draft-out');
    const draftQuantize = f.str('draft-quantize') as Quantization | undefined;
    if (draftQuantize !== undefined && draftOut === undefined) throw new UsageError('--draft-quantize needs --draft-out');
    if (f.bool('draft-quantize-layers') && draftQuantize === undefined)
      throw new UsageError('--draft-quantize-layers needs --draft-quantize');
    const pair =
      draftOut === undefined ? undefined : draftPair(shape, f.int('draft-layers', 1) ?? 1, f.num('residual-scale') ?? 0.3, draftQuantize);
    await buildTinyModel({ out, ...(pair?.target ?? shape) }, (done, total) => bar.update(done, total));
    if (pair) await buildTinyModel({ out: draftOut!, ...pair.draft, ...(f.bool('draft-quantize-layers') ? { quantizeLayers: true } : {}) });
    bar.end();
    process.stdout.write(
      `wrote ${out}${draftOut ? ` and its draft ${draftOut}` : ''} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`,
    );
  },
};
