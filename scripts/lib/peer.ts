// transformers.js on the same ONNX files: our independent cross-check and our peer in benchmarks.
import { AutoModelForCausalLM, env, Tensor, type PreTrainedModel } from '@huggingface/transformers';

export interface Peer {
  readonly model: PreTrainedModel;
  /** Greedy continuation of equal-length prompts (one batch); never stops at EOS. */
  generate(prompts: readonly (readonly number[])[], maxNewTokens: number): Promise<number[][]>;
  dispose(): Promise<void>;
}

export async function loadPeer(dir: string, threads = 0): Promise<Peer> {
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  const model = await AutoModelForCausalLM.from_pretrained(dir, {
    dtype: 'fp32',
    device: 'cpu',
    session_options: threads > 0 ? { intraOpNumThreads: threads } : {},
  });
  return {
    model,
    async generate(prompts, maxNewTokens) {
      const B = prompts.length;
      const L = prompts[0]!.length;
      const ids = new BigInt64Array(B * L);
      prompts.forEach((p, b) => p.forEach((t, i) => (ids[b * L + i] = BigInt(t))));
      const out = (await model.generate({
        input_ids: new Tensor('int64', ids, [B, L]),
        attention_mask: new Tensor('int64', new BigInt64Array(B * L).fill(1n), [B, L]),
        max_new_tokens: maxNewTokens,
        do_sample: false,
        eos_token_id: [],
      } as Parameters<PreTrainedModel['generate']>[0])) as Tensor;
      const data = out.data as BigInt64Array;
      const width = out.dims[1]!;
      return prompts.map((_, b) => Array.from(data.subarray(b * width + L, (b + 1) * width), Number));
    },
    async dispose() {
      await model.dispose();
    },
  };
}
