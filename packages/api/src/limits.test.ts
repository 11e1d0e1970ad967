import { describe, expect, it } from 'vitest';
import { ApiError } from './errors';
import { ClientLimiter } from './limits';

function refusal(f: () => unknown): ApiError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ApiError);
    return e as ApiError;
  }
  throw new Error('admitted');
}

describe('per-client limits', () => {
  it('a token bucket: the burst at once, then the rate; Retry-After is when the bucket holds a request again', () => {
    let now = 0;
    const l = new ClientLimiter({ ratePerSecond: 0.5, burst: 3 }, () => now);
    for (let i = 0; i < 3; i++) l.admit('a')();
    const e = refusal(() => l.admit('a'));
    expect({ status: e.status, code: e.code, retryAfter: e.headers['retry-after'] }).toEqual({
      status: 429,
      code: 'rate_limit_exceeded',
      retryAfter: '2',
    });
    l.admit('b')(); // another client has its own bucket
    now = 1000; // half a request refilled
    expect(refusal(() => l.admit('a')).headers['retry-after']).toBe('1');
    now = 2000;
    l.admit('a')();
    expect(refusal(() => l.admit('a')).headers['retry-after']).toBe('2');
    now = 100_000; // refills up to the burst, no more
    for (let i = 0; i < 3; i++) l.admit('a')();
    expect(() => l.admit('a')).toThrow(ApiError);
  });

  it('the burst defaults to one second of the rate', () => {
    const l = new ClientLimiter({ ratePerSecond: 4 }, () => 0);
    for (let i = 0; i < 4; i++) l.admit('a');
    expect(refusal(() => l.admit('a')).headers['retry-after']).toBe('1');
  });

  it('caps requests in flight per client; a refused request takes no token', () => {
    let now = 0;
    const l = new ClientLimiter({ maxConcurrent: 2, ratePerSecond: 1, burst: 3 }, () => now);
    const r1 = l.admit('a');
    const r2 = l.admit('a');
    const e = refusal(() => l.admit('a'));
    expect({ status: e.status, code: e.code, retryAfter: e.headers['retry-after'] }).toEqual({
      status: 429,
      code: 'concurrency_limit_exceeded',
      retryAfter: '1',
    });
    r1();
    r1(); // releasing twice frees one slot only
    const r3 = l.admit('a'); // the third token: the refusal above took none
    expect(refusal(() => l.admit('a')).code).toBe('concurrency_limit_exceeded');
    r2();
    r3();
    expect(refusal(() => l.admit('a')).code).toBe('rate_limit_exceeded');
    now = 1000;
    l.admit('a');
  });

  it('no limits: admits everything and tracks nobody', () => {
    const l = new ClientLimiter({});
    for (let i = 0; i < 1000; i++) l.admit(`c${i}`);
    expect(l.tracked).toBe(0);
  });

  it('forgets idle clients whose bucket is full once the table grows', () => {
    let now = 0;
    const l = new ClientLimiter({ ratePerSecond: 10, burst: 1 }, () => now);
    const held = l.admit('busy');
    for (let i = 0; i < 5000; i++) l.admit(`addr:${i}`)();
    now = 10_000;
    for (let i = 0; i < 5000; i++) l.admit(`addr2:${i}`)();
    expect(l.tracked).toBeLessThan(6000);
    held();
  });

  it('refuses nonsense limits', () => {
    expect(() => new ClientLimiter({ ratePerSecond: 0 })).toThrow();
    expect(() => new ClientLimiter({ ratePerSecond: 1, burst: 0.5 })).toThrow();
    expect(() => new ClientLimiter({ maxConcurrent: 0 })).toThrow();
  });
});
