import { describe, expect, it } from 'vitest';
import { Admission, parseClassSlos, type AdmissionInput } from './admission';

// Hand-built costs: 1 ms per prefill token, a 10 ms decode step + 1 ms per sequence; nothing else.
const costModel = { prefillSecondsPerToken: 1e-3, decodeStep: { baseSeconds: 10e-3, perSequenceSeconds: 1e-3, perContextTokenSeconds: 0 } };
const input = (x: Partial<AdmissionInput> = {}): AdmissionInput => ({
  tier: 'default',
  promptTokens: 100,
  uncachedTokens: 100,
  queuedPrefillTokens: 100,
  decodeBatch: 1,
  ...x,
});

describe('SLO-aware admission', () => {
  it('predicts TTFT from the queued prefill work on the prefilling worker, plus one decode step', () => {
    const a = new Admission({ costModel });
    expect(a.predict(input()).ttftSeconds).toBeCloseTo(0.1 + 0.011, 6);
    expect(a.predict(input({ queuedPrefillTokens: 2000 })).ttftSeconds).toBeCloseTo(2 + 0.011, 6);
    expect(a.predict(input({ decodeBatch: 9 })).itlSeconds).toBeCloseTo(0.019, 6);
  });

  it('priority jumps the queue: only its own prefill is ahead of it', () => {
    const a = new Admission({ costModel });
    expect(a.predict(input({ tier: 'priority', queuedPrefillTokens: 5000 })).ttftSeconds).toBeCloseTo(0.111, 6);
  });

  it('refuses what misses its class SLO, with Retry-After = the time the queue needs to drain to the SLO', () => {
    const a = new Admission({ costModel, ttftSloMs: { default: 500 } });
    expect(a.enforcing).toBe(true);
    expect(a.decide(input({ queuedPrefillTokens: 400 })).admit).toBe(true);
    const v = a.decide(input({ queuedPrefillTokens: 3000 }));
    expect(v.admit).toBe(false);
    if (!v.admit) {
      expect(v.retryAfterSeconds).toBe(3); // 3.011 s predicted − 0.5 s SLO → 2.5 s → 3
      expect(v.reason).toMatch(/default SLO of 500 ms/);
    }
    // Flex has no SLO here: it waits instead. Priority skips the queue, so the same load admits it.
    expect(a.decide(input({ tier: 'flex', queuedPrefillTokens: 3000 })).admit).toBe(true);
    expect(a.decide(input({ tier: 'priority', queuedPrefillTokens: 3000 })).admit).toBe(true);
  });

  it('refuses on the inter-token SLO from the decode batch', () => {
    const a = new Admission({ costModel, itlSloMs: { default: 15 } });
    expect(a.decide(input({ decodeBatch: 4 })).admit).toBe(true);
    expect(a.decide(input({ decodeBatch: 6 })).admit).toBe(false);
  });

  it('corrects its predictions by the TTFT it observes, within bounds', () => {
    const a = new Admission({ costModel });
    const before = a.predict(input()).ttftSeconds;
    for (let i = 0; i < 100; i++) a.observe(a.predict(input()).ttftSeconds, 4 * before);
    expect(a.predict(input()).ttftSeconds / before).toBeCloseTo(4, 1);
    for (let i = 0; i < 500; i++) a.observe(a.predict(input()).ttftSeconds, 1000);
    expect(a.predict(input()).ttftSeconds / before).toBeLessThanOrEqual(20);
  });

  it('without SLOs admits everything', () => {
    const a = new Admission({ costModel });
    expect(a.enforcing).toBe(false);
    expect(a.decide(input({ queuedPrefillTokens: 1e9 })).admit).toBe(true);
  });

  it('parses CLASS=MS lists', () => {
    expect(parseClassSlos('priority=500, default=2000')).toEqual({ priority: 500, default: 2000 });
    expect(parseClassSlos(undefined)).toEqual({});
    expect(() => parseClassSlos('gold=5')).toThrow(RangeError);
    expect(() => parseClassSlos('default=-1')).toThrow(RangeError);
  });
});
