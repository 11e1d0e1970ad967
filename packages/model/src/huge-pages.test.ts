import { describe, expect, it } from 'vitest';
import { HUGE_PAGES_TUNABLE, hugePagesMissing, withHugePages } from './huge-pages';

describe('huge pages for the model memory', () => {
  it('adds the tunable to GLIBC_TUNABLES, keeping the others, once', () => {
    expect(withHugePages({ A: '1' }).GLIBC_TUNABLES).toBe(HUGE_PAGES_TUNABLE);
    expect(withHugePages({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }).GLIBC_TUNABLES).toBe(
      `glibc.malloc.arena_max=2:${HUGE_PAGES_TUNABLE}`,
    );
    const set = { GLIBC_TUNABLES: 'glibc.malloc.hugetlb=0' };
    expect(withHugePages(set)).toBe(set); // an operator's own choice stands
    expect(withHugePages({ B: 'x' }).B).toBe('x');
  });

  it('says what is missing only when the process lacks the tunable', () => {
    expect(hugePagesMissing({ GLIBC_TUNABLES: HUGE_PAGES_TUNABLE })).toBeUndefined();
    const missing = hugePagesMissing({});
    // Where the kernel hands huge pages out on request (madvise), a process without the tunable is told how.
    if (missing !== undefined) expect(missing).toContain(`GLIBC_TUNABLES=${HUGE_PAGES_TUNABLE}`);
  });
});
