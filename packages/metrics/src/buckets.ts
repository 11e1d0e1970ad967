// Histogram buckets, in seconds unless named otherwise. Each set spans what a serving engineer expects to see
// from a tiny CPU model up to a large model under load, dense where SLOs are usually drawn.

/** Time to first token: 5 ms (cached prefix, tiny model) … 60 s (long prompt queued behind others). */
export const TTFT_BUCKETS: readonly number[] = [
  0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60,
];

/** Inter-token latency: 1 ms … 5 s (a decode step stalled behind prefill or preemption). */
export const ITL_BUCKETS: readonly number[] = [
  0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2.5, 5,
];

/** Whole request, arrival to last byte: 50 ms … 10 min (long generations). */
export const REQUEST_DURATION_BUCKETS: readonly number[] = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 180, 300, 450, 600];

/** One engine step: 100 µs (tiny model, one decode) … 10 s (large prefill chunk on CPU). */
export const STEP_BUCKETS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** One KV transfer (a request's blocks between two nodes): 500 µs … 30 s. */
export const TRANSFER_BUCKETS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Sequences in one step's batch: powers of two up to 1024. */
export const BATCH_SIZE_BUCKETS: readonly number[] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];
/** Time queued before the engine's first step for a request: 1 ms (idle engine) … 2 min (a long backlog). */
export const QUEUE_TIME_BUCKETS: readonly number[] = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120,
];
/** Prompt or output length in tokens: 1-2-5 steps from 1 to 200k (vLLM's request length buckets go the same way). */
export const SEQUENCE_LENGTH_BUCKETS: readonly number[] = [
  1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000, 200_000,
];
