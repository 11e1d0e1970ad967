import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { ApiKeys, keysEqual, parseKeyFile, presentedKey } from './auth';

describe('the API key comparer', () => {
  it('is equality, whatever the lengths (timingSafeEqual alone throws on unequal lengths: both sides are hashed first)', () => {
    const key = 'sk-0123456789abcdef0123456789abcdef';
    expect(keysEqual(key, key)).toBe(true);
    expect(keysEqual(`${key.slice(0, -1)}0`, key)).toBe(false); // same length, last character differs
    expect(keysEqual(`0${key.slice(1)}`, key)).toBe(false); // same length, first character differs
    expect(keysEqual(key.slice(0, -1), key)).toBe(false); // a prefix
    expect(keysEqual(`${key}x`, key)).toBe(false); // longer
    expect(keysEqual('', key)).toBe(false);
    expect(keysEqual('x'.repeat(100_000), key)).toBe(false);
    expect(keysEqual('ключ', 'ключ')).toBe(true); // compared as UTF-8
  });

  it('matches a presented key against every key and answers with its id, never the key', () => {
    const keys = new ApiKeys(['alpha-key', 'beta-key', 'alpha-key']);
    expect(keys.size).toBe(2);
    const a = keys.match('alpha-key');
    const b = keys.match('beta-key');
    expect(a).toMatch(/^[0-9a-f]{32}$/);
    expect(b).toMatch(/^[0-9a-f]{32}$/);
    expect(a).not.toBe(b);
    expect(keys.match('alpha-key')).toBe(a); // stable
    expect(keys.match('gamma-key')).toBeUndefined();
    expect(keys.match('')).toBeUndefined();
    expect(new ApiKeys(['alpha-key']).match('alpha-key')).toBe(a); // derived from the key alone
    expect(() => new ApiKeys(['ok', ''])).toThrow(/non-empty/);
    expect(() => new ApiKeys(['has space'])).toThrow(/whitespace/);
  });
});

describe('where a request presents its key', () => {
  const req = (headers: Record<string, string | string[]>): IncomingMessage => ({ headers }) as unknown as IncomingMessage;
  it('reads Bearer auth (any case), else x-api-key', () => {
    expect(presentedKey(req({ authorization: 'Bearer k1' }))).toBe('k1');
    expect(presentedKey(req({ authorization: 'bearer   k1 ' }))).toBe('k1');
    expect(presentedKey(req({ 'x-api-key': 'k2' }))).toBe('k2');
    expect(presentedKey(req({ authorization: 'Basic dXNlcjpwYXNz', 'x-api-key': 'k3' }))).toBe('k3');
    expect(presentedKey(req({ authorization: 'Bearer' }))).toBeUndefined();
    expect(presentedKey(req({}))).toBeUndefined();
  });
});

describe('key files', () => {
  it('hold one key per line; blank lines and # comments are skipped', () => {
    expect(parseKeyFile('# team keys\nkey-one\n\n  key-two  \r\n#key-three\n')).toEqual(['key-one', 'key-two']);
  });
});
