// Hand-kept TypeScript mirrors of proto/pdserve/v1/worker.proto (keepCase, longs as numbers, defaults
// on, a oneof's set field named in `kind`). wire.test.ts checks WIRE_FIELDS and WIRE_ONEOFS against the
// loaded descriptors so the two cannot drift.

export interface SamplingParamsMsg {
  temperature: number;
  top_p: number;
  top_k: number;
  min_p: number;
  repetition_penalty: number;
  presence_penalty: number;
  frequency_penalty: number;
  has_seed: boolean;
  seed: number;
  max_tokens: number;
  stop_token_ids: number[];
  ignore_eos: boolean;
  has_logprobs: boolean;
  logprobs: number;
  /** Token id (as a decimal string, proto map keys) -> bias; optional to send, always set when received. */
  logit_bias?: Record<string, number>;
  min_tokens?: number;
  structured_output?: StructuredOutputMsg | null;
  has_prompt_logprobs?: boolean;
  prompt_logprobs?: number;
}

export interface StructuredOutputMsg {
  kind: string;
  schema_json: string;
  has_strict: boolean;
  strict: boolean;
}

export interface PrefillPlanMsg {
  mode: string;
  prefill_worker: string;
  transfer_id: string;
}

export interface GenerateRequestMsg {
  request_id: string;
  prompt_token_ids: number[];
  sampling: SamplingParamsMsg | null;
  priority: number;
  prefill: PrefillPlanMsg | null;
  /** Roots the block-hash chain with the model id; '' = unsalted (optional to send; always set when received). */
  cache_salt?: string;
  /** A migrated stream's tokens already generated (optional to send; always set when received). */
  resume_output_token_ids?: number[];
  /** 'priority' | 'default' | 'flex'; '' = default (optional to send; always set when received). */
  service_tier?: string;
}

export interface TokenLogprobMsg {
  token_id: number;
  logprob: number;
}

export interface TokenLogprobsMsg {
  logprob: number;
  top: TokenLogprobMsg[];
}

export interface PromptLogprobMsg {
  token_id: number;
  logprob: number;
  rank: number;
  top: TokenLogprobMsg[];
}

export interface GenerateChunkMsg {
  token_ids: number[];
  logprobs: TokenLogprobsMsg[];
  finish_reason: string;
  prompt_tokens: number;
  cached_tokens: number;
  prefilled_by: string;
  /** Optional to send; always set (maybe empty) when received. */
  prompt_logprobs?: PromptLogprobMsg[];
}

export interface TransferTargetMsg {
  grpc_address: string;
  transfer_id: string;
  transport: string;
  /** Send each prefill chunk's full blocks as it is computed (optional to send; always set when received). */
  stream_parts?: boolean;
  /** See worker.proto's TransferTarget (optional to send; always set when received). */
  leave_tail?: boolean;
}

export interface PrefillRequestMsg {
  request_id: string;
  prompt_token_ids: number[];
  sampling: SamplingParamsMsg | null;
  from_block: number;
  target: TransferTargetMsg | null;
  /** As in GenerateRequestMsg. */
  cache_salt?: string;
  /** As in GenerateRequestMsg (optional to send; always set when received). */
  priority?: number;
  service_tier?: string;
}

export interface PrefillFirstMsg {
  first_token: number;
  first_logprob: number;
  first_top: TokenLogprobMsg[];
  cached_tokens: number;
  prompt_tokens: number;
  /** As in GenerateChunkMsg. */
  prompt_logprobs?: PromptLogprobMsg[];
}

export type PrefillEventMsg = { kind: 'first'; first: PrefillFirstMsg } | { kind: 'done'; done: PrefillResponseMsg };

export interface PrefillResponseMsg {
  first_token: number;
  first_logprob: number;
  first_top: TokenLogprobMsg[];
  rng_state: number[];
  cached_tokens: number;
  blocks: number;
  bytes: number;
  transport: string;
}

