import { describe, expect, it } from 'vitest';
import { GENERATE_DEADLINE, generateDeadlineMs } from './proto';

describe('generateDeadlineMs', () => {
  it('grows with max_tokens instead of a fixed cut', () => {
    const { baseMs, perTokenMs } = GENERATE_DEADLINE;
    expect(generateDeadlineMs(10, 16, 2048)).toBe(baseMs + 16 * perTokenMs);
    expect(generateDeadlineMs(10, 4000, 8192)).toBe(baseMs + 4000 * perTokenMs);
    expect(generateDeadlineMs(10, 4000, 8192)).toBeGreaterThan(600_000);
  });
  it('is capped by what the model context leaves', () => {
    expect(generateDeadlineMs(2000, 4000, 2048)).toBe(GENERATE_DEADLINE.baseMs + 48 * GENERATE_DEADLINE.perTokenMs);
    expect(generateDeadlineMs(2048, 100, 2048)).toBe(GENERATE_DEADLINE.baseMs + GENERATE_DEADLINE.perTokenMs);
  });
});
