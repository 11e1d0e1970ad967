import {
  IncrementalDetokenizer,
  StopMatcher,
  type EngineClient,
  type FinishReason,
  type PromptLogprob,
  type SamplingParams,
  type ServiceTier,
  type TextTokenizer,
  type TokenLogprob,
} from './deps';

/** One choice of a response: one engine request. */
export interface ChoiceSpec {
  /** The OpenAI choice index (prompt index × n + i). */
  readonly index: number;
  /** Which prompt of the request this choice continues. */
  readonly promptIndex: number;
  readonly engineRequestId: string;
  readonly promptTokenIds: readonly number[];
  readonly sampling: SamplingParams;
  /** Roots the prompt's block-hash chain (see cacheSaltOf); '' = unsalted. */
  readonly cacheSalt: string;
  /** Lower runs first (GenerateRequest.priority). */
  readonly priority: number;
  /** Admission class and priority band (OpenAI's service_tier). */
  readonly serviceTier?: ServiceTier;
}

/** A generated token with its logprob; only collected when the request asked for logprobs. */
export interface GeneratedToken {
  readonly tokenId: number;
  /** NaN if the engine sent none (serialized as null). */
  readonly logprob: number;
  readonly top: readonly TokenLogprob[];
}

export type ChoiceEvent =
  /** The engine accepted the request and produced its first output. */
  | { readonly kind: 'start'; readonly index: number; readonly cachedTokens: number }
  /**
   * New text; `tokens` are those generated since the previous event (with logprobs only). The first text
   * or finish event carries the prompt logprobs when they were asked for (positions 1 on).
   */
  | {
      readonly kind: 'text';
      readonly index: number;
      readonly text: string;
      readonly tokens: readonly GeneratedToken[];
      readonly promptLogprobs?: readonly PromptLogprob[];
    }
  | {
      readonly kind: 'finish';
      readonly index: number;
      readonly text: string;
      readonly tokens: readonly GeneratedToken[];
      readonly promptLogprobs?: readonly PromptLogprob[];
      readonly reason: FinishReason;
      readonly completionTokens: number;
      /** The stop string that ended the choice, if one did. */
      readonly stopString?: string;
    };

/**
 * Runs one choice: streams token ids from the engine, detokenizes them incrementally, applies stop
 * strings, and yields text events. A matched stop string aborts the engine request at once.
 * `signal` is the HTTP request's (client disconnect); aborting it aborts the engine request too.
 */
