import {
  BLOCK_HEADER_BYTES,
  BlockPool,
  blockBytes,
  blocksBeforeLastToken,
  chainHashes,
  decodeBlock,
  encodeBlock,
  type KvLayout,
} from '@pdserve/kv-cache';
import {
  isStopToken,
  loadModelSpec,
  Sampler,
  samplingProblem,
  type ModelSpec,
  type RunnerOptions,
  type SampledToken,
} from '@pdserve/model';
import {
  EngineError,
  enginePriority,
  type EngineClient,
  type EngineStats,
  type ExportedKv,
  type PrefetchedKv,
  type GenerateOutput,
  type GenerateRequest,
  type OffloadSink,
} from '@pdserve/contracts';
import { type PrefillChunk, Scheduler, type SchedulerOutput } from './scheduler';
import { Sequence } from './sequence';
import { ThreadExecutor, type ExecBatch, type ExecResult } from './executor';
import { promptLogprobOf } from './prompt-logprobs';
import { StructuredOutputs, type StructuredOutputStats } from './structured';
import { DraftModel, type DeferredProposal, type Proposed } from './draft-model';
import {
  NGRAM_PRIOR_COST,
  PRIOR_COST,
  proposeNgram,
  SPECULATIVE_DEFAULTS,
  SpecController,
  SpecGovernor,
  speculativeProblem,
  verifyProposal,
  type Proposal,
  type SpecCandidate,
  type SpecCost,
  type SpeculativeOptions,
} from './speculative';

export interface EngineOptions {
  /** Hugging Face-layout model directory. */
  readonly modelDir: string;
  /** Served model id; default: the directory name. */
  readonly modelId?: string;
  /** KV pool size in bytes; default 256 MiB. */
  readonly kvCacheBytes?: number;
  /** Tokens per KV block; default 16. */
  readonly blockSize?: number;
  /** Most sequences in the running batch; default 64. */
  readonly maxNumSeqs?: number;
  /** Most tokens computed per step; default 2048. */
  readonly maxNumBatchedTokens?: number;
  /** Longest prefill chunk per sequence per step; 0 = chunking off; default 256. */
  readonly prefillChunkTokens?: number;
  /** Most requests waiting for admission before new ones get 'queue_full'; default 1024. */
  readonly maxWaiting?: number;
  /** Longest prompt + output in tokens; default the model's max_position_embeddings. */
  readonly maxModelLen?: number;
  readonly runner?: RunnerOptions;
  /** Speculative decoding (a draft model or n-gram lookup); default off. */
  readonly speculative?: SpeculativeOptions;
  /** Told after each forward (for metrics): its phase, wall seconds on the model thread and batch rows. */
  readonly onStep?: (s: { readonly phase: 'prefill' | 'decode'; readonly seconds: number; readonly batchSize: number }) => void;
  /** Told when a request is first scheduled (for metrics): the seconds it waited in the queue since it arrived. */
  readonly onAdmitted?: (a: { readonly queueSeconds: number }) => void;
}

export const ENGINE_DEFAULTS = {
  kvCacheBytes: 256 * 1024 * 1024,
  blockSize: 16,
  maxNumSeqs: 64,
  maxNumBatchedTokens: 2048,
  prefillChunkTokens: 256,
  maxWaiting: 1024,
} as const;

/**
 * One model, one KV pool, one step loop: continuous batching over a model thread. Implements the
 * EngineClient that the HTTP API serves.
 */
export class LLMEngine implements EngineClient {
  readonly modelId: string;
  readonly maxModelLen: number;
  readonly pool: BlockPool;
  readonly layout: KvLayout;
  private readonly scheduler: Scheduler;
  private nextSeqId = 1;
  private looping = false;
  /** Prefill-role sequences between their first token and their KV export (see exportAfterToken). */
  private readonly exporting = new Set<Sequence>();
  /** Grammars of constrained sequences (response_format); loaded on the first such request. */
  private readonly structured: StructuredOutputs;
  private closed = false;
  /** Speculative decoding's draft model (method 'draft'). */
  private readonly draft: DraftModel | undefined;
  /** Rejection sampling's work row (vocab-long). */
  private readonly specBuf: Float64Array;
  private readonly governor: SpecGovernor;
  /** What speculating costs this step: measured for the batch (timed), assumed for seeded sampled sequences (prior). */
  private readonly stepCost: { timed: SpecCost; readonly prior: SpecCost };
  /** Why the draft model stopped working (speculation with it is then off), or undefined. */
  private draftFailure: string | undefined;
  /** Seconds this step's proposals spent on the draft's catch-up prefill. */
  private catchUpSeconds = 0;
  /** Streamed blocks waiting for the next step's start to enter the prefix cache (cacheBlocks). */
  private betweenSteps: (() => void)[] = [];
  /** The key of the prompt whose streamed blocks were staged last (cacheBlocks): its row may be on the model thread. */
  private lastStaged: string | undefined;
  private readonly specCounters = { draftTokens: 0, acceptedTokens: 0, verifiedSequenceSteps: 0, emittedTokens: 0 };
  private counters = {
    hitTokens: 0,
    queryTokens: 0,
    preemptions: 0,
    steps: 0,
    modelSeconds: 0,
    overheadSeconds: 0,
    importFallbacks: 0,
    prefillTokens: 0,
    prefetchedTokens: 0,
    prefetchRejects: 0,
    streamedTokens: 0,
    decodeGatheredTokens: 0,
  };

