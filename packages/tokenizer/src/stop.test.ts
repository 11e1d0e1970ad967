import { describe, expect, it } from 'vitest';
import { StopMatcher } from './stop';

/** Feeds deltas until a stop; returns the emitted text and whether it stopped. */
function run(stops: readonly string[], deltas: readonly string[]): { text: string; stopped: boolean; pushes: string[] } {
  const m = new StopMatcher(stops);
  const pushes: string[] = [];
  for (const d of deltas) {
    const r = m.push(d);
    pushes.push(r.text);
    if (r.stopped) return { text: pushes.join(''), stopped: true, pushes };
  }
  pushes.push(m.flush());
  return { text: pushes.join(''), stopped: false, pushes };
}

describe('StopMatcher', () => {
  it('passes text through when there are no stop strings', () => {
    expect(run([], ['a', 'b'])).toEqual({ text: 'ab', stopped: false, pushes: ['a', 'b', ''] });
  });

  it('stops inside one delta and drops the stop string and what follows', () => {
    expect(run(['END'], ['hello END world'])).toMatchObject({ text: 'hello ', stopped: true });
  });

  it('matches a stop string split across many deltas and never emits any of it', () => {
    const r = run(['<|end|>'], ['Hi', ' <', '|', 'e', 'n', 'd', '|', '>', 'more']);
    expect(r).toMatchObject({ text: 'Hi ', stopped: true });
    for (const p of r.pushes) expect(p).not.toContain('<');
  });

  it('releases held text once it cannot be a stop string', () => {
    const m = new StopMatcher(['</s>']);
    expect(m.push('a</')).toEqual({ text: 'a', stopped: false });
    expect(m.push('b')).toEqual({ text: '</b', stopped: false });
    expect(m.push('<')).toEqual({ text: '', stopped: false });
    expect(m.flush()).toBe('<');
  });

  it('picks the earliest match among overlapping candidates', () => {
    expect(run(['bcd', 'cde'], ['abcdef'])).toMatchObject({ text: 'a', stopped: true });
    expect(run(['cde', 'bcd'], ['ab', 'c', 'de'])).toMatchObject({ text: 'a', stopped: true });
    // 'abab' can restart inside a partial match.
    expect(run(['abac'], ['aba', 'bac'])).toMatchObject({ text: 'ab', stopped: true });
    // A longer candidate held back must not hide a shorter one that completes first.
    expect(run(['xxxxy', 'xx!'], ['xx', 'x', '!'])).toMatchObject({ text: 'x', stopped: true });
  });

  it('holds back only the longest possible prefix', () => {
    const m = new StopMatcher(['abc', 'bcd']);
    expect(m.push('zab')).toEqual({ text: 'z', stopped: false });
    expect(m.push('x')).toEqual({ text: 'abx', stopped: false });
  });

  it('handles a stop at the very start, non-ASCII stops and ignores empty stops', () => {
    expect(run(['\n\n'], ['\n', '\nrest'])).toMatchObject({ text: '', stopped: true });
    expect(run(['世界', ''], ['你好', '世', '界!'])).toMatchObject({ text: '你好', stopped: true });
  });

  it('emits nothing after a stop', () => {
    const m = new StopMatcher(['.']);
    expect(m.push('a.b')).toEqual({ text: 'a', stopped: true, matched: '.' });
    expect(m.push('c')).toEqual({ text: '', stopped: true });
    expect(m.flush()).toBe('');
  });
});
