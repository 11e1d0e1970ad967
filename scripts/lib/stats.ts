import { cpus } from 'node:os';

export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const rank = (p / 100) * (s.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return s[lo]! + (s[hi]! - s[lo]!) * (rank - lo);
}

export const median = (xs: readonly number[]): number => percentile(xs, 50);

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

export async function timeIt(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

export function machine(): string {
  return `${process.platform} ${process.arch}, ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), Node ${process.version}`;
}
