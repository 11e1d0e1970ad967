import { Rng, type RngState } from './rng';
import type { SampledToken, SamplingParams, TokenLogprob } from './sampling';

/** Temperatures below this are greedy (vLLM's _SAMPLING_EPS): 1/T would overflow the softmax. */
const GREEDY_TEMPERATURE = 1e-5;
/** First probability threshold (relative to the top token) when gathering a top-p nucleus. */
const NUCLEUS_FIRST_THRESHOLD = 2 ** -10;
/** Each retry lowers the threshold by this factor... */
const NUCLEUS_THRESHOLD_STEP = 64;
/** ...and below this one it drops to the min-p floor (or 0: every token). */
const NUCLEUS_THRESHOLD_FLOOR = 1e-30;

type Row = Float32Array | Float64Array;

/**
 * Buffers shared by every Sampler in the process: sample() is synchronous, so no two calls overlap,
 * and one vocab-sized set serves any number of sequences.
 */
class Scratch {
  work = new Float64Array(0);
  candidates = new Int32Array(0);
  counts = new Uint32Array(0);
  seen = new Uint8Array(0);
  /** The sum of `work` after Sampler.filter (unnormalised probabilities). */
  mass = 0;

  ensure(n: number): void {
    if (this.work.length >= n) return;
    this.work = new Float64Array(n);
    this.candidates = new Int32Array(n);
    this.counts = new Uint32Array(n);
    this.seen = new Uint8Array(n);
  }
}

const scratch = new Scratch();

/** Sampler.filter's answer when no top-k and a top-p of 1 keep every token (min-p then applies as a threshold). */
const DENSE = -1;

/**
 * Chooses the next token of one sequence. Order as vLLM: the grammar's allowed-token mask, min_tokens
 * (stop tokens suppressed), logit bias, repetition penalty, frequency and presence penalties,
 * temperature (0 = greedy), then top-k, top-p, min-p, and one seeded draw. Logprobs are of the model's
 * raw distribution, before any of these.
 */
export class Sampler {
  private readonly greedy: boolean;
  private readonly invTemperature: number;
  /** 0 when off (or when it would keep the whole vocab). */
  private readonly topK: number;
  private readonly penalised: boolean;
  private readonly rng: Rng | undefined;
  private readonly biasIds: Int32Array;
  private readonly biasValues: Float64Array;
  private readonly minTokens: number;
  /** What min_tokens holds back: the request's stop ids and, unless ignoreEos, the model's EOS. */
  private readonly stopIds: readonly number[];

  constructor(
    private readonly params: SamplingParams,
    private readonly vocabSize: number,
    eosTokenIds: readonly number[] = [],
  ) {
    validate(params, vocabSize);
    this.greedy = params.temperature < GREEDY_TEMPERATURE;
    this.invTemperature = this.greedy ? 0 : 1 / params.temperature;
    this.topK = params.topK > 0 && params.topK < vocabSize ? params.topK : 0;
    this.penalised = params.repetitionPenalty !== 1 || params.presencePenalty !== 0 || params.frequencyPenalty !== 0;
    // Greedy requests ignore the seed, as in vLLM.
    this.rng = this.greedy ? undefined : params.seed === undefined ? Rng.random() : new Rng(params.seed);
    const bias = Object.entries(params.logitBias ?? {}).filter(([, v]) => v !== 0);
    this.biasIds = Int32Array.from(bias, ([k]) => Number(k));
    this.biasValues = Float64Array.from(bias, ([, v]) => v);
    this.minTokens = params.minTokens ?? 0;
    const stops = new Set(params.stopTokenIds);
    if (!params.ignoreEos) for (const t of eosTokenIds) stops.add(t);
    this.stopIds = [...stops].filter((t) => t >= 0 && t < vocabSize);
  }

  /** The generator's position, so another worker can continue the same stream; undefined when greedy. */
  get rngState(): RngState | undefined {
    return this.rng?.state;
  }

  set rngState(state: RngState | undefined) {
    if (this.rng && state) this.rng.state = state;
  }

  /**
   * Continues a stream that already sampled `n` tokens elsewhere (a migrated request): every sampled token
   * takes exactly one draw (see draw), so the generator's position follows from the seed and `n` alone.
   */
  skipTokens(n: number): void {
    this.rng?.skipFloats(n);
  }

