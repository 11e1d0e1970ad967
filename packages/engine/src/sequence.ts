import { hashBlock, rootHash, type BlockHash, type BlockId } from '@pdserve/kv-cache';
import type { Sampler, SamplingParams } from '@pdserve/model';
import type { ExportedKv, FinishReason, GenerateOutput, PrefetchedKv, PrefilledKv, PromptLogprob } from '@pdserve/contracts';
import { OutputQueue } from './output-queue';
import type { Proposal, SpecController } from './speculative';

export type SequenceStatus = 'waiting' | 'running' | 'finished';

/** One request as it flows through the scheduler, the executor and the output path. */
export class Sequence {
  status: SequenceStatus = 'waiting';
  /** Prompt then generated tokens; only ever grows. */
  readonly tokens: number[];
  readonly prompt: readonly number[];
  readonly output: number[] = [];
  readonly blockTable: BlockId[] = [];
  /** Tokens whose KV is in blockTable (computed or taken from the prefix cache). */
  numComputed = 0;
  /** Prompt tokens served from the prefix cache at first admission (reported as cached_tokens). */
  numCachedPrompt = 0;
  /** Whether numCachedPrompt has been fixed (first admission only: recompute after preemption doesn't count). */
  admittedOnce = false;
  finishReason: FinishReason | undefined;
  readonly outputs = new OutputQueue<GenerateOutput>();
  /** Decode role: KV computed elsewhere, admitted instead of a local prefill (dropped if it cannot be). */
  prefilled: PrefilledKv | undefined;
  /** Prefix blocks fetched from the kv-store, put into the prefix cache before the sequence is admitted. */
  prefetched: PrefetchedKv | undefined;
  /** Prefill role: export KV from this block on when the first token is out. */
  exportFromBlock: number | undefined;
  /** Prefill role, streamed: receives each chunk's newly filled full blocks (exportFromBlock moves past them). */
  onExportBlocks: ((part: ExportedKv) => void) | undefined;
  /** Prefill role: ends with the export once the prompt is computed, sampling nothing (exportKv.withoutToken). */
  exportOnly = false;
  /** Decode role, KV streamed in: its first decode row's key to the blocks staged on the model thread (stagedKeyOf). */
  stagedKey: string | undefined;
  /** Prompt logprobs by position (1 on), collected while the prompt is computed (see prompt-logprobs.ts). */
  readonly promptLogprobs: PromptLogprob[] = [];
  /** Whether they went out with the first token (a recompute after preemption collects none). */
  promptLogprobsSent = false;

  /** Computing the prompt here must yield every position's logits (and skip the prefix cache). */
  get collectsPromptLogprobs(): boolean {
    return this.params.promptLogprobs !== undefined && !this.promptLogprobsSent;
  }

  /** Speculative decoding's per-sequence length control; undefined: this sequence never speculates. */
  spec: SpecController | undefined;
  /** Tokens to speculate this step: set before scheduling, lowered by the scheduler when blocks are short. */
  lookahead = 0;
  /** This step's n-gram proposal (a draft model's is made after scheduling). */
  proposal: Proposal | undefined;
  /** Hashes of the full blocks of `tokens`, extended lazily. */
  private readonly hashes: BlockHash[] = [];

  constructor(
    readonly id: number,
    readonly requestId: string,
    prompt: readonly number[],
    readonly params: SamplingParams,
    readonly sampler: Sampler,
    readonly priority: number,
    readonly arrival: number,
    private readonly modelId: string,
    readonly blockSize: number,
    /** Roots the block-hash chain with the model id (see GenerateRequest.cacheSalt). */
    readonly cacheSalt = '',
  ) {
    this.prompt = [...prompt];
    this.tokens = [...prompt];
    this.promptLen = prompt.length;
  }

  readonly promptLen: number;

  /** Full blocks whose hash has been registered in the prefix cache. */
  numPublished = 0;

  appendToken(tokenId: number): void {
    this.tokens.push(tokenId);
    this.output.push(tokenId);
  }
  /** Prefill until only the last token lacks KV; from then on each step decodes one token. */
  get isPrefill(): boolean {
    return this.tokens.length - this.numComputed > 1;
  }

  /** Chained hash of full block i of `tokens`. */
  blockHash(i: number): BlockHash {
    while (this.hashes.length <= i) {
      const j = this.hashes.length;
      const parent = j === 0 ? rootHash(this.modelId, this.cacheSalt) : this.hashes[j - 1]!;
      this.hashes.push(hashBlock(parent, this.tokens.slice(j * this.blockSize, (j + 1) * this.blockSize)));
    }
    return this.hashes[i]!;
  }

  /** Number of full blocks in `tokens`. */
  get numFullBlocks(): number {
    return Math.floor(this.tokens.length / this.blockSize);
  }
}