export type HealthRequestMsg = Record<string, never>;
export interface HealthResponseMsg {
  status: string;
  role: string;
  instance_id: string;
  incarnation: string;
}
export type StatsRequestMsg = Record<string, never>;
export interface StatsResponseMsg {
  running: number;
  waiting: number;
  free_blocks: number;
  used_blocks: number;
  cached_blocks: number;
  total_blocks: number;
  prefix_cache_hit_tokens: number;
  prefix_cache_query_tokens: number;
  prefill_tokens_computed: number;
  preemptions: number;
  queued_prefill_tokens: number;
  import_fallbacks: number;
  prefetched_tokens: number;
  prefetch_rejects: number;
  store_prefetched_blocks: number;
  store_offloaded_blocks: number;
  store_offload_dropped: number;
}
export type BlockSnapshotRequestMsg = Record<string, never>;
export interface BlockSnapshotResponseMsg {
  worker: string;
  incarnation: string;
  seq: number;
  hashes: string[];
}

/** Field names per message, for the drift test. */
export const WIRE_FIELDS: Readonly<Record<string, readonly string[]>> = {
  'pdserve.v1.SamplingParams': [
    'temperature',
    'top_p',
    'top_k',
    'min_p',
    'repetition_penalty',
    'presence_penalty',
    'frequency_penalty',
    'has_seed',
    'seed',
    'max_tokens',
    'stop_token_ids',
    'ignore_eos',
    'has_logprobs',
    'logprobs',
    'logit_bias',
    'min_tokens',
    'structured_output',
    'has_prompt_logprobs',
    'prompt_logprobs',
  ],
  'pdserve.v1.StructuredOutput': ['kind', 'schema_json', 'has_strict', 'strict'],
  'pdserve.v1.PrefillPlan': ['mode', 'prefill_worker', 'transfer_id'],
  'pdserve.v1.GenerateRequest': [
    'request_id',
    'prompt_token_ids',
    'sampling',
    'priority',
    'prefill',
    'cache_salt',
    'resume_output_token_ids',
    'service_tier',
  ],
  'pdserve.v1.TokenLogprob': ['token_id', 'logprob'],
  'pdserve.v1.TokenLogprobs': ['logprob', 'top'],
  'pdserve.v1.PromptLogprob': ['token_id', 'logprob', 'rank', 'top'],
  'pdserve.v1.GenerateChunk': [
    'token_ids',
    'logprobs',
    'finish_reason',
    'prompt_tokens',
    'cached_tokens',
    'prefilled_by',
    'prompt_logprobs',
  ],
  'pdserve.v1.TransferTarget': ['grpc_address', 'transfer_id', 'transport', 'stream_parts', 'leave_tail'],
  'pdserve.v1.PrefillRequest': [
    'request_id',
    'prompt_token_ids',
    'sampling',
    'from_block',
    'target',
    'cache_salt',
    'priority',
    'service_tier',
  ],
  'pdserve.v1.PrefillFirst': ['first_token', 'first_logprob', 'first_top', 'cached_tokens', 'prompt_tokens', 'prompt_logprobs'],
  'pdserve.v1.PrefillEvent': ['first', 'done'],
  'pdserve.v1.PrefillResponse': ['first_token', 'first_logprob', 'first_top', 'rng_state', 'cached_tokens', 'blocks', 'bytes', 'transport'],
  'pdserve.v1.HealthRequest': [],
  'pdserve.v1.HealthResponse': ['status', 'role', 'instance_id', 'incarnation'],
  'pdserve.v1.StatsRequest': [],
  'pdserve.v1.StatsResponse': [
    'running',
    'waiting',
    'free_blocks',
    'used_blocks',
    'cached_blocks',
    'total_blocks',
    'prefix_cache_hit_tokens',
    'prefix_cache_query_tokens',
    'prefill_tokens_computed',
    'preemptions',
    'queued_prefill_tokens',
    'import_fallbacks',
    'prefetched_tokens',
    'prefetch_rejects',
    'store_prefetched_blocks',
    'store_offloaded_blocks',
    'store_offload_dropped',
  ],
  'pdserve.v1.BlockSnapshotRequest': [],
  'pdserve.v1.BlockSnapshotResponse': ['worker', 'incarnation', 'seq', 'hashes'],
};

/** Message name -> the name of its oneof, for the messages that have one (the drift test checks it). */
export const WIRE_ONEOFS: Readonly<Record<string, string>> = {
  'pdserve.v1.PrefillEvent': 'kind',
};