  /**
   * `logits`: one row of the model output (at least vocabSize wide; columns past it are padding and never
   * chosen). `promptTokenIds` / `outputTokenIds`: the sequence so far, for the penalties and min_tokens.
   * `allowed`: a token bitmask (bit i%32 of word i>>5 set = token i may be chosen), from a grammar.
   * `logprob` is NaN unless `params.logprobs` is set (it costs two passes over the row).
   */
  sample(logits: Float32Array, promptTokenIds: readonly number[], outputTokenIds: readonly number[], allowed?: Int32Array): SampledToken {
    const n = this.vocabSize;
    if (logits.length < n) throw new RangeError(`logits row has ${logits.length} entries, vocab is ${n}`);
    if (allowed && allowed.length * 32 < n) throw new RangeError(`token mask has ${allowed.length} words, vocab is ${n}`);
    scratch.ensure(n);
    const holdStops = outputTokenIds.length < this.minTokens && this.stopIds.length > 0;
    const scores =
      this.penalised || allowed || holdStops || this.biasIds.length > 0
        ? this.adjust(logits, promptTokenIds, outputTokenIds, allowed, holdStops)
        : logits;
    const tokenId = this.greedy ? argmax(scores, n) : this.draw(scores);
    const k = this.params.logprobs;
    return k === undefined ? { tokenId, logprob: Number.NaN } : logprobsOf(logits, n, tokenId, k);
  }

  /**
   * Whether sample() always chooses the argmax of the raw logits (greedy, and no bias, penalty or min_tokens
   * changes it; a grammar's mask, which the caller passes, aside): the model's own argmax may stand in for it.
   */
  get choosesRawArgmax(): boolean {
    return this.greedy && !this.penalised && this.biasIds.length === 0 && (this.minTokens === 0 || this.stopIds.length === 0);
  }

  /** Whether this request is greedy (temperature ≈ 0): sample() is then an argmax and draws nothing. */
  get isGreedy(): boolean {
    return this.greedy;
  }

  /**
   * The distribution sample() draws from (after the mask, min_tokens, bias, penalties, temperature,
   * top-k, top-p and min-p), normalised, written into `out` (vocabSize long); one-hot when greedy. For
   * speculative decoding's rejection sampling, which needs the target's and the draft's distributions
   * rather than one draw.
   */
  distribution(
    logits: Float32Array,
    promptTokenIds: readonly number[],
    outputTokenIds: readonly number[],
    out: Float64Array,
    allowed?: Int32Array,
  ): Float64Array {
    const n = this.vocabSize;
    if (logits.length < n) throw new RangeError(`logits row has ${logits.length} entries, vocab is ${n}`);
    if (out.length < n) throw new RangeError(`distribution buffer has ${out.length} entries, vocab is ${n}`);
    scratch.ensure(n);
    const holdStops = outputTokenIds.length < this.minTokens && this.stopIds.length > 0;
    const scores =
      this.penalised || allowed || holdStops || this.biasIds.length > 0
        ? this.adjust(logits, promptTokenIds, outputTokenIds, allowed, holdStops)
        : logits;
    out.fill(0, 0, n);
    const max = maxOf(scores, n);
    if (this.greedy || !Number.isFinite(max)) {
      out[argmax(scores, n)] = 1;
      return out;
    }
    const probs = scratch.work;
    const ids = scratch.candidates;
    const count = this.filter(scores, max);
    let kept = 0;
    if (count === DENSE) {
      const { minP } = this.params;
      for (let i = 0; i < n; i++) if (probs[i] >= minP) kept += out[i] = probs[i];
      for (let i = 0; i < n; i++) out[i] /= kept;
      return out;
    }
    for (let j = 0; j < count; j++) kept += probs[ids[j]];
    for (let j = 0; j < count; j++) out[ids[j]] = probs[ids[j]] / kept;
    return out;
  }

  /** One uniform in [0, 1) from the request's generator (seeded requests: the same stream every run). */
  uniform(): number {
    if (!this.rng) throw new Error('a greedy sampler draws no random numbers');
    return this.rng.nextFloat();
  }

