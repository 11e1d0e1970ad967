import { cpus } from 'node:os';
import { percentile } from '@pdserve/bench';

/** The p-th percentile of values in any order: bench's `percentile` (which takes them sorted) over a sorted copy. */
export function percentileOf(xs: readonly number[], p: number): number {
  return percentile(Float64Array.from(xs).sort(), p);
}

export const median = (xs: readonly number[]): number => percentileOf(xs, 50);

/** Deterministic pseudo-random token ids (ids 3..31999 avoid llama2's special tokens). */
export function randomTokens(n: number, seed: number, vocab = 32000): number[] {
  let s = seed >>> 0 || 1;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out.push(3 + (s % (vocab - 3)));
  }
  return out;
}

/** `n` prompts of 17 tokens (1, then 16 pseudo-random ids in 3..31992), the same every run: the speculation benchmarks'. */
export function speculationPrompts(n: number): number[][] {
  let s = 12345;
  const next = (): number => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0), s / 2 ** 32);
  return Array.from({ length: n }, () => [1, ...Array.from({ length: 16 }, () => 3 + Math.floor(next() * 31990))]);
}

/**
 * Runs `a` and `b` one after the other, `a` first in even rounds and `b` first in odd ones: each disturbs
 * whatever runs right after it, so neither always pays for the other. Returns their results as [a, b].
 */
export async function eachFirstInTurn<A, B>(round: number, a: () => Promise<A>, b: () => Promise<B>): Promise<[A, B]> {
  if (round % 2 === 0) {
    const x = await a();
    return [x, await b()];
  }
  const y = await b();
  return [await a(), y];
}

export async function timeIt(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

export function machine(): string {
  return `${process.platform} ${process.arch}, ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), Node ${process.version}`;
}

export interface StreamTimings {
  /** Seconds from sending the request to the first streamed token (time to first token). */
  readonly first: number;
  /** To the second streamed token: what the handoff of a disaggregated request costs the stream. */
  readonly second: number;
  /** To the end of the stream. */
  readonly total: number;
  /** To the last streamed token. */
  readonly last: number;
  /** Tokens streamed. */
  readonly tokens: number;
}

/** Streams a completion (`stream: true` is set here) and times its first tokens as the client sees them. */
export async function streamTimings(url: string, body: Record<string, unknown>): Promise<StreamTimings> {
  const t0 = performance.now();
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true }),
  });
  if (!res.ok || res.body === null) throw new Error(`${url}: HTTP ${res.status} ${await res.text()}`);
  const marks: number[] = [];
  const decoder = new TextDecoder();
  let pending = '';
  for await (const chunk of res.body) {
    pending += decoder.decode(chunk as Uint8Array, { stream: true });
    const events = pending.split('\n\n');
    pending = events.pop() ?? '';
    for (const e of events) {
      const data = e.replace(/^data: /, '');
      if (data === '[DONE]') continue;
      // A chunk per token with text (the last may carry only the finish reason).
      const choice = (JSON.parse(data) as { choices?: { text?: string }[] }).choices?.[0];
      if (choice?.text !== undefined && choice.text !== '') marks.push(performance.now());
    }
  }
  const at = (i: number): number => ((marks[Math.min(i, marks.length - 1)] ?? performance.now()) - t0) / 1000;
  return { first: at(0), second: at(1), total: (performance.now() - t0) / 1000, last: at(marks.length - 1), tokens: marks.length };
}

/**
 * Cold prompts of `promptTokens` tokens (default 512; greedy, `maxTokens` each, streamed) to every gateway
 * side by side: prompt i goes to each URL in turn (the order reversed every other prompt), so that the
 * machine's drift over the run hits them all alike. Each URL's timings after the first `warmup` prompts, in
 * prompt order.
 */
export async function sideBySide(
  urls: readonly string[],
  opts: {
    readonly prompts: number;
    readonly warmup: number;
    readonly seed: number;
    readonly maxTokens: number;
    readonly promptTokens?: number;
  },
): Promise<StreamTimings[][]> {
  const times: StreamTimings[][] = urls.map(() => []);
  for (let i = 0; i < opts.warmup + opts.prompts; i++) {
    const prompt = [1, ...randomTokens((opts.promptTokens ?? 512) - 1, opts.seed + i)];
    const order = urls.map((_, k) => k);
    if (i % 2 === 1) order.reverse();
    for (const k of order) {
      const t = await streamTimings(`${urls[k]}/v1/completions`, {
        model: 'tiny',
        prompt,
        max_tokens: opts.maxTokens,
        temperature: 0,
        ignore_eos: true,
      });
      if (i >= opts.warmup) times[k]!.push(t);
    }
  }
  return times;
}
