import { seededTokens, type TokenRange } from './prompts';
import { createRng, seedOf } from './rng';

export type PromptRole = 'system' | 'user' | 'assistant';

/** One message of a prompt; the completions endpoint concatenates the parts' token ids. */
export interface PromptPart {
  readonly role: PromptRole;
  readonly tokenIds: readonly number[];
}

/** One request as the runner replays it. */
export interface BenchRequest {
  readonly index: number;
  readonly parts: readonly PromptPart[];
  readonly maxTokens: number;
  /** Own arrival offset in ms (traces); undefined: the runner's arrival process decides. */
  readonly arrivalMs?: number;
  /** Index of a request that must finish before this one is sent (the previous turn of a session). */
  readonly after?: number;
  readonly session?: number;
}

/** Requests by index; `total` undefined means unbounded (the runner stops at `requests` or `durationSec`). */
export interface RequestSource {
  readonly total: number | undefined;
  get(index: number): BenchRequest | undefined;
}

/** The knobs of the synthetic workloads (token counts); see `WORKLOAD_DEFAULTS` for the values per workload. */
export interface WorkloadShape {
  /** random: mean prompt length; shared-prefix: the unique suffix per request; multi-turn: user tokens per turn. */
  readonly inputLen: number;
  /** max_tokens per request (random: mean, spread by rangeRatio); multi-turn: also the synthetic answer length. */
  readonly maxTokens: number;
  /** shared-prefix: the shared system prompt; multi-turn: the session's system prompt. */
  readonly prefixLen: number;
  /** shared-prefix and multi-turn: how many distinct system prompts requests or sessions draw from. */
  readonly numPrefixes: number;
  /** multi-turn: sessions in flight together. */
  readonly sessions: number;
  /** multi-turn: turns per session; later requests start new sessions. */
  readonly turns: number;
  /** random: lengths uniform in [len × (1 − r), len × (1 + r)], as vLLM's --random-range-ratio. */
  readonly rangeRatio: number;
  readonly tokenRange: TokenRange;
}

export type SyntheticWorkload = 'shared-prefix' | 'multi-turn' | 'random';

/** Defaults sized for the tiny model on two CPU cores. */
export const WORKLOAD_DEFAULTS: Readonly<Record<SyntheticWorkload, Omit<WorkloadShape, 'tokenRange'>>> = {
  'shared-prefix': { inputLen: 32, maxTokens: 32, prefixLen: 256, numPrefixes: 4, sessions: 1, turns: 1, rangeRatio: 0 },
  'multi-turn': { inputLen: 32, maxTokens: 32, prefixLen: 64, numPrefixes: 1, sessions: 4, turns: 4, rangeRatio: 0 },
  random: { inputLen: 128, maxTokens: 32, prefixLen: 0, numPrefixes: 1, sessions: 1, turns: 1, rangeRatio: 0.5 },
};

// Stream keys: each kind of token block is seeded independently of the others.
const PREFIX = 1;
const SUFFIX = 2;
const CHOICE = 3;
const USER = 4;
const ASSISTANT = 5;
const LENGTHS = 6;

export function syntheticSource(kind: SyntheticWorkload, shape: WorkloadShape, seed: number): RequestSource {
  switch (kind) {
    case 'shared-prefix':
      return sharedPrefix(shape, seed);
    case 'multi-turn':
      return multiTurn(shape, seed);
    case 'random':
      return random(shape, seed);
  }
}

/** Each request: one of `numPrefixes` system prompts (drawn at random) + a unique user suffix. */
function sharedPrefix(s: WorkloadShape, seed: number): RequestSource {
  const prefixes = new Map<number, number[]>();
  return {
    total: undefined,
    get(index) {
      const p = Math.floor(createRng(seedOf(seed, CHOICE, index))() * s.numPrefixes);
      let prefix = prefixes.get(p);
      if (prefix === undefined) {
        prefix = seededTokens(seedOf(seed, PREFIX, p), s.prefixLen, s.tokenRange);
        prefixes.set(p, prefix);
      }
      const parts: PromptPart[] = [];
      if (prefix.length > 0) parts.push({ role: 'system', tokenIds: prefix });
      parts.push({ role: 'user', tokenIds: seededTokens(seedOf(seed, SUFFIX, index), Math.max(1, s.inputLen), s.tokenRange) });
      return { index, parts, maxTokens: s.maxTokens, session: p };
    },
  };
}

/**
 * Sessions of `turns` turns; `sessions` of them interleave (request i is turn ⌊j / sessions⌋ of session
 * j mod sessions within its wave of sessions × turns requests). Each turn's prompt is the whole conversation
 * so far: system prompt, earlier user turns and synthetic answers of `maxTokens` tokens, then the new user
 * turn. A turn is sent only after the session's previous turn finished.
 */
function multiTurn(s: WorkloadShape, seed: number): RequestSource {
  const wave = s.sessions * s.turns;
  const prefixes = new Map<number, number[]>();
  return {
    total: undefined,
    get(index) {
      const j = index % wave;
      const turn = Math.floor(j / s.sessions);
      const session = Math.floor(index / wave) * s.sessions + (j % s.sessions);
      const p = session % s.numPrefixes;
      let prefix = prefixes.get(p);
      if (prefix === undefined) {
        prefix = seededTokens(seedOf(seed, PREFIX, p), s.prefixLen, s.tokenRange);
        prefixes.set(p, prefix);
      }
      const parts: PromptPart[] = [];
      if (prefix.length > 0) parts.push({ role: 'system', tokenIds: prefix });
      for (let k = 0; k <= turn; k++) {
        parts.push({ role: 'user', tokenIds: seededTokens(seedOf(seed, USER, session, k), Math.max(1, s.inputLen), s.tokenRange) });
        if (k < turn)
          parts.push({ role: 'assistant', tokenIds: seededTokens(seedOf(seed, ASSISTANT, session, k), s.maxTokens, s.tokenRange) });
      }
      return { index, parts, maxTokens: s.maxTokens, session, ...(turn > 0 ? { after: index - s.sessions } : {}) };
    },
  };
}

/** Independent prompts of random length and random tokens. */
function random(s: WorkloadShape, seed: number): RequestSource {
  const spread = (len: number, r: () => number): number => Math.max(1, Math.round(len * (1 - s.rangeRatio) + r() * 2 * s.rangeRatio * len));
  return {
    total: undefined,
    get(index) {
      const r = createRng(seedOf(seed, LENGTHS, index));
      const inputLen = spread(s.inputLen, r);
      const maxTokens = spread(s.maxTokens, r);
      return { index, parts: [{ role: 'user', tokenIds: seededTokens(seedOf(seed, SUFFIX, index), inputLen, s.tokenRange) }], maxTokens };
    },
  };
}

/** A fixed list of requests (a trace replay, or a test's hand-made list). */
export function listSource(requests: readonly BenchRequest[]): RequestSource {
  return { total: requests.length, get: (i) => requests[i] };
}

export function promptLength(req: BenchRequest): number {
  let n = 0;
  for (const p of req.parts) n += p.tokenIds.length;
  return n;
}