  /** One draw in proportion to `weights` (unnormalised, vocabSize long), taking one uniform. */
  drawFrom(weights: Float64Array): number {
    const u = this.uniform();
    const n = this.vocabSize;
    let total = 0;
    for (let i = 0; i < n; i++) total += weights[i];
    return drawInIndexOrder(weights, n, u * total);
  }

  /** `tokenId` with its logprob (and top alternatives) as sample() reports them, for a token chosen elsewhere. */
  withLogprobs(logits: Float32Array, tokenId: number): SampledToken {
    const k = this.params.logprobs;
    return k === undefined ? { tokenId, logprob: Number.NaN } : logprobsOf(logits, this.vocabSize, tokenId, k);
  }

  private adjust(
    logits: Float32Array,
    prompt: readonly number[],
    output: readonly number[],
    allowed: Int32Array | undefined,
    holdStops: boolean,
  ): Float64Array {
    const n = this.vocabSize;
    const work = scratch.work;
    work.set(logits.length === n ? logits : logits.subarray(0, n));
    if (allowed) applyMask(work, n, allowed);
    if (holdStops) {
      const held = this.stopIds.map((t) => work[t]!);
      for (const t of this.stopIds) work[t] = -Infinity;
      // When the grammar allows nothing but a stop token, the grammar wins: the output must stay valid.
      if (allowed && maxOf(work, n) === -Infinity) this.stopIds.forEach((t, i) => (work[t] = held[i]!));
    }
    for (let i = 0; i < this.biasIds.length; i++) work[this.biasIds[i]!] += this.biasValues[i]!;
    const { repetitionPenalty, frequencyPenalty, presencePenalty } = this.params;
    if (repetitionPenalty !== 1) applyRepetitionPenalty(work, n, repetitionPenalty, prompt, output);
    if (frequencyPenalty !== 0 || presencePenalty !== 0) {
      applyOutputPenalties(work, n, frequencyPenalty, presencePenalty, output);
    }
    return work;
  }

  /** Temperature, the filters, and one uniform draw (taken first, so every path consumes exactly one). */
  private draw(scores: Row): number {
    const u = this.rng!.nextFloat();
    const n = this.vocabSize;
    const { minP } = this.params;
    const max = maxOf(scores, n);
    // All -inf/NaN, or a +inf: no distribution to sample from, fall back to a deterministic choice.
    if (!Number.isFinite(max)) return argmax(scores, n);

    const count = this.filter(scores, max);
    if (count !== DENSE) return drawAmong(scratch.candidates, count, scratch.work, u);
    return minP <= 0 ? drawInIndexOrder(scratch.work, n, u * scratch.mass) : drawAbove(scratch.work, n, minP, u);
  }

  /**
   * Temperature, top-k, top-p and min-p over `scores` (`max` their finite maximum), for draw() and
   * distribution(): unnormalised probabilities in `scratch.work`, id-indexed, the top token exactly 1 (so
   * min-p's threshold is minP itself), their sum in `scratch.mass`. Returns how many tokens survive, listed
   * in `scratch.candidates`, or DENSE when every token does (no top-k, top-p 1; min-p left to the caller).
   */
  private filter(scores: Row, max: number): number {
    const n = this.vocabSize;
    const { topP, minP } = this.params;
    const probs = scratch.work;
    const ids = scratch.candidates;
    let count: number;
    if (this.topK > 0) {
      // Top-k selects on the scores directly, so only the k survivors need an exp.
      count = selectTopK(scores, n, this.topK, ids);
      scratch.mass = expAt(scores, ids, count, max, this.invTemperature, probs);
    } else {
      scratch.mass = expInto(scores, n, max, this.invTemperature, probs);
      if (topP >= 1) return DENSE;
      count = collectNucleus(probs, n, topP * scratch.mass, minP, ids);
    }
    if (topP < 1) count = selectNucleus(ids, count, probs, topP * scratch.mass);
    if (minP > 0) count = keepAtLeast(ids, count, probs, minP);
    return count;
  }
}

/** True when `tokenId` ends generation: a request stop id, or the model's EOS unless ignoreEos. */
export function isStopToken(tokenId: number, params: SamplingParams, eosTokenIds: readonly number[]): boolean {
  if (params.stopTokenIds.includes(tokenId)) return true;
  return !params.ignoreEos && eosTokenIds.includes(tokenId);
}

