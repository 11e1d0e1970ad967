import { describe, expect, it } from 'vitest';
import { parseTrace } from '../trace';
import { fitCostModel, nnls, parseCostModel, predictAloneTtft, prefillWork, type CalibrationSamples } from './calibration';
import { costModelOf, decodeStepSeconds } from './cost-model';
import { simulate } from './simulate';

const limits = { prefillChunkTokens: 256, maxBatchTokens: 2048 };

describe('prefillWork', () => {
  it('chunks as the engine does and counts attention token pairs', () => {
    // 600 tokens, 100 cached: chunks of 256 and 244 after 100 and 356 tokens.
    expect(prefillWork(600, 100, limits)).toEqual({ steps: 2, computedTokens: 500, tokenPairs: 256 * (100 + 128) + 244 * (356 + 122) });
    // A fully cached prompt still computes its last token.
    expect(prefillWork(64, 64, limits)).toEqual({ steps: 1, computedTokens: 1, tokenPairs: 63.5 });
  });
});

describe('nnls', () => {
  it('recovers exact non-negative coefficients and clamps a negative one to zero', () => {
    const rows = [
      [1, 1],
      [1, 2],
      [1, 3],
      [1, 4],
    ];
    expect(nnls(rows, [3, 5, 7, 9]).map((x) => +x.toFixed(9))).toEqual([1, 2]);
    // y = 5 − x: the unconstrained slope is negative, so the best non-negative fit is a constant.
    const c = nnls(rows, [4, 3, 2, 1]);
    expect(c[1]).toBe(0);
    expect(c[0]).toBeCloseTo(2.5, 9);
  });
});

describe('fitCostModel', () => {
  const truth = costModelOf({
    prefillSecondsPerToken: 80e-6,
    prefillSecondsPerCachedToken: 0.5e-6,
    prefillStepSeconds: 1e-3,
    prefillSecondsPerTokenPair: 90e-12,
    decodeStep: { baseSeconds: 3e-3, perSequenceSeconds: 0.3e-3, perContextTokenSeconds: 20e-9 },
    requestOverheadSeconds: 4e-3,
    requestOverheadSecondsPerToken: 5e-6,
  });
  // Samples generated from the model itself: the engine's own overhead is 1.5 ms of the 4 ms.
  const engineOverhead = 1.5e-3;
  const prefill = [];
  for (const [n, cached] of [
    [16, 0],
    [128, 0],
    [256, 0],
    [512, 0],
    [1024, 0],
    [2048, 0],
    [512, 496],
    [1024, 512],
    [2048, 2032],
    [2048, 1024],
  ] as const) {
    const seconds =
      predictAloneTtft(truth, n, cached, limits) -
      (truth.requestOverheadSeconds - engineOverhead) -
      truth.requestOverheadSecondsPerToken * n;
    // Two repetitions, one of them stalled: the median per point keeps the stall out.
    prefill.push(
      { promptTokens: n, cachedTokens: cached, seconds },
      { promptTokens: n, cachedTokens: cached, seconds },
      { promptTokens: n, cachedTokens: cached, seconds: seconds * 5 },
    );
  }
  const decode = [];
  for (const batch of [1, 4, 16, 32])
    for (const ctx of [64, 512]) decode.push({ batch, contextTokens: batch * ctx, seconds: decodeStepSeconds(truth, batch, batch * ctx) });
  const overhead = [16, 256, 1024].map((n) => ({
    promptTokens: n,
    seconds: truth.requestOverheadSeconds - engineOverhead + truth.requestOverheadSecondsPerToken * n,
  }));
  const samples: CalibrationSamples = { limits, kvBytesPerToken: 2048, prefill, decode, overhead, transferBytesPerSecond: 1.5e9 };

  it('recovers the model the samples came from', () => {
    const { cost, quality } = fitCostModel(samples);
    expect(cost.prefillSecondsPerToken).toBeCloseTo(truth.prefillSecondsPerToken, 9);
    expect(cost.prefillSecondsPerTokenPair).toBeCloseTo(truth.prefillSecondsPerTokenPair, 14);
    expect(cost.prefillSecondsPerCachedToken).toBeCloseTo(truth.prefillSecondsPerCachedToken, 9);
    expect(cost.prefillStepSeconds).toBeCloseTo(truth.prefillStepSeconds, 8);
    expect(cost.requestOverheadSeconds).toBeCloseTo(truth.requestOverheadSeconds, 8);
    expect(cost.requestOverheadSecondsPerToken).toBeCloseTo(truth.requestOverheadSecondsPerToken, 10);
    expect(cost.decodeStep.baseSeconds).toBeCloseTo(3e-3, 9);
    expect(cost.decodeStep.perSequenceSeconds).toBeCloseTo(0.3e-3, 9);
    expect(cost.decodeStep.perContextTokenSeconds).toBeCloseTo(20e-9, 12);
    expect(cost.transferBytesPerSecond).toBe(1.5e9);
    expect(quality.prefill.maxRelativeError).toBeLessThan(1e-6);
    expect(quality.decode.samples).toBe(8);
  });

  it('makes the simulator reproduce a lone request’s measured TTFT', () => {
    const { cost } = fitCostModel(samples);
    const trace = parseTrace(JSON.stringify({ timestamp: 0, input_length: 1000 * 32, output_length: 2, hash_ids: [] }));
    const r = simulate({ trace, decodeWorkers: 1, blockScale: 16, cost });
    expect(r.latencyMs.ttft.mean! / 1000).toBeCloseTo(predictAloneTtft(truth, 1000, 0, limits), 9);
  });

  it('reads a calibration file or a bare cost model, and names a bad file', () => {
    const { cost } = fitCostModel(samples);
    const file = {
      version: 1,
      kind: 'pdserve-cost-model',
      engine: { maxRunning: 32, maxBatchTokens: 1024, prefillChunkTokens: 128, blockSize: 16 },
      hostParallelism: { engines: 2, parallelism: 1.4 },
      cost,
    };
    expect(parseCostModel(JSON.stringify(file))).toEqual({
      cost,
      engine: { maxRunning: 32, maxBatchTokens: 1024, prefillChunkTokens: 128 },
      hostParallelism: 1.4,
    });
    expect(parseCostModel('{"prefillSecondsPerToken": 0.001}').cost.prefillSecondsPerToken).toBe(0.001);
    expect(() => parseCostModel('{"prefillSecondsPerToken": -1}', 'x.json')).toThrow('x.json: cost model: prefillSecondsPerToken');
    expect(() => parseCostModel('nope', 'x.json')).toThrow('x.json: not JSON');
  });
});