  private constructor(
    readonly spec: ModelSpec,
    private readonly executor: ThreadExecutor,
    pool: BlockPool,
    private readonly opts: Required<Omit<EngineOptions, 'modelId' | 'maxModelLen' | 'runner' | 'onStep' | 'onAdmitted' | 'speculative'>> &
      Pick<EngineOptions, 'onStep' | 'onAdmitted' | 'speculative'>,
    maxModelLen: number,
    draft: DraftModel | undefined,
  ) {
    this.draft = draft;
    this.specBuf = new Float64Array(opts.speculative ? spec.vocabSize : 0);
    const prior = opts.speculative?.method === 'ngram' ? NGRAM_PRIOR_COST : PRIOR_COST;
    this.governor = new SpecGovernor(prior);
    this.stepCost = { timed: prior, prior };
    this.modelId = spec.id;
    this.pool = pool;
    this.layout = pool.layout;
    this.maxModelLen = maxModelLen;
    this.structured = new StructuredOutputs(spec);
    this.scheduler = new Scheduler(pool, {
      maxNumSeqs: opts.maxNumSeqs,
      maxNumBatchedTokens: opts.maxNumBatchedTokens,
      prefillChunkTokens: opts.prefillChunkTokens,
      watermarkBlocks: Math.max(1, Math.ceil(pool.numBlocks * 0.01)),
    });
  }

  static async create(options: EngineOptions): Promise<LLMEngine> {
    const spec = loadModelSpec(options.modelDir, options.modelId);
    const opts = {
      modelDir: options.modelDir,
      kvCacheBytes: options.kvCacheBytes ?? ENGINE_DEFAULTS.kvCacheBytes,
      blockSize: options.blockSize ?? ENGINE_DEFAULTS.blockSize,
      maxNumSeqs: options.maxNumSeqs ?? ENGINE_DEFAULTS.maxNumSeqs,
      maxNumBatchedTokens: options.maxNumBatchedTokens ?? ENGINE_DEFAULTS.maxNumBatchedTokens,
      prefillChunkTokens: options.prefillChunkTokens ?? ENGINE_DEFAULTS.prefillChunkTokens,
      maxWaiting: options.maxWaiting ?? ENGINE_DEFAULTS.maxWaiting,
      onStep: options.onStep,
      onAdmitted: options.onAdmitted,
      speculative: options.speculative,
    };
    const specProblem = options.speculative && speculativeProblem(options.speculative);
    if (specProblem) throw new EngineError('invalid_request', `speculative decoding: ${specProblem}`);
    const layout: KvLayout = { numLayers: spec.numLayers, numKvHeads: spec.numKvHeads, headDim: spec.headDim, blockSize: opts.blockSize };
    const pool = BlockPool.fromBudget(layout, opts.kvCacheBytes);
    const sp = options.speculative;
    const runner = options.runner ?? {};
    const draftLoad =
      sp?.method === 'draft'
        ? DraftModel.load(spec, sp.modelDir, opts.blockSize, pool.numBlocks, sp.kvCacheBytes, runner, sp.draftThreads)
        : undefined;
    const executor = await ThreadExecutor.start({
      spec,
      runner,
      layout,
      pool: pool.data,
      draft: draftLoad && { spec: draftLoad.spec, runner: draftLoad.runner, layout: draftLoad.pool.layout, pool: draftLoad.pool.data },
    });
    const draft = draftLoad && new DraftModel(draftLoad.spec, executor, draftLoad.pool);
    const maxModelLen = Math.min(options.maxModelLen ?? spec.maxPositionEmbeddings, spec.maxPositionEmbeddings);
    return new LLMEngine(spec, executor, pool, opts, maxModelLen, draft);
  }

  isReady(): boolean {
    return !this.closed;
  }

  stats(): EngineStats {
    return {
      running: this.scheduler.running.length,
      waiting: this.scheduler.waiting.length,
      freeBlocks: this.pool.numFree,
      cachedBlocks: this.pool.numCached,
      totalBlocks: this.pool.numBlocks,
      usedBlocks: this.pool.numUsed,
      prefixCacheHitTokens: this.counters.hitTokens,
      prefixCacheQueryTokens: this.counters.queryTokens,
      preemptions: this.counters.preemptions,
      prefillTokensComputed: this.counters.prefillTokens,
      queuedPrefillTokens: [...this.scheduler.waiting, ...this.scheduler.running].reduce((n, s) => n + this.toPrefill(s), 0),
      importFallbacks: this.counters.importFallbacks,
      prefetchedTokens: this.counters.prefetchedTokens,
      prefetchRejects: this.counters.prefetchRejects,
      streamedTokens: this.counters.streamedTokens,
      decodeGatheredTokens: this.counters.decodeGatheredTokens,
      steps: this.counters.steps,
      modelSeconds: this.counters.modelSeconds,
      overheadSeconds: this.counters.overheadSeconds,
      ...(this.opts.speculative
        ? {
            speculation: {
              method: this.opts.speculative.method,
              ...this.specCounters,
              draftCatchUpTokens: this.draft?.catchUpTokens ?? 0,
              draftSequences: this.draft?.numSequences ?? 0,
              draftProposeSeconds: this.draft?.proposeSeconds ?? 0,
              draftForwardSeconds: this.draft?.forwardSeconds ?? 0,
              draftFailure: this.draftFailure,
            },
          }
        : {}),
    };
  }

  /**
   * Prompt tokens `s` still has to compute. One not scheduled yet has computed nothing, but the leading
   * blocks this engine's prefix cache holds will not be computed: counting them would tell the router a
   * cache hit is a full prefill (a load report taken then sent the next requests for that prompt away).
   */
  private toPrefill(s: Sequence): number {
    if (s.prefilled) return 0;
    let computed = s.numComputed;
    if (computed === 0) {
      const reusable = blocksBeforeLastToken(s.tokens.length, s.blockSize);
      let blocks = 0;
      while (blocks < reusable && this.pool.has(s.blockHash(blocks))) blocks++;
      computed = blocks * s.blockSize;
    }
    return Math.max(0, s.tokens.length - 1 - computed);
  }

  get maxNumSeqs(): number {
    return this.opts.maxNumSeqs;
  }

  get blockSize(): number {
    return this.opts.blockSize;
  }

  /**
   * Sends blocks evicted from the prefix cache to `sink` (undefined: drop them, the default). The block is
   * encoded (copied) at eviction, before the pool reuses it.
   */
  offload(sink: OffloadSink | undefined): void {
    this.pool.onEvict(
      sink === undefined
        ? undefined
        : (id, hash) => sink.offer(hash, () => encodeBlock(this.layout, this.pool.bytes(id), hash, this.opts.blockSize)),
    );
  }