function validate(p: SamplingParams, vocabSize: number): void {
  const fail = (what: string): never => {
    throw new RangeError(`invalid sampling parameter: ${what}`);
  };
  if (!Number.isInteger(vocabSize) || vocabSize < 1) fail(`vocabSize ${vocabSize}`);
  if (!(p.temperature >= 0 && Number.isFinite(p.temperature))) fail(`temperature ${p.temperature}`);
  if (!(p.topP > 0 && p.topP <= 1)) fail(`topP ${p.topP} (must be in (0, 1])`);
  if (!Number.isInteger(p.topK)) fail(`topK ${p.topK}`);
  if (!(p.minP >= 0 && p.minP <= 1)) fail(`minP ${p.minP} (must be in [0, 1])`);
  if (!(p.repetitionPenalty > 0 && Number.isFinite(p.repetitionPenalty))) {
    fail(`repetitionPenalty ${p.repetitionPenalty}`);
  }
  if (!Number.isFinite(p.presencePenalty)) fail(`presencePenalty ${p.presencePenalty}`);
  if (!Number.isFinite(p.frequencyPenalty)) fail(`frequencyPenalty ${p.frequencyPenalty}`);
  if (p.logprobs !== undefined && !(Number.isInteger(p.logprobs) && p.logprobs >= 0)) fail(`logprobs ${p.logprobs}`);
  if (p.seed !== undefined && !Number.isInteger(p.seed)) fail(`seed ${p.seed}`);
  if (p.minTokens !== undefined && !(Number.isInteger(p.minTokens) && p.minTokens >= 0)) fail(`minTokens ${p.minTokens}`);
  for (const [k, v] of Object.entries(p.logitBias ?? {})) {
    const id = Number(k);
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) fail(`logitBias token id ${k} (vocab is ${vocabSize})`);
    if (typeof v !== 'number' || !Number.isFinite(v)) fail(`logitBias value ${String(v)} for token ${k}`);
  }
}

/** -Infinity for every token whose bit is clear; whole words at a time (most are all-allowed or all-banned). */
function applyMask(work: Float64Array, n: number, allowed: Int32Array): void {
  const words = Math.ceil(n / 32);
  for (let w = 0; w < words; w++) {
    const bits = allowed[w]!;
    if (bits === -1) continue;
    const base = w * 32;
    const end = Math.min(base + 32, n);
    if (bits === 0) work.fill(-Infinity, base, end);
    else for (let i = base; i < end; i++) if (((bits >>> (i - base)) & 1) === 0) work[i] = -Infinity;
  }
}

/** HF/vLLM: each token seen in prompt or output once: positive logits ÷ penalty, others × penalty. */
function applyRepetitionPenalty(
  work: Float64Array,
  n: number,
  penalty: number,
  prompt: readonly number[],
  output: readonly number[],
): void {
  const seen = scratch.seen;
  for (const ids of [prompt, output]) {
    for (const t of ids) {
      if (t < 0 || t >= n || seen[t] === 1) continue;
      seen[t] = 1;
      work[t] = work[t] > 0 ? work[t] / penalty : work[t] * penalty;
    }
  }
  // Leave the shared flags clear for the next call; cheaper than clearing the whole vocab.
  for (const ids of [prompt, output]) for (const t of ids) if (t >= 0 && t < n) seen[t] = 0;
}

/** OpenAI: logit -= count × frequency + (count > 0) × presence, over output tokens only. */
function applyOutputPenalties(work: Float64Array, n: number, frequency: number, presence: number, output: readonly number[]): void {
  const counts = scratch.counts;
  for (const t of output) if (t >= 0 && t < n) counts[t]++;
  for (const t of output) {
    if (t < 0 || t >= n || counts[t] === 0) continue;
    work[t] -= counts[t] * frequency + presence;
    counts[t] = 0; // once per distinct token, and the shared counts end clear
  }
}

/** Index of the largest score; ties go to the lowest id. */
export function argmax(scores: Row, n: number): number {
  let best = 0;
  let bestScore = -Infinity;
  for (let i = 0; i < n; i++) {
    if (scores[i] > bestScore) {
      bestScore = scores[i];
      best = i;
    }
  }
  return best;
}

function maxOf(scores: Row, n: number): number {
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (scores[i] > max) max = scores[i];
  return max;
}