export async function* runChoice(
  engine: EngineClient,
  tokenizer: TextTokenizer,
  spec: ChoiceSpec,
  signal: AbortSignal,
): AsyncGenerator<ChoiceEvent, void, undefined> {
  const own = new AbortController();
  const engineSignal = AbortSignal.any([signal, own.signal]);
  const detok = new IncrementalDetokenizer(tokenizer, { promptTokenIds: spec.promptTokenIds });
  const stops = new StopMatcher(spec.sampling.stop);
  const wantLogprobs = spec.sampling.logprobs !== undefined;
  const { index } = spec;
  let tokens: GeneratedToken[] = [];
  let completionTokens = 0;
  let started = false;
  // Prompt logprobs arrive with the first output and go out with the first event after 'start'.
  let prompt: readonly PromptLogprob[] | undefined;
  const withPrompt = (): { promptLogprobs?: readonly PromptLogprob[] } => {
    const p = prompt;
    prompt = undefined;
    return p === undefined ? {} : { promptLogprobs: p };
  };
  try {
    const stream = engine.generate({
      requestId: spec.engineRequestId,
      promptTokenIds: spec.promptTokenIds,
      sampling: spec.sampling,
      signal: engineSignal,
      cacheSalt: spec.cacheSalt,
      priority: spec.priority,
      serviceTier: spec.serviceTier,
    });
    for await (const out of stream) {
      if (!started) {
        started = true;
        if (spec.sampling.promptLogprobs !== undefined) prompt = out.promptLogprobs ?? [];
        yield { kind: 'start', index, cachedTokens: out.cachedTokens };
      }
      let text = '';
      out.tokenIds.forEach((tokenId, i) => {
        completionTokens++;
        text += detok.push(tokenId);
        if (wantLogprobs) {
          const lp = out.logprobs?.[i];
          tokens.push({ tokenId, logprob: lp?.logprob ?? Number.NaN, top: lp?.top ?? [] });
        }
      });
      if (out.finishReason !== undefined) text += detok.flush();
      const m = stops.push(text);
      if (m.stopped) {
        own.abort();
        yield { kind: 'finish', index, text: m.text, tokens, reason: 'stop', completionTokens, stopString: m.matched, ...withPrompt() };
        return;
      }
      if (out.finishReason !== undefined) {
        yield { kind: 'finish', index, text: m.text + stops.flush(), tokens, reason: out.finishReason, completionTokens, ...withPrompt() };
        return;
      }
      if (m.text !== '') {
        yield { kind: 'text', index, text: m.text, tokens, ...withPrompt() };
        tokens = [];
      }
    }
    // The engine ended the stream without saying why: infer it rather than fail the request.
    const m = stops.push(detok.flush());
    const reason: FinishReason = m.stopped || completionTokens < spec.sampling.maxTokens ? 'stop' : 'length';
    if (!started) yield { kind: 'start', index, cachedTokens: 0 };
    yield {
      kind: 'finish',
      index,
      text: m.stopped ? m.text : m.text + stops.flush(),
      tokens,
      reason,
      completionTokens,
      stopString: m.matched,
      ...withPrompt(),
    };
  } finally {
    // Whatever ends this generator early (stop string, error, consumer gone) must free the engine request.
    own.abort();
  }
}

/**
 * Starts every choice and waits for each one's 'start' event, so that a refusal (queue full, not ready)
 * surfaces before any response header is written. Returns the start events and one merged stream of the
 * remaining events in arrival order. If any choice fails to start, the others are stopped and it throws.
 */
export async function startChoices(
  gens: readonly AsyncGenerator<ChoiceEvent, void, undefined>[],
): Promise<{ readonly cachedTokens: readonly number[]; readonly events: AsyncGenerator<ChoiceEvent, void, undefined> }> {
  const firsts = await Promise.allSettled(gens.map((g) => g.next()));
  const failed = firsts.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) {
    closeAll(gens);
    throw failed.reason;
  }
  const cachedTokens = firsts.map((r) => {
    const ev = r.status === 'fulfilled' && r.value.done !== true ? r.value.value : undefined;
    return ev?.kind === 'start' ? ev.cachedTokens : 0;
  });
  return { cachedTokens, events: merge(gens) };
}

/** Interleaves generators by arrival; closing the merged generator closes all of them. */
async function* merge<T>(gens: readonly AsyncGenerator<T, void, undefined>[]): AsyncGenerator<T, void, undefined> {
  const pending = new Map<number, Promise<{ readonly i: number; readonly r: IteratorResult<T, void> }>>();
  const pull = (i: number): void => {
    pending.set(
      i,
      gens[i]!.next().then((r) => ({ i, r })),
    );
  };
  gens.forEach((_, i) => pull(i));
  try {
    while (pending.size > 0) {
      const { i, r } = await Promise.race(pending.values());
      if (r.done === true) {
        pending.delete(i);
        continue;
      }
      pull(i);
      yield r.value;
    }
  } finally {
    if (pending.size > 0) {
      // Pending next() calls may still reject; nobody is listening any more.
      for (const p of pending.values()) p.catch(() => undefined);
      closeAll(gens);
    }
  }
}

function closeAll<T>(gens: readonly AsyncGenerator<T, void, undefined>[]): void {
  for (const g of gens) void g.return(undefined).catch(() => undefined);
}
