// The meta of a pushed prefill's KV transfer, written by the prefill worker and read by the decode worker:
// the first token (with its logprobs), the sampler's state after it, and the block the KV starts at. One
// typed codec for both ends; what arrives is checked field by field before the decode worker trusts it.
import type { TransferMeta } from '@pdserve/transfer';
import type { PrefillFirstMsg, TokenLogprobMsg } from './wire';

export interface HandoffMeta {
  readonly first: PrefillFirstMsg;
  /** The sampler's state after the first token: four u32 words, or none (greedy). */
  readonly rngState?: readonly [number, number, number, number];
  /** Index of the first block sent: the decode worker holds the ones before. */
  readonly fromBlock: number;
}

export class HandoffMetaError extends Error {
  override readonly name = 'HandoffMetaError';
}

export function encodeHandoffMeta(m: HandoffMeta): TransferMeta {
  // The fields the decode worker imports with; prompt logprobs reach the client on the Prefill stream instead.
  const { first_token, first_logprob, first_top, cached_tokens, prompt_tokens } = m.first;
  const first = { first_token, first_logprob, first_top, cached_tokens, prompt_tokens };
  return { first: JSON.stringify(first), rng_state: m.rngState?.join(',') ?? '', from_block: String(m.fromBlock) };
}

/**
 * The meta of one part of a streamed handoff (a prefill chunk's full blocks, sent while the next chunk
 * computes): only where its blocks start. The first token and sampler state come with the last transfer.
 */
export interface HandoffPartMeta {
  readonly fromBlock: number;
  /**
   * The last transfer of a handoff that leaves the prompt's last block to the decode worker (no first
   * token): the prompt tokens the prefill worker took from its prefix cache.
   */
  readonly cachedTokens?: number;
}

export function encodeHandoffPartMeta(m: HandoffPartMeta): TransferMeta {
  return { from_block: String(m.fromBlock), ...(m.cachedTokens !== undefined ? { cached_tokens: String(m.cachedTokens) } : {}) };
}

/** A part's meta; throws HandoffMetaError if from_block (or cached_tokens, when there) is missing or malformed. */
export function decodeHandoffPartMeta(meta: TransferMeta): HandoffPartMeta {
  const fromBlock = Number(meta['from_block'] ?? 'NaN');
  if (!isCount(fromBlock)) throw new HandoffMetaError(`handoff part meta: bad from_block ${JSON.stringify(meta['from_block'])}`);
  const cached = meta['cached_tokens'];
  if (cached === undefined) return { fromBlock };
  const cachedTokens = cached === '' ? Number.NaN : Number(cached);
  if (!isCount(cachedTokens)) throw new HandoffMetaError(`handoff part meta: bad cached_tokens ${JSON.stringify(cached)}`);
  return { fromBlock, cachedTokens };
}

/**
 * The transfer id of part `index` of the streamed handoff `transferId`: the decode worker expecting
 * `transferId` admits these too, and nothing else. Fits the transfer engine's id pattern for ids of up to
 * 58 characters.
 */
export function handoffPartId(transferId: string, index: number): string {
  return `${transferId}-p${index}`;
}

/** The handoff a part id belongs to, or undefined if `id` names no part. */
export function handoffOfPart(id: string): string | undefined {
  const m = /^(.+)-p(0|[1-9][0-9]{0,5})$/.exec(id);
  return m?.[1];
}

/** The handoff in a transfer's meta; throws HandoffMetaError if any field is missing or malformed. */
export function decodeHandoffMeta(meta: TransferMeta): HandoffMeta {
  const fromBlock = Number(meta['from_block'] ?? 'NaN');
  if (!isCount(fromBlock)) throw new HandoffMetaError(`handoff meta: bad from_block ${JSON.stringify(meta['from_block'])}`);
  let raw: unknown;
  try {
    raw = JSON.parse(meta['first'] ?? '');
  } catch {
    throw new HandoffMetaError('handoff meta: first is not JSON');
  }
  const rngState = parseRngState(meta['rng_state'] ?? '');
  return { first: checkFirst(raw), fromBlock, ...(rngState === undefined ? {} : { rngState }) };
}

function checkFirst(v: unknown): PrefillFirstMsg {
  const o = v as Record<string, unknown> | null;
  if (typeof o !== 'object' || o === null) throw new HandoffMetaError('handoff meta: first is not an object');
  const { first_token, first_logprob, first_top, cached_tokens, prompt_tokens } = o;
  if (
    !isCount(first_token) ||
    !isCount(cached_tokens) ||
    !isCount(prompt_tokens) ||
    typeof first_logprob !== 'number' ||
    !Array.isArray(first_top)
  ) {
    throw new HandoffMetaError('handoff meta: first has a missing or malformed field');
  }
  const top: TokenLogprobMsg[] = first_top.map((t: unknown) => {
    const e = t as Record<string, unknown> | null;
    if (typeof e !== 'object' || e === null || !isCount(e['token_id']) || typeof e['logprob'] !== 'number') {
      throw new HandoffMetaError('handoff meta: malformed first_top entry');
    }
    return { token_id: e['token_id'], logprob: e['logprob'] };
  });
  return { first_token, first_logprob, first_top: top, cached_tokens, prompt_tokens };
}

/** Four u32 words separated by commas, or '' (greedy: no sampler state). */
function parseRngState(text: string): readonly [number, number, number, number] | undefined {
  if (text === '') return undefined;
  const words = text.split(',').map(Number);
  if (words.length !== 4 || !words.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffff_ffff)) {
    throw new HandoffMetaError(`handoff meta: bad rng_state ${JSON.stringify(text)}`);
  }
  return words as unknown as readonly [number, number, number, number];
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}