/** out[i] = exp((scores[i] - max) / T), unnormalised (the top token gets 1); returns the total. */
function expInto(scores: Row, n: number, max: number, invTemperature: number, out: Float64Array): number {
  let total = 0;
  for (let i = 0; i < n; i++) {
    const p = expOrZero((scores[i] - max) * invTemperature);
    out[i] = p;
    total += p;
  }
  return total;
}

/** expInto for the listed ids only. */
function expAt(scores: Row, ids: Int32Array, count: number, max: number, invTemperature: number, out: Float64Array): number {
  let total = 0;
  for (let j = 0; j < count; j++) {
    const p = expOrZero((scores[ids[j]] - max) * invTemperature);
    out[ids[j]] = p;
    total += p;
  }
  return total;
}

// Below e^-42 (< 2^-60 of the top token) a token cannot matter even summed over the vocab; skip the exp.
function expOrZero(x: number): number {
  return x > -42 ? Math.exp(x) : 0;
}

function drawInIndexOrder(probs: Float64Array, n: number, target: number): number {
  let cumulative = 0;
  let last = 0;
  for (let i = 0; i < n; i++) {
    if (probs[i] === 0) continue;
    cumulative += probs[i];
    last = i;
    if (cumulative > target) return i;
  }
  return last;
}

/** Min-p alone: no ordering needed, just the tokens at or above the threshold (the top token has 1). */
function drawAbove(probs: Float64Array, n: number, minP: number, u: number): number {
  let mass = 0;
  for (let i = 0; i < n; i++) if (probs[i] >= minP) mass += probs[i];
  const target = u * mass;
  let cumulative = 0;
  let last = 0;
  for (let i = 0; i < n; i++) {
    if (probs[i] < minP) continue;
    cumulative += probs[i];
    last = i;
    if (cumulative > target) return i;
  }
  return last;
}

/**
 * Writes into `out` every token with probability ≥ a threshold, lowering the threshold until they carry
 * `neededMass` (so they hold the whole nucleus) or it reaches `floor` (min-p drops the rest anyway).
 * Usually one pass gathering a few hundred tokens, instead of sorting the vocab.
 */
function collectNucleus(probs: Float64Array, n: number, neededMass: number, floor: number, out: Int32Array): number {
  let threshold = Math.max(floor, NUCLEUS_FIRST_THRESHOLD);
  for (;;) {
    let count = 0;
    let mass = 0;
    for (let i = 0; i < n; i++) {
      if (probs[i] >= threshold) {
        out[count++] = i;
        mass += probs[i];
      }
    }
    if (mass >= neededMass || threshold <= floor) return count;
    const lower = threshold / NUCLEUS_THRESHOLD_STEP;
    threshold = lower < NUCLEUS_THRESHOLD_FLOOR ? floor : Math.max(lower, floor);
  }
}

/** Higher probability first; ties to the lower id (a total order, so selections are deterministic). */
function better(probs: Float64Array, a: number, b: number): boolean {
  return probs[a] > probs[b] || (probs[a] === probs[b] && a < b);
}

/**
 * Rearranges ids[0..count) so that ids[0..m) is the nucleus: the smallest head, in `better` order, whose
 * mass reaches `target`; returns m. A quickselect weighted by probability: linear on average, no sort.
 */
function selectNucleus(ids: Int32Array, count: number, probs: Float64Array, target: number): number {
  let lo = 0; // ids[0..lo) are in the nucleus
  let hi = count; // ids[hi..count) are out
  let need = target;
  while (hi - lo > 16) {
    const pivotAt = partition(ids, lo, hi, probs);
    let headMass = 0;
    for (let j = lo; j < pivotAt; j++) headMass += probs[ids[j]];
    const pivotMass = probs[ids[pivotAt]];
    if (headMass >= need) {
      hi = pivotAt;
    } else if (headMass + pivotMass >= need) {
      return pivotAt + 1;
    } else {
      need -= headMass + pivotMass;
      lo = pivotAt + 1;
    }
  }
  // A few left: sort them and walk.
  ids.subarray(lo, hi).sort((a, b) => (better(probs, a, b) ? -1 : 1));
  let cumulative = 0;
  for (let j = lo; j < hi; j++) {
    cumulative += probs[ids[j]];
    if (cumulative >= need) return j + 1;
  }
  return hi; // rounding: the target is all of it
}

