import { performance } from 'node:perf_hooks';
import { isRecord, numberAt, type JsonObject } from './json';
import type { Endpoint } from './options';
import { readSse } from './sse';

/** What one request measured. Times in ms; offsets are from the start of the run. */
export interface RequestRecord {
  readonly index: number;
  readonly session: number | null;
  /** When the arrival process scheduled it. */
  readonly scheduledMs: number;
  /** When it was sent (later than scheduled when it waited for a concurrency slot or a previous turn). */
  readonly startMs: number;
  readonly success: boolean;
  /** HTTP status; null when no response arrived (connection error, timeout, abort). */
  readonly status: number | null;
  readonly error: string | null;
  /** From usage when the server reports it, else the prompt's own length (exact with token-id prompts). */
  readonly promptTokens: number;
  readonly expectedPromptTokens: number;
  /** From usage when present, else the number of content chunks. */
  readonly outputTokens: number;
  readonly maxTokens: number;
  /** usage.prompt_tokens_details.cached_tokens; null when the server does not report it. */
  readonly cachedTokens: number | null;
  /** To the first chunk with content (or, failing any, to the finishing chunk). */
  readonly ttftMs: number | null;
  /** (e2e − ttft) / (outputTokens − 1); null with fewer than 2 output tokens. */
  readonly tpotMs: number | null;
  readonly e2eMs: number | null;
  /** Gaps between consecutive content chunks. */
  readonly itlMs: readonly number[];
}

export interface RequestTarget {
  readonly url: string;
  readonly endpoint: Endpoint;
  readonly headers: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  /** performance.now() at the start of the run. */
  readonly t0: number;
}

export interface RequestMeta {
  readonly index: number;
  readonly session: number | null;
  readonly scheduledMs: number;
  readonly expectedPromptTokens: number;
  readonly maxTokens: number;
}

const MAX_ERROR_CHARS = 500;

/** Sends one streaming request and measures it; never throws (failures are records). */
export async function sendRequest(meta: RequestMeta, body: JsonObject, target: RequestTarget, signal: AbortSignal): Promise<RequestRecord> {
  const start = performance.now();
  const itl: number[] = [];
  let status: number | null = null;
  let first: number | undefined;
  let last: number | undefined;
  let finishAt: number | undefined;
  let contentChunks = 0;
  let usage: Usage | undefined;
  const record = (end: number | undefined, error: string | null): RequestRecord => {
    const e2e = end === undefined ? null : end - start;
    const ttftAt = first ?? finishAt;
    const ttft = ttftAt === undefined || error !== null ? null : ttftAt - start;
    const outputTokens = usage?.completionTokens ?? contentChunks;
    return {
      ...meta,
      startMs: start - target.t0,
      success: error === null,
      status,
      error,
      promptTokens: usage?.promptTokens ?? meta.expectedPromptTokens,
      outputTokens,
      cachedTokens: usage?.cachedTokens ?? null,
      ttftMs: ttft,
      tpotMs: error === null && ttft !== null && e2e !== null && outputTokens > 1 ? (e2e - ttft) / (outputTokens - 1) : null,
      e2eMs: error === null ? e2e : null,
      itlMs: itl,
    };
  };
  try {
    const res = await fetch(target.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...target.headers },
      body: JSON.stringify(body),
      signal: AbortSignal.any([signal, AbortSignal.timeout(target.timeoutMs)]),
    });
    status = res.status;
    if (!res.ok || res.body === null) return record(performance.now(), `HTTP ${res.status}: ${errorMessage(await res.text())}`);
    for await (const ev of readSse(res.body)) {
      const now = performance.now();
      if (ev.data === '[DONE]') return record(now, null);
      let chunk: unknown;
      try {
        chunk = JSON.parse(ev.data);
      } catch {
        return record(now, `malformed SSE data: ${ev.data.slice(0, MAX_ERROR_CHARS)}`);
      }
      if (!isRecord(chunk)) continue;
      if (chunk['error'] !== undefined) return record(now, `stream error: ${errorMessage(JSON.stringify(chunk))}`);
      usage = usageOf(chunk['usage']) ?? usage;
      const choice = firstChoice(chunk);
      if (choice === undefined) continue;
      if (contentOf(choice, target.endpoint) !== '') {
        contentChunks++;
        if (first === undefined) first = now;
        else itl.push(now - last!);
        last = now;
      }
      if (choice['finish_reason'] !== null && choice['finish_reason'] !== undefined) finishAt ??= now;
    }
    return record(performance.now(), 'stream ended without [DONE]');
  } catch (err) {
    const e = err as Error;
    const why = signal.aborted ? 'aborted' : e.name === 'TimeoutError' ? `timed out after ${target.timeoutMs} ms` : e.message;
    return record(performance.now(), causeOf(e, why));
  }
}

interface Usage {
  readonly promptTokens: number | undefined;
  readonly completionTokens: number | undefined;
  readonly cachedTokens: number | undefined;
}

function usageOf(v: unknown): Usage | undefined {
  if (!isRecord(v)) return undefined;
  const details = v['prompt_tokens_details'];
  return {
    promptTokens: numberAt(v['prompt_tokens']),
    completionTokens: numberAt(v['completion_tokens']),
    cachedTokens: isRecord(details) ? numberAt(details['cached_tokens']) : undefined,
  };
}

function firstChoice(chunk: Record<string, unknown>): Record<string, unknown> | undefined {
  const choices = chunk['choices'];
  if (!Array.isArray(choices) || choices.length === 0) return undefined;
  const c: unknown = choices[0];
  return isRecord(c) ? c : undefined;
}

function contentOf(choice: Record<string, unknown>, endpoint: Endpoint): string {
  if (endpoint === 'completions') return typeof choice['text'] === 'string' ? choice['text'] : '';
  const delta = choice['delta'];
  return isRecord(delta) && typeof delta['content'] === 'string' ? delta['content'] : '';
}

/** The OpenAI error message when the body is an error object, else the body itself, shortened. */
function errorMessage(body: string): string {
  try {
    const v: unknown = JSON.parse(body);
    if (isRecord(v) && isRecord(v['error']) && typeof v['error']['message'] === 'string')
      return v['error']['message'].slice(0, MAX_ERROR_CHARS);
  } catch {
    // not JSON: use the text
  }
  return body.slice(0, MAX_ERROR_CHARS);
}

/** fetch wraps network errors as "fetch failed"; the cause says what happened (ECONNREFUSED…). */
function causeOf(e: Error, fallback: string): string {
  const cause = (e as Error & { cause?: unknown }).cause;
  return fallback === 'fetch failed' && cause instanceof Error ? `fetch failed: ${cause.message}` : fallback;
}