  /**
   * How many leading full blocks of `tokens` (under `cacheSalt`, see GenerateRequest) this engine's prefix
   * cache holds right now (no reference taken).
   */
  cachedPrefixBlocks(tokens: readonly number[], cacheSalt = ''): number {
    let n = 0;
    for (const h of chainHashes(tokens, this.opts.blockSize, this.modelId, cacheSalt)) {
      if (!this.pool.has(h)) break;
      n++;
    }
    return n;
  }

  /** Grammar compile and mask counters (per-step mask cost = maskSeconds / masks). */
  structuredOutputStats(): StructuredOutputStats {
    return this.structured.stats();
  }

  async *generate(req: GenerateRequest): AsyncGenerator<GenerateOutput> {
    if (req.sampling.structuredOutput) await this.structured.ready();
    const seq = this.admit(req);
    const onAbort = (): void => this.abort(seq);
    req.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      yield* seq.outputs;
    } finally {
      req.signal?.removeEventListener('abort', onAbort);
      // A reader that stops early (break, throw) cancels the request.
      if (seq.status !== 'finished') this.abort(seq);
    }
  }

  /** Stops the step loop and the model thread; running requests end with an error. */
  async close(): Promise<void> {
    this.closed = true;
    for (const seq of [...this.scheduler.running, ...this.scheduler.waiting, ...this.exporting]) {
      this.scheduler.remove(seq);
      this.finish(seq, undefined, new EngineError('not_ready', 'engine is shutting down'));
    }
    // Terminating the model thread inside session.run aborts the whole process: let the step in flight end.
    for (let waited = 0; this.looping && waited < 5_000; waited += 5) await new Promise((r) => setTimeout(r, 5));
    for (const insert of this.betweenSteps.splice(0)) insert();
    await this.executor.close();
    await this.draft?.close();
    this.structured.dispose();
  }

  private admit(req: GenerateRequest): Sequence {
    if (this.closed) throw new EngineError('not_ready', 'engine is shutting down');
    const prompt = req.promptTokenIds;
    const resumed = req.resumeOutputTokenIds ?? [];
    if (prompt.length === 0) throw new EngineError('invalid_request', 'prompt is empty', 'prompt');
    for (const t of [...prompt, ...resumed]) {
      if (!Number.isInteger(t) || t < 0 || t >= this.spec.vocabSize) {
        throw new EngineError('invalid_request', `token id ${t} is outside the vocabulary [0, ${this.spec.vocabSize})`, 'prompt');
      }
    }
    // The edge checked these already; a request from another process is checked again, with the vocabulary.
    const problem = samplingProblem(req.sampling, this.spec.vocabSize);
    if (problem !== undefined) throw new EngineError('invalid_request', problem.message, problem.param);
    if (prompt.length >= this.maxModelLen) {
      throw new EngineError(
        'context_length_exceeded',
        `prompt has ${prompt.length} tokens; this model's maximum context length is ${this.maxModelLen} tokens`,
        'prompt',
      );
    }
    if (resumed.length > 0 && (resumed.length >= req.sampling.maxTokens || prompt.length + resumed.length >= this.maxModelLen)) {
      throw new EngineError(
        'invalid_request',
        `cannot resume after ${resumed.length} generated tokens: the request is already complete`,
        'max_tokens',
      );
    }
    const maxLen = Math.min(prompt.length + req.sampling.maxTokens, this.maxModelLen);
    const needBlocks = Math.ceil(maxLen / this.opts.blockSize);
    if (needBlocks > this.pool.numBlocks) {
      throw new EngineError(
        'invalid_request',
        `request needs up to ${needBlocks} KV blocks (${maxLen} tokens) but the KV pool holds ${this.pool.numBlocks}`,
        'max_tokens',
      );
    }
    if (this.scheduler.waiting.length >= this.opts.maxWaiting) {
      throw new EngineError('queue_full', `${this.scheduler.waiting.length} requests are already waiting`);
    }
    if (req.signal?.aborted) throw new EngineError('invalid_request', 'request was cancelled before it started');
    let sampler: Sampler;
    try {
      sampler = new Sampler(req.sampling, this.spec.vocabSize, this.spec.eosTokenIds);
    } catch (err) {
      throw new EngineError('invalid_request', (err as Error).message);
    }
    const seq = new Sequence(
      this.nextSeqId++,
      req.requestId,
      prompt,
      req.sampling,
      sampler,
      enginePriority(req.priority, req.serviceTier),
      performance.now(),
      this.modelId,
      this.opts.blockSize,
      req.cacheSalt ?? '',
    );
    for (const t of resumed) seq.appendToken(t);
    sampler.skipTokens(resumed.length);
    // A resumed request's prompt logprobs went out with its first token, elsewhere: its prompt may use the cache.
    if (resumed.length > 0) seq.promptLogprobsSent = true;
    seq.prefilled = resumed.length > 0 ? undefined : req.prefilled;
    seq.prefetched = req.prefetched?.blocks.length ? req.prefetched : undefined;
    seq.exportFromBlock = req.exportKv?.fromBlock;
    seq.onExportBlocks = req.exportKv?.onBlocks;
    seq.exportOnly = req.exportKv?.withoutToken === true;
    if (req.sampling.structuredOutput) this.structured.admit(seq.id, req.sampling.structuredOutput, seq.output);
    // Speculated tokens would bypass the grammar's mask: constrained sequences decode one token at a time.
    const sp = this.opts.speculative;
    // A seeded sampled request must give the same tokens with speculation on or off and after a migration
    // (which skips one random draw per token sent): it decodes one token at a time unless told otherwise.
    const seededSampled = req.sampling.seed !== undefined && !sampler.isGreedy;
    if (sp && !req.sampling.structuredOutput && seq.exportFromBlock === undefined && (!seededSampled || sp.seeded))
      seq.spec = new SpecController(sp.numTokens);
    this.scheduler.add(seq);
    this.kick();
    return seq;
  }

  private abort(seq: Sequence): void {
    if (seq.status === 'finished') return;
    this.scheduler.remove(seq);
    this.finish(seq, 'abort');
  }

  private kick(): void {
    if (this.looping) return;
    this.looping = true;
    void this.loop();
  }

  private async loop(): Promise<void> {
    try {
      while (!this.closed && this.scheduler.hasWork()) {
        await this.step();
        // Let sockets, timers and new requests in between steps.
        await new Promise<void>((r) => setImmediate(r));
      }
    } catch (err) {
      const e = new EngineError('internal', `engine step failed: ${(err as Error).message}`);
      for (const seq of [...this.scheduler.running, ...this.scheduler.waiting]) {
        this.scheduler.remove(seq);
        this.finish(seq, undefined, e);
      }
    } finally {
      this.looping = false;
    }
    // Streamed blocks queued during the last step go in now that no step runs.
    for (const insert of this.betweenSteps.splice(0)) insert();
    if (!this.closed && this.scheduler.hasWork()) this.kick();
  }

  private async step(): Promise<void> {
    const t0 = performance.now();
    // Prefetched prefixes and streamed blocks enter the cache between forwards, when no block is being written.
    for (const insert of this.betweenSteps.splice(0)) insert();
    for (const seq of this.scheduler.waiting) if (seq.prefetched) this.insertPrefetched(seq);
    this.planSpeculation();
    const plan = this.scheduler.schedule();
    this.account(plan);
    for (const seq of plan.cachedExports) this.exportWithoutToken(seq);
    for (const seq of plan.imports) this.importKv(seq);
    // An imported sequence decodes in the step that imports it (its first token was sampled on the prefill
    // side), unless the import fell back to a local prefill or that token ended it.
    const imported = plan.imports.filter((s) => s.status === 'running' && !s.isPrefill);
    // A step in which no row speculates (every sequence off, say) is a plain decode step, as with speculation off.
    const speculating = plan.decodes.some((s) => s.lookahead > 0);
    const tSpec = performance.now();
    const { proposals, deferred, rounds } = speculating
      ? await this.propose(plan.decodes)
      : { proposals: new Map<number, Proposal>(), rounds: 0 };
    const draftSeconds = (performance.now() - tSpec) / 1000 - this.catchUpSeconds;
    // A request aborted while the draft ran has given its blocks back: it is not in the forward.
    const stepDecodes = [...plan.decodes, ...imported];
    const decodes = speculating ? stepDecodes.filter((s) => s.status === 'running') : stepDecodes;
    // Greedy proposals are made on the model thread just before the verify forward (see ExecBatch.draftFirst).
    const fused = deferred && this.fuse(decodes, deferred);
    // Both batches go to the model thread at once; decode results are sampled while prefill runs.
    const tDecode = performance.now();
    const decode =
      decodes.length > 0
        ? this.executor.run({
            kind: 'decode',
            rows: decodes.map((s) => {
              const p = proposals.get(s.id)?.tokens ?? [];
              const stagedKey = s.stagedKey;
              s.stagedKey = undefined; // its first decode only: the row is resident from then on
              return {
                seqId: s.id,
                tokenIds: [s.tokens[s.tokens.length - 1]!, ...p],
                pastLen: s.numComputed,
                blockTable: s.blockTable,
                numLogits: 1 + p.length,
                ...(stagedKey !== undefined ? { stagedKey } : {}),
              };
            }),
            ...(fused ? { draftFirst: fused.batch } : {}),
            // Rows that take the argmax of the raw logits and nothing else of them: the model's argmax, and no
            // vocab-wide logits copied out and sent between threads each step.
            ...(!speculating && decodes.every((s) => this.takesArgmaxOnly(s)) ? { argmaxOnly: true } : {}),
          })
        : undefined;
    // Every position's logits only for prompts whose logprobs were asked for.
    const prefillLogits = plan.prefills.map((c) => (c.seq.collectsPromptLogprobs ? c.end - c.start : 1));
    // Alone in its step, the rest of a prompt whose blocks streamed in runs on its staged row, which stays resident.
    const stagedKey = decodes.length === 0 && plan.prefills.length === 1 ? this.stagedTail(plan.prefills[0]!) : undefined;
    const prefill =
      plan.prefills.length > 0
        ? this.executor.run({
            kind: stagedKey !== undefined ? 'decode' : 'prefill',
            rows: plan.prefills.map((c, i) => ({
              seqId: c.seq.id,
              tokenIds: c.seq.tokens.slice(c.start, c.end),
              pastLen: c.start,
              blockTable: c.seq.blockTable,
              numLogits: prefillLogits[i],
              ...(stagedKey !== undefined ? { stagedKey } : {}),
            })),
          })
        : undefined;
    // Grammar masks for the rows that sample this step, computed while the model thread runs.
    this.structured.fillMasks([
      ...decodes.map((s) => s.id),
      ...plan.prefills.filter((c) => c.end === c.seq.tokens.length).map((c) => c.seq.id),
    ]);
    let runSeconds = 0;
    if (decode) {
      const res = await decode;
      const decodeSeconds = (performance.now() - tDecode) / 1000;
      this.counters.decodeGatheredTokens += res.gatheredTokens;
      runSeconds += res.runSeconds;
      this.opts.onStep?.({ phase: 'decode', seconds: res.execSeconds, batchSize: decodes.length });
      if (speculating) {
        const onThread = res.draftSeconds ?? 0;
        if (res.draftError !== undefined) this.draftFailure = res.draftError;
        else if (fused) {
          fused.seqIds.forEach((id, j) => proposals.set(id, { tokens: [...(proposals.get(id)?.tokens ?? []), ...res.tokens![j]!] }));
          this.draft?.ranDeferred(onThread);
        }
        // The governor's cost samples: wall seconds of the draft's rounds (its one-off catch-ups left out) and of the verify forward.
        if (proposals.size === 0) this.governor.recordPlain(decodes.length, decodeSeconds);
        else {
          const k = Math.max(...[...proposals.values()].map((p) => p.tokens.length));
          const roundSeconds = draftSeconds + onThread - (res.draftCatchUpSeconds ?? 0);
          this.governor.recordSpec(decodes.length, rounds + (res.draftRounds ?? 0), roundSeconds, k, decodeSeconds - onThread);
        }
        this.afterVerify(decodes, proposals, res);
      } else {
        if (this.opts.speculative) this.governor.recordPlain(decodes.length, decodeSeconds);
        this.afterForward(
          decodes.map((seq) => ({ seq, end: seq.numComputed + 1 })),
          res,
        );
      }
    }
    if (prefill) {
      const res = await prefill;
      runSeconds += res.runSeconds;
      if (stagedKey !== undefined) this.counters.decodeGatheredTokens += res.gatheredTokens; // it ran as a decode row
      this.opts.onStep?.({ phase: 'prefill', seconds: res.execSeconds, batchSize: plan.prefills.length });
      this.afterForward(
        plan.prefills.map((c, i) => ({ seq: c.seq, end: c.end, numLogits: prefillLogits[i] })),
        res,
      );
    }
    this.counters.steps += 1;
    this.counters.modelSeconds += runSeconds;
    this.counters.overheadSeconds += (performance.now() - t0) / 1000 - runSeconds;
  }

  /**
   * The staged key of the chunk's prompt when the chunk is that prompt's last and the prompt's streamed
   * blocks were the last staged (a decode worker computing the prompt's last block itself, the blocks
   * before it streamed in from a prefill worker). Run as a decode row, the chunk joins the staged row
   * (ResidentKv.stage) instead of gathering its past from the blocks, and its first decode step finds the
   * row resident; only when nothing else decodes, or every row would be padded to the chunk's length.
   * Taken once.
   */
  private stagedTail(c: PrefillChunk): string | undefined {
    const seq = c.seq;
    if (c.start === 0 || c.end !== seq.promptLen || seq.tokens.length !== seq.promptLen) return undefined;
    if (seq.collectsPromptLogprobs || seq.exportFromBlock !== undefined) return undefined;
    const key = promptStagedKey(seq);
    if (key === undefined || key !== this.lastStaged) return undefined;
    this.lastStaged = undefined; // the staging is used (or dropped) by this forward
    return key;
  }

  private account(plan: SchedulerOutput): void {
    this.counters.preemptions += plan.preempted.length;
    for (const seq of plan.preempted) seq.stagedKey = undefined; // recomputed: its blocks are its own again
    for (const c of plan.prefills) this.counters.prefillTokens += c.end - c.start;
    const now = performance.now();
    for (const { seq, cachedTokens } of plan.admitted) {
      if (seq.admittedOnce) continue;
      seq.admittedOnce = true;
      this.opts.onAdmitted?.({ queueSeconds: (now - seq.arrival) / 1000 });
      seq.numCachedPrompt = Math.min(cachedTokens, seq.promptLen);
      this.counters.hitTokens += seq.numCachedPrompt;
      this.counters.queryTokens += seq.promptLen;
    }
  }

  /**
   * Sets each decoding sequence's lookahead for this step: what its controller chooses at this batch's
   * costs and the governor leaves (see SpecGovernor), capped by the tokens it may still generate; with
   * n-gram lookup, the proposal itself (no match: no speculation). A seeded sampled sequence must draw the
   * same random numbers every run: it goes by the prior costs and its own acceptance only, never by timing.
   */
  private planSpeculation(): void {
    const sp = this.opts.speculative;
    if (!sp) return;
    if (this.draftFailure !== undefined) {
      for (const seq of this.scheduler.running) seq.lookahead = 0;
      return;
    }
    const batch = this.scheduler.running.filter((s) => !s.isPrefill).length;
    this.stepCost.timed = this.governor.cost(batch);
    const timed: (SpecCandidate & { readonly seq: Sequence })[] = [];
    const chosen: { seq: Sequence; k: number }[] = [];
    for (const seq of this.scheduler.running) {
      seq.lookahead = 0;
      seq.proposal = undefined;
      if (!seq.spec || seq.isPrefill) continue;
      // The verify step emits the accepted tokens plus one: speculating past the end is wasted.
      const room = Math.min(seq.params.maxTokens - seq.output.length, this.maxModelLen - seq.tokens.length) - 1;
      if (room <= 0) continue;
      const isTimed = this.isTimed(seq);
      const k = Math.min(seq.spec.next(isTimed ? this.stepCost.timed : this.stepCost.prior), room);
      if (k <= 0) continue;
      if (isTimed) timed.push({ seq, k, controller: seq.spec });
      else chosen.push({ seq, k });
    }
    this.governor.plan(batch, timed);
    for (const { seq, k } of [...chosen, ...timed]) {
      if (k <= 0) continue;
      if (sp.method === 'ngram') {
        const tokens = proposeNgram(
          seq.tokens,
          k,
          sp.ngramMin ?? SPECULATIVE_DEFAULTS.ngramMin,
          sp.ngramMax ?? SPECULATIVE_DEFAULTS.ngramMax,
        );
        if (tokens.length === 0) continue;
        seq.proposal = { tokens };
        seq.lookahead = tokens.length;
      } else seq.lookahead = k;
    }
  }

  /**
   * The deferred proposal's rows that are still in this step's decode batch, as the model thread takes them
   * (ExecBatch.draftFirst: the draft's rows, its rounds, and which verify row each one's tokens join).
   */
  private fuse(
    decodes: readonly Sequence[],
    deferred: DeferredProposal,
  ): { seqIds: number[]; batch: NonNullable<ExecBatch['draftFirst']> } | undefined {
    const rowOf = new Map(decodes.map((s, i) => [s.id, i]));
    const kept = deferred.seqIds.flatMap((id, i) => {
      const at = rowOf.get(id);
      return at === undefined ? [] : [{ id, i, at }];
    });
    if (kept.length === 0) return undefined;
    return {
      seqIds: kept.map((d) => d.id),
      batch: {
        rows: kept.map((d) => deferred.rows[d.i]!),
        rounds: kept.map((d) => deferred.rounds[d.i]!),
        into: kept.map((d) => d.at),
        catchUp: kept.map((d) => deferred.catchUp[d.i]!),
      },
    };
  }

  /** Whether timing may decide how far `seq` speculates (not a seeded sampled sequence, whose draws must repeat). */
  private isTimed(seq: Sequence): boolean {
    return seq.sampler.isGreedy || seq.params.seed === undefined;
  }

  /**
   * Proposals for this step's decodes that speculate (lookahead as the scheduler left it); plain greedy
   * rows' draft work is deferred to the model thread, to run just before the verify forward. `rounds`: the
   * draft rounds run here (after any catch-up), for the governor's cost of a round.
   */
  private async propose(decodes: readonly Sequence[]): Promise<Proposed> {
    const out = new Map<number, Proposal>();
    this.catchUpSeconds = 0;
    const speculating = decodes.filter((s) => s.lookahead > 0);
    if (!this.draft) {
      for (const s of speculating) out.set(s.id, { tokens: s.proposal!.tokens.slice(0, s.lookahead) });
      return { proposals: out, rounds: 0 };
    }
    let proposed: Proposed;
    try {
      proposed = await this.draft.propose(
        speculating.map((s) => ({
          seqId: s.id,
          tokens: s.tokens,
          prompt: s.prompt,
          output: s.output,
          sampler: s.sampler,
          params: s.params,
          k: s.lookahead,
        })),
      );
    } catch (err) {
      // The draft is an optimisation: without it, every sequence decodes one token at a time.
      this.draftFailure = (err as Error).message;
      return { proposals: out, rounds: 0 };
    }
    this.catchUpSeconds = this.draft.lastCatchUpSeconds;
    // A sequence aborted while the draft ran is skipped when the verify results come back.
    for (const [id, p] of proposed.proposals) if (p.tokens.length > 0) out.set(id, p);
    return { proposals: out, deferred: proposed.deferred, rounds: proposed.rounds };
  }

  /**
   * After a verify forward: each speculating row keeps its accepted draft tokens plus the target's next
   * one, streamed one by one exactly as plain decode steps would (KV recorded and blocks published up to
   * each token first); the KV of rejected tokens is left past numComputed (overwritten later, never
   * published) and the blocks that held only it go back to the pool.
   */
  private afterVerify(decodes: readonly Sequence[], proposals: ReadonlyMap<number, Proposal>, res: ExecResult): void {
    const V = this.spec.vocabSize;
    let row = 0;
    for (const seq of decodes) {
      const proposal = proposals.get(seq.id);
      const n = 1 + (proposal?.tokens.length ?? 0);
      const logits = res.logits.subarray(row * V, (row + n) * V);
      row += n;
      if (seq.status !== 'running') continue; // aborted or preempted while the batch ran
      const len = seq.tokens.length;
      if (!proposal) {
        seq.numComputed = len;
        this.publishFull(seq);
        this.emitToken(seq, seq.sampler.sample(logits, seq.prompt, seq.output, this.structured.mask(seq.id)));
        if (seq.status === 'running') this.scheduler.trimBlocks(seq); // blocks held for a lookahead that got no proposal
        continue;
      }
      const tokens = verifyProposal(seq.sampler, logits, V, seq.prompt, seq.output, proposal, this.specBuf);
      const accepted = tokens.length - 1;
      seq.spec?.record(proposal.tokens.length, accepted, this.isTimed(seq) ? this.stepCost.timed : this.stepCost.prior);
      this.specCounters.draftTokens += proposal.tokens.length;
      this.specCounters.acceptedTokens += accepted;
      this.specCounters.verifiedSequenceSteps += 1;
      this.draft?.truncate(seq.id, len + accepted);
      for (let j = 0; j < tokens.length; j++) {
        seq.numComputed = len + j;
        this.publishFull(seq);
        this.emitToken(seq, tokens[j]!);
        this.specCounters.emittedTokens += 1;
        if (seq.status !== 'running') break;
      }
      if (seq.status === 'running') this.scheduler.trimBlocks(seq);
    }
  }

  /** Whether the sequence's next token is the argmax of the raw logits and it wants nothing else of them. */
  private takesArgmaxOnly(seq: Sequence): boolean {
    return seq.sampler.choosesRawArgmax && seq.params.logprobs === undefined && !this.structured.isConstrained(seq.id);
  }

  /**
   * Records computed KV, publishes filled blocks, samples where a row reached its last token. A row has
   * `numLogits` rows of logits (the last is sampled); more than one only to collect prompt logprobs. A decode
   * batch run with argmaxOnly has each row's argmax instead (ExecResult.argmax), the token those rows take.
   */
  private afterForward(rows: readonly { seq: Sequence; end: number; numLogits?: number }[], res: ExecResult): void {
    const V = this.spec.vocabSize;
    let at = 0;
    rows.forEach(({ seq, end, numLogits = 1 }) => {
      const first = at;
      at += numLogits;
      if (seq.status !== 'running') return; // aborted or preempted while the batch ran
      if (numLogits > 1) this.collectPromptLogprobs(seq, end - numLogits, res.logits.subarray(first * V, at * V));
      seq.numComputed = end;
      this.publishFull(seq);
      if (end < seq.tokens.length) {
        this.exportChunk(seq); // a prefill chunk short of the prompt's end: its full blocks may go now
        return;
      }
      if (seq.exportOnly) {
        this.exportWithoutToken(seq);
        return;
      }
      const t = res.argmax
        ? { tokenId: res.argmax[at - 1]!, logprob: Number.NaN }
        : seq.sampler.sample(res.logits.subarray((at - 1) * V, at * V), seq.prompt, seq.output, this.structured.mask(seq.id));
      this.emitToken(seq, t);
    });
  }

  /** Logits of positions start, start + 1, ...: each scores the prompt token after it. */
  private collectPromptLogprobs(seq: Sequence, start: number, logits: Float32Array): void {
    const V = this.spec.vocabSize;
    const k = seq.params.promptLogprobs ?? 0;
    for (let j = 0; j * V < logits.length; j++) {
      const next = start + j + 1;
      if (next >= seq.promptLen) break;
      seq.promptLogprobs[next - 1] = promptLogprobOf(logits.subarray(j * V, (j + 1) * V), seq.prompt[next]!, k);
    }
  }

  /** Appends a sampled token, streams it, and ends the sequence if it is done. */
  private emitToken(seq: Sequence, t: SampledToken): void {
    if (!this.structured.accept(seq.id, t.tokenId)) {
      // Only a token sampled elsewhere without the grammar (a prefill worker that ignored it) gets here.
      this.scheduler.remove(seq);
      this.finish(seq, undefined, new EngineError('internal', `token ${t.tokenId} breaks the request's grammar`));
      return;
    }
    seq.appendToken(t.tokenId);
    const finishReason = this.finishReasonFor(seq, t.tokenId);
    const exporting = seq.exportFromBlock !== undefined;
    const out: GenerateOutput = {
      tokenIds: [t.tokenId],
      logprobs: seq.params.logprobs !== undefined ? [{ logprob: t.logprob, top: t.topLogprobs ?? [] }] : undefined,
      promptTokens: seq.promptLen,
      cachedTokens: seq.numCachedPrompt,
      finishReason: exporting ? undefined : finishReason,
      ...(seq.collectsPromptLogprobs ? { promptLogprobs: seq.promptLogprobs } : {}),
    };
    seq.promptLogprobsSent = true;
    seq.outputs.push(out);
    if (exporting) this.exportAfterToken(seq, finishReason ?? 'length');
    else if (finishReason) {
      this.scheduler.remove(seq);
      this.finish(seq, finishReason, undefined, false);
    }
  }

  /**
   * A prefill-role request ends at its first token and hands its prompt's KV on. The token goes out at
   * once; the export (a copy of every block) waits for a timer (the next turn of the event loop, after its
   * I/O), so that whoever streams the token has sent it first: measured, the token reached the gateway
   * ~2 ms sooner than with setImmediate. Meanwhile the sequence is off the schedule, its blocks held.
   */
  private exportAfterToken(seq: Sequence, reason: 'stop' | 'length'): void {
    this.scheduler.detach(seq);
    this.exporting.add(seq);
    setTimeout(() => {
      this.exporting.delete(seq);
      if (seq.status === 'finished') return; // aborted meanwhile: its blocks are already freed
      const kv = this.exportKv(seq, seq.exportFromBlock ?? 0);
      seq.outputs.push({ tokenIds: [], promptTokens: seq.promptLen, cachedTokens: seq.numCachedPrompt, finishReason: reason, kv });
      this.scheduler.remove(seq);
      this.finish(seq, reason, undefined, false);
    }, 1);
  }

  /** A prefill-role request that samples nothing ends once its prompt is computed, with the KV not handed over yet. */
  private exportWithoutToken(seq: Sequence): void {
    const kv = this.exportKv(seq, seq.exportFromBlock ?? 0);
    seq.outputs.push({ tokenIds: [], promptTokens: seq.promptLen, cachedTokens: seq.numCachedPrompt, finishReason: 'length', kv });
    this.scheduler.remove(seq);
    this.finish(seq, 'length', undefined, false);
  }

  /**
   * A streamed export: the full blocks a prefill chunk filled past those already handed over go to the
   * sequence's onExportBlocks now (copies: the receiver sends them while the next chunk computes).
   */
  private exportChunk(seq: Sequence): void {
    if (seq.onExportBlocks === undefined || seq.exportFromBlock === undefined) return;
    const full = Math.min(Math.floor(seq.numComputed / seq.blockSize), Math.floor(seq.promptLen / seq.blockSize));
    if (full <= seq.exportFromBlock) return;
    const part = this.exportKv(seq, seq.exportFromBlock, full);
    seq.exportFromBlock = full;
    seq.onExportBlocks({ fromBlock: part.fromBlock, blocks: part.blocks });
  }

  /** The prompt's KV from block `from` on (to block `to`, default its end), each block encoded with its hash and checksum. */
  private exportKv(seq: Sequence, from: number, to = Math.ceil(seq.promptLen / this.opts.blockSize)): ExportedKv {
    const bs = this.opts.blockSize;
    const count = Math.max(0, to - from);
    const size = BLOCK_HEADER_BYTES + blockBytes(this.layout);
    const all = new Uint8Array(count * size); // one allocation for every block: each is a view into it
    const blocks: Uint8Array[] = [];
    for (let k = 0; k < count; k++) {
      const i = from + k;
      const numTokens = Math.min(bs, seq.promptLen - i * bs);
      const into = all.subarray(k * size, (k + 1) * size);
      blocks.push(
        encodeBlock(this.layout, this.pool.bytes(seq.blockTable[i]!), numTokens === bs ? seq.blockHash(i) : undefined, numTokens, into),
      );
    }
    return { fromBlock: from, blocks, rngState: seq.sampler.rngState };
  }

  /**
   * Copies KV computed on another node into the blocks the scheduler allocated, then streams the
   * first token sampled there. A block that fails its checksum or belongs to another prefix sends the
   * sequence back to be prefilled here.
   */
  private importKv(seq: Sequence): void {
    const p = seq.prefilled!;
    seq.prefilled = undefined;
    const bs = this.opts.blockSize;
    try {
      p.blocks.forEach((bytes, k) => {
        const i = p.fromBlock + k;
        const dec = decodeBlock(this.layout, bytes, p.checksums?.[k]);
        const want = Math.min(bs, seq.promptLen - i * bs);
        if (dec.numTokens !== want) throw new Error(`block ${i} holds ${dec.numTokens} tokens, expected ${want}`);
        if (want === bs && dec.hash !== seq.blockHash(i)) throw new Error(`block ${i} belongs to another prefix`);
        this.pool.bytes(seq.blockTable[i]!).set(dec.payload);
      });
    } catch {
      this.counters.importFallbacks += 1;
      this.scheduler.remove(seq);
      this.scheduler.add(seq);
      return;
    }
    seq.numComputed = seq.promptLen;
    seq.numCachedPrompt = Math.max(seq.numCachedPrompt, Math.min(p.cachedTokens, seq.promptLen));
    seq.stagedKey = promptStagedKey(seq);
    if (seq.stagedKey === this.lastStaged) this.lastStaged = undefined; // its first decode row takes the staging
    this.publishFull(seq);
    if (p.rngState) seq.sampler.rngState = p.rngState;
    this.emitToken(seq, p.firstToken);
  }

  /**
   * Puts a sequence's prefetched prefix blocks into the prefix cache (free, cached, most recently used),
   * so that admission takes them like local hits. Stops at the first block that fails verification or
   * finds no room; the prompt's remaining tokens are computed here. Never the last prompt token: its
   * logits come from computing it.
   */
  private insertPrefetched(seq: Sequence): void {
    const p = seq.prefetched!;
    seq.prefetched = undefined;
    const bs = this.opts.blockSize;
    const inserted = this.insertBlocks(p, blocksBeforeLastToken(seq.tokens.length, bs), (i) => seq.blockHash(i));
    this.counters.prefetchedTokens += inserted.blocks * bs;
    if (inserted.rejected) this.counters.prefetchRejects += 1;
  }

  /**
   * Puts blocks `kv` of `tokens` (under `cacheSalt`) into the prefix cache as they arrive from a prefill
   * worker that streams its chunks' KV, so that the request naming them later takes them like local hits
   * and imports only the rest. Verified as prefetched blocks are (checksum, shape, chained hash); never
   * the block holding the prompt's last token. Between forwards, like prefetched blocks: resolves once
   * they are in (or refused). Cached blocks are free: under pressure they may be evicted again, and the
   * request then imports them from its copies. The verified blocks are also staged on the model thread
   * as the prompt's decode row (ResidentKv.stage), so that its first decode step copies in only the rest.
   */
  cacheBlocks(tokens: readonly number[], cacheSalt: string, kv: PrefetchedKv): Promise<number> {
    const bs = this.opts.blockSize;
    const hashes = chainHashes(tokens, bs, this.modelId, cacheSalt);
    return new Promise<number>((resolve) => {
      const insert = (): void => {
        const verified: Uint8Array[] = [];
        const { blocks } = this.insertBlocks(kv, blocksBeforeLastToken(tokens.length, bs), (i) => hashes[i]!, verified);
        if (verified.length > 0 && hashes.length > 0) {
          this.lastStaged = stagedKeyOf(hashes.at(-1)!, tokens.length);
          this.executor.stage({
            key: this.lastStaged,
            promptLen: tokens.length,
            fromBlock: kv.fromBlock,
            blocks: verified.map((b) => new Float32Array(b.slice().buffer)),
          });
        }
        this.counters.streamedTokens += blocks * bs;
        resolve(blocks);
      };
      if (this.closed) resolve(0);
      else if (this.looping) this.betweenSteps.push(insert);
      else insert();
    });
  }

  /**
   * Inserts verified blocks below `maxBlocks` into the prefix cache; stops at the first bad one or when the
   * pool is full. With `verified`, every block verified in order (cached already or not) leaves its payload there.
   */
  private insertBlocks(
    p: PrefetchedKv,
    maxBlocks: number,
    hashOf: (i: number) => string,
    verified?: Uint8Array[],
  ): { blocks: number; rejected: boolean } {
    const bs = this.opts.blockSize;
    let blocks = 0;
    for (let k = 0; k < p.blocks.length; k++) {
      const i = p.fromBlock + k;
      if (i >= maxBlocks) break;
      const hash = hashOf(i);
      const cached = this.pool.has(hash);
      if (cached && verified === undefined) continue;
      let payload: Uint8Array;
      try {
        const dec = decodeBlock(this.layout, p.blocks[k]!, p.checksums?.[k]);
        if (dec.numTokens !== bs || dec.hash !== hash) throw new Error(`block ${i} belongs to another prefix`);
        payload = dec.payload;
      } catch {
        return { blocks, rejected: true };
      }
      verified?.push(payload);
      if (cached) continue;
      const id = this.pool.allocate();
      if (id === undefined) break;
      this.pool.bytes(id).set(payload);
      this.pool.publish(id, hash);
      this.pool.release(id);
      blocks++;
    }
    return { blocks, rejected: false };
  }

  private finishReasonFor(seq: Sequence, tokenId: number): 'stop' | 'length' | undefined {
    if (isStopToken(tokenId, seq.params, this.spec.eosTokenIds) || this.structured.isTerminated(seq.id)) return 'stop';
    if (seq.output.length >= seq.params.maxTokens || seq.tokens.length >= this.maxModelLen) return 'length';
    return undefined;
  }

  private publishFull(seq: Sequence): void {
    const full = Math.floor(seq.numComputed / seq.blockSize);
    for (let j = seq.numPublished; j < full; j++) this.pool.publish(seq.blockTable[j]!, seq.blockHash(j));
    seq.numPublished = Math.max(seq.numPublished, full);
  }

  private finish(seq: Sequence, reason: 'stop' | 'length' | 'abort' | undefined, error?: Error, emit = true): void {
    if (seq.status === 'finished') return;
    seq.status = 'finished';
    this.structured.release(seq.id);
    this.draft?.release(seq.id);
    seq.finishReason = reason;
    if (emit && reason)
      seq.outputs.push({ tokenIds: [], finishReason: reason, promptTokens: seq.promptLen, cachedTokens: seq.numCachedPrompt });
    seq.outputs.close(error);
  }
}

/** What names a streamed prompt's staged decode row: the hash of its last full block and its length. */
function stagedKeyOf(lastFullBlockHash: string, promptLen: number): string {
  return `${lastFullBlockHash}/${promptLen}`;
}

/** The staged key of `seq`'s prompt (stagedKeyOf), or undefined for a prompt without a full block. */
function promptStagedKey(seq: Sequence): string | undefined {
  const full = Math.floor(seq.promptLen / seq.blockSize);
  return full > 0 ? stagedKeyOf(seq.blockHash(full - 1), seq.promptLen) : undefined;
}