/** Lomuto partition of ids[lo..hi) around a median-of-three pivot; returns the pivot's final position. */
function partition(ids: Int32Array, lo: number, hi: number, probs: Float64Array): number {
  const mid = (lo + hi) >> 1;
  const [a, b, c] = [ids[lo], ids[mid], ids[hi - 1]];
  const median = better(probs, a, b)
    ? better(probs, b, c)
      ? mid
      : better(probs, a, c)
        ? hi - 1
        : lo
    : better(probs, a, c)
      ? lo
      : better(probs, b, c)
        ? hi - 1
        : mid;
  swap(ids, median, hi - 1);
  const pivot = ids[hi - 1];
  let store = lo;
  for (let j = lo; j < hi - 1; j++) {
    if (better(probs, ids[j], pivot)) swap(ids, j, store++);
  }
  swap(ids, store, hi - 1);
  return store;
}

function swap(ids: Int32Array, i: number, j: number): void {
  const t = ids[i];
  ids[i] = ids[j];
  ids[j] = t;
}

/** Min-p: keeps ids whose probability is ≥ threshold (the top token, at 1, always stays). */
function keepAtLeast(ids: Int32Array, count: number, probs: Float64Array, threshold: number): number {
  let kept = 0;
  for (let j = 0; j < count; j++) if (probs[ids[j]] >= threshold) ids[kept++] = ids[j];
  return kept;
}

/** One draw among ids[0..count) in proportion to their probabilities. */
function drawAmong(ids: Int32Array, count: number, probs: Float64Array, u: number): number {
  let mass = 0;
  for (let j = 0; j < count; j++) mass += probs[ids[j]];
  const target = u * mass;
  let cumulative = 0;
  for (let j = 0; j < count; j++) {
    cumulative += probs[ids[j]];
    if (cumulative > target) return ids[j];
  }
  return ids[count - 1]; // rounding left the target just past the last token
}

/**
 * The k highest-scoring ids (ties to the lower id) into out[0..k), unordered, via a min-heap of size k
 * kept in `out` itself: one pass, most tokens rejected by a single comparison with the heap root.
 */
function selectTopK(scores: Row, n: number, k: number, out: Int32Array): number {
  const size = Math.min(k, n);
  // Heap order: the root is the worst kept token (lowest score, then highest id).
  const worse = (a: number, b: number): boolean => scores[a] < scores[b] || (scores[a] === scores[b] && a > b);
  const siftDown = (start: number): void => {
    let i = start;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= size) return;
      const r = l + 1;
      const c = r < size && worse(out[r], out[l]) ? r : l;
      if (!worse(out[c], out[i])) return;
      const tmp = out[i];
      out[i] = out[c];
      out[c] = tmp;
      i = c;
    }
  };
  for (let i = 0; i < size; i++) out[i] = i;
  for (let i = (size >> 1) - 1; i >= 0; i--) siftDown(i);
  for (let i = size; i < n; i++) {
    // Later ids lose ties, so only a strictly higher score displaces the root.
    if (scores[i] > scores[out[0]]) {
      out[0] = i;
      siftDown(0);
    }
  }
  return size;
}

/** Sorts out[0..count) by descending key, ties by ascending id. */
function sortDescending(ids: Int32Array, count: number, keys: Row): void {
  ids.subarray(0, count).sort((a, b) => keys[b] - keys[a] || a - b);
}

/** Log-softmax of the raw logits for the chosen token and, if k ≥ 1, the k most likely tokens. */
function logprobsOf(logits: Float32Array, n: number, tokenId: number, k: number): SampledToken {
  const max = maxOf(logits, n);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += expOrZero(logits[i] - max);
  const logNorm = max + Math.log(sum);
  const top: TokenLogprob[] = [];
  if (k > 0) {
    const ids = scratch.candidates;
    const count = selectTopK(logits, n, k, ids);
    sortDescending(ids, count, logits);
    for (let j = 0; j < count; j++) top.push({ tokenId: ids[j], logprob: logits[ids[j]] - logNorm });
  }
  return { tokenId, logprob: logits[tokenId] - logNorm, topLogprobs: top };
}
