import { createRng, seedOf } from './rng';

/** Stream key for arrivals, so that changing another stream's use of the seed does not move arrivals. */
const ARRIVAL_STREAM = 0xa771;

/**
 * Poisson arrivals at `rate` requests per second: offsets in ms from the start, with exponential gaps
 * drawn from a generator seeded by `seed` (the same seed gives the same schedule). Infinite rate: all at 0.
 */
export function poissonArrivals(rate: number, seed: number): () => number {
  if (!(rate > 0)) throw new RangeError(`rate must be positive, got ${rate}`);
  if (rate === Number.POSITIVE_INFINITY) return () => 0;
  const random = createRng(seedOf(seed, ARRIVAL_STREAM));
  let t = 0;
  return () => {
    const at = t;
    t += (-Math.log(1 - random()) / rate) * 1000;
    return at;
  };
}
