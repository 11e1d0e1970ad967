import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { toApiError } from './errors';
import { runChoice, startChoices, type ChoiceEvent, type ChoiceSpec } from './generate';
import { SseStream, finishWithin, sendJson } from './http';
import type { Logger } from './deps';
import type { PreparedPrompt, ServedModel } from './prompt';

/** What a route handler gets besides its body. */
export interface RequestContext {
  readonly requestId: string;
  /** Aborted when the client goes away or the handler is done: every engine request listens to it. */
  readonly signal: AbortSignal;
  readonly log: Logger;
  readonly res: ServerResponse;
  /** The tenant whose cache this request may use (its API key's id) when caches are isolated per key. */
  readonly cacheTenant?: string;
  /** How long a write may wait for a client that stopped reading before the request is aborted, in ms. */
  readonly writeTimeoutMs?: number;
}

export type ChoiceUpdate = Extract<ChoiceEvent, { kind: 'text' | 'finish' }>;
type JsonObject = Record<string, unknown>;

/** Turns one choice's events into the endpoint's JSON shapes (completions and chat differ only here). */
export interface ChoiceFormatter {
  /** The first streamed choice object, before any text (chat's role delta); undefined for none. */
  opening(): JsonObject | undefined;
  /** The streamed choice object for one event. */
  chunk(ev: ChoiceUpdate): JsonObject;
  /** Non-streaming: collect an event. */
  add(ev: ChoiceUpdate): void;
  /** Non-streaming: the whole choice object. */
  result(): JsonObject;
}

export interface Generation {
  readonly model: ServedModel;
  readonly prompts: readonly PreparedPrompt[];
  readonly specs: readonly ChoiceSpec[];
  readonly stream: boolean;
  readonly includeUsage: boolean;
  readonly idPrefix: 'cmpl' | 'chatcmpl';
  /** `object` of the full response and of stream chunks. */
  readonly object: string;
  readonly chunkObject: string;
  readonly formatter: (spec: ChoiceSpec) => ChoiceFormatter;
  /** Fields of the whole (non-streamed) response besides the standard ones, read once every choice is done. */
  readonly extra?: () => Record<string, unknown>;
}

export interface Usage {
  readonly prompt_tokens: number;
  readonly completion_tokens: number;
  readonly total_tokens: number;
  readonly prompt_tokens_details: { readonly cached_tokens: number };
}

/**
 * Runs every choice of a request and writes the response, streamed or whole. Refusals before the first
 * token (queue full, not ready, bad request per the engine) throw, so the caller answers with a status;
 * failures after the SSE headers are sent become an SSE error event, then `data: [DONE]`.
 */
export async function serveGeneration(ctx: RequestContext, g: Generation): Promise<void> {
  ctx.log.debug(
    {
      model: g.model.id,
      choices: g.specs.length,
      promptTokens: g.prompts.map((p) => p.tokenIds.length),
      maxTokens: g.prompts.map((p) => p.maxTokens),
      stream: g.stream,
    },
    'generate',
  );
  const gens = g.specs.map((spec) => runChoice(g.model.engine, g.model.tokenizer, spec, ctx.signal));
  const { cachedTokens, events } = await startChoices(gens);
  const formatters = new Map(g.specs.map((s) => [s.index, g.formatter(s)]));
  const completionTokens = new Map<number, number>();
  const usage = (): Usage => {
    const prompt = g.prompts.reduce((sum, p) => sum + p.tokenIds.length, 0);
    const completion = [...completionTokens.values()].reduce((a, b) => a + b, 0);
    // The prompt is counted once however many choices continue it; its first choice says what was cached.
    const counted = new Set<number>();
    let cached = 0;
    g.specs.forEach((s, i) => {
      if (counted.has(s.promptIndex)) return;
      counted.add(s.promptIndex);
      cached += Math.min(cachedTokens[i] ?? 0, g.prompts[s.promptIndex]?.tokenIds.length ?? 0);
    });
    return {
      prompt_tokens: prompt,
      completion_tokens: completion,
      total_tokens: prompt + completion,
      prompt_tokens_details: { cached_tokens: cached },
    };
  };
  const head = { id: `${g.idPrefix}-${randomUUID().replaceAll('-', '')}`, created: Math.floor(Date.now() / 1000), model: g.model.id };
  const formatterOf = (index: number): ChoiceFormatter => {
    const f = formatters.get(index);
    if (f === undefined) throw new Error(`event for unknown choice ${index}`);
    return f;
  };

  if (!g.stream) {
    for await (const ev of events) {
      if (ev.kind === 'start') continue;
      if (ev.kind === 'finish') completionTokens.set(ev.index, ev.completionTokens);
      formatterOf(ev.index).add(ev);
    }
    if (ctx.signal.aborted) return;
    sendJson(ctx.res, 200, {
      ...head,
      object: g.object,
      choices: [...formatters.values()].map((f) => f.result()),
      usage: usage(),
      ...g.extra?.(),
    });
    if (ctx.writeTimeoutMs !== undefined) finishWithin(ctx.res, ctx.writeTimeoutMs, ctx.log);
    return;
  }

  const sse = new SseStream(ctx.res, ctx.writeTimeoutMs, () =>
    ctx.log.warn({ timeoutMs: ctx.writeTimeoutMs }, 'client stopped reading; request aborted'),
  );
  sse.open();
  const chunk = { ...head, object: g.chunkObject };
  // With include_usage every chunk carries `usage: null` and a last chunk carries the totals (OpenAI).
  const usageNull = g.includeUsage ? { usage: null } : {};
  try {
    for (const f of formatters.values()) {
      const opening = f.opening();
      if (opening !== undefined) await sse.send({ ...chunk, choices: [opening], ...usageNull });
    }
    for await (const ev of events) {
      if (ev.kind === 'start') continue;
      if (ev.kind === 'finish') completionTokens.set(ev.index, ev.completionTokens);
      await sse.send({ ...chunk, choices: [formatterOf(ev.index).chunk(ev)], ...usageNull });
    }
  } catch (err) {
    const e = toApiError(err);
    ctx.log.error({ err, status: e.status }, 'generation failed mid-stream');
    await sse.send(e.toBody());
    // The stream still ends as every OpenAI stream does, so clients stop reading instead of waiting.
    await sse.done();
    return;
  }
  if (ctx.signal.aborted) return;
  if (g.includeUsage) await sse.send({ ...chunk, choices: [], usage: usage() });
  await sse.done();
}
