import { loadModelSpec, ModelRunner, referenceGenerate, samplingParams } from '@pdserve/model';
import { IncrementalDetokenizer, StopMatcher, Tokenizer } from '@pdserve/tokenizer';
import { Flags, int, num, type CommandSpec } from '../args';

export const generate: CommandSpec = {
  name: 'generate',
  summary: 'Generate a completion with the reference loop (one sequence, no batching) and stream it to the terminal.',
  usage: 'generate --model DIR --prompt TEXT [--max-tokens N] [--temperature T] [--seed N] [--chat]',
  flags: {
    model: { type: 'string', help: 'Hugging Face-layout model directory', required: true },
    prompt: { type: 'string', help: 'prompt text', required: true },
    'max-tokens': { type: 'string', help: 'most tokens to generate', default: '64', value: int(1) },
    temperature: { type: 'string', help: '0 = greedy', default: '0', value: num({ min: 0 }) },
    'top-p': { type: 'string', help: 'nucleus sampling mass', default: '1', value: num({ above: 0 }) },
    'top-k': { type: 'string', help: '0 = off', default: '0', value: int(0) },
    seed: { type: 'string', help: 'sampling seed (reproducible output)', value: int() },
    stop: { type: 'string', help: 'a stop string' },
    chat: { type: 'boolean', help: "wrap the prompt in the model's chat template as a user message" },
    'ignore-eos': { type: 'boolean', help: 'keep going past the end-of-sequence token' },
  },
  async run(f: Flags) {
    const dir = f.required('model');
    const prompt = f.required('prompt');
    const spec = loadModelSpec(dir);
    const tokenizer = await Tokenizer.fromDir(dir);
    const text = f.bool('chat') ? tokenizer.applyChatTemplate([{ role: 'user', content: prompt }], { addGenerationPrompt: true }) : prompt;
    const ids = tokenizer.encode(text, { addSpecialTokens: !f.bool('chat') });
    const runner = await ModelRunner.create(spec);
    const params = samplingParams({
      temperature: f.num('temperature') ?? 0,
      topP: f.num('top-p') ?? 1,
      topK: f.int('top-k', 0) ?? 0,
      seed: f.int('seed'),
      maxTokens: f.int('max-tokens', 1) ?? 64,
      ignoreEos: f.bool('ignore-eos'),
      stopTokenIds: tokenizer.eosTokenIds,
    });
    const detok = new IncrementalDetokenizer(tokenizer, { promptTokenIds: ids });
    const stop = new StopMatcher(f.str('stop') ? [f.str('stop')!] : []);
    const res = await referenceGenerate(runner, ids, params, (t) => {
      const { text: out, stopped } = stop.push(detok.push(t.tokenId));
      process.stdout.write(out);
      return !stopped;
    });
    process.stdout.write(stop.push(detok.flush()).text + stop.flush() + '\n');
    process.stderr.write(`[${ids.length} prompt tokens, ${res.tokenIds.length} generated, finish: ${res.finishReason}]\n`);
    await runner.release();
  },
};
