import { describe, expect, it } from 'vitest';
import {
  CodecError,
  decodeKvBatch,
  decodeLoadReport,
  decodeServiceRecord,
  encodeKvBatch,
  encodeLoadReport,
  encodeServiceRecord,
} from './codec';
import { subjectMatches } from './names';
import { sampleRecord } from './test-helpers';
import { hasFeature, type KvEventBatch, type LoadReport } from './types';

const batch: KvEventBatch = {
  worker: 'decode-0',
  incarnation: 'a1b2',
  seq: 7,
  events: [
    { kind: 'stored', tier: 'device', hashes: ['0123456789abcdef', 'fedcba9876543210'] },
    { kind: 'removed', tier: 'host', hashes: ['00000000000000ff'] },
    { kind: 'cleared' },
  ],
};
const load: LoadReport = {
  worker: 'decode-0',
  running: 3,
  waiting: 1,
  freeBlocks: 100,
  totalBlocks: 512,
  queuedPrefillTokens: 2048,
  ts: 1_700_000_000_123,
};
const bytes = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value));

describe('codec', () => {
  it('round-trips every message kind', () => {
    expect(decodeKvBatch(encodeKvBatch(batch))).toEqual(batch);
    expect(decodeLoadReport(encodeLoadReport(load))).toEqual(load);
    const record = sampleRecord('prefill-1', { role: 'prefill' });
    expect(decodeServiceRecord(encodeServiceRecord(record))).toEqual(record);
    const withData = sampleRecord('w', { dataAddress: '10.0.0.1:50052' });
    expect(decodeServiceRecord(encodeServiceRecord(withData))).toEqual(withData);
  });

  it("carries a record's features as listed, names this release does not know too; an older record has none", () => {
    const listed = sampleRecord('w', { features: ['leave-tail', 'from-a-later-release'] });
    const back = decodeServiceRecord(encodeServiceRecord(listed));
    expect(back).toEqual(listed);
    expect(hasFeature(back, 'leave-tail')).toBe(true);
    const older = decodeServiceRecord(encodeServiceRecord(sampleRecord('old')));
    expect(older.features).toBeUndefined();
    expect(hasFeature(older, 'leave-tail')).toBe(false);
    expect(hasFeature(sampleRecord('w', { features: [] }), 'leave-tail')).toBe(false);
    for (const features of ['leave-tail', [7], ['x'.repeat(65)], Array.from({ length: 65 }, (_, i) => `f${i}`), null]) {
      expect(() => decodeServiceRecord(JSON.stringify({ v: 1, ...sampleRecord('x'), features }))).toThrow(/features/);
    }
  });

  it('keeps KV batches compact', () => {
    const hashes = Array.from({ length: 512 }, (_, i) => i.toString(16).padStart(16, '0'));
    const size = encodeKvBatch({ ...batch, events: [{ kind: 'stored', tier: 'device', hashes }] }).byteLength;
    expect(size).toBeLessThan(512 * 20 + 200);
  });

  it.each([
    ['not JSON', new TextEncoder().encode('{')],
    ['not UTF-8', new Uint8Array([0xff, 0xfe])],
    ['an array', bytes([])],
    ['another wire version', bytes({ ...batch, v: 2 })],
    ['a missing field', bytes({ v: 1, worker: 'w', incarnation: 'i', events: [] })],
    ['a negative seq', bytes({ v: 1, ...batch, seq: -1 })],
    ['a fractional seq', bytes({ v: 1, ...batch, seq: 1.5 })],
    ['an unknown kind', bytes({ v: 1, ...batch, events: [{ kind: 'moved' }] })],
    ['an unknown tier', bytes({ v: 1, ...batch, events: [{ kind: 'stored', tier: 'gpu', hashes: [] }] })],
    ['a short hash', bytes({ v: 1, ...batch, events: [{ kind: 'stored', tier: 'host', hashes: ['abc'] }] })],
    ['an uppercase hash', bytes({ v: 1, ...batch, events: [{ kind: 'stored', tier: 'host', hashes: ['0123456789ABCDEF'] }] })],
  ])('rejects a KV batch with %s', (_what, input) => {
    expect(() => decodeKvBatch(input)).toThrow(CodecError);
  });

  it('rejects invalid load reports and records', () => {
    expect(() => decodeLoadReport(bytes({ v: 1, ...load, running: 'many' }))).toThrow(CodecError);
    expect(() => decodeLoadReport(bytes({ v: 1, ...load, ts: null }))).toThrow(CodecError);
    expect(() => decodeServiceRecord(JSON.stringify({ v: 1, ...sampleRecord('x'), role: 'router' }))).toThrow(/role/);
    expect(() => decodeServiceRecord(JSON.stringify({ v: 1, ...sampleRecord('x'), capacity: 5 }))).toThrow(CodecError);
  });
});

describe('subjectMatches', () => {
  it.each([
    ['pdserve.c.kv.*', 'pdserve.c.kv.w1', true],
    ['pdserve.c.kv.*', 'pdserve.c.load.w1', false],
    ['pdserve.c.kv.*', 'pdserve.c.kv.w1.x', false],
    ['pdserve.c.>', 'pdserve.c.kv.w1', true],
    ['pdserve.c.>', 'pdserve.c', false],
    ['pdserve.c.kv.w1', 'pdserve.c.kv.w1', true],
    ['pdserve.c.kv.w1', 'pdserve.c.kv.w2', false],
  ])('%s ~ %s = %s', (pattern, subject, expected) => {
    expect(subjectMatches(pattern, subject)).toBe(expected);
  });
});
