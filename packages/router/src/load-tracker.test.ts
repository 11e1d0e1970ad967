import { describe, expect, it } from 'vitest';
import { LoadTracker, UNKNOWN_LOAD } from './load-tracker';
import { fakeClock, loadReport } from './test-support';

describe('LoadTracker', () => {
  it('keeps the latest report per worker with its age', () => {
    const clock = fakeClock();
    const t = new LoadTracker({ clock: clock.now });
    expect(t.get('a')).toBe(UNKNOWN_LOAD);
    expect(t.ageMs('a')).toBe(Infinity);
    t.report(loadReport('a', { running: 3, waiting: 1, queuedPrefillTokens: 100 }));
    clock.advance(250);
    expect(t.get('a')).toMatchObject({ running: 3, waiting: 1, queuedPrefillTokens: 100, inFlight: 0 });
    expect(t.ageMs('a')).toBe(250);
    t.report(loadReport('a', { running: 5 }));
    expect(t.get('a').running).toBe(5);
    expect(t.ageMs('a')).toBe(0);
  });

  it('adds optimistic in-flight work until the next report clears it', () => {
    const t = new LoadTracker();
    t.report(loadReport('a', { running: 2, queuedPrefillTokens: 64 }));
    t.addInFlight('a', { running: 1, prefillTokens: 500 });
    t.addInFlight('a', { running: 1, prefillTokens: 20 });
    expect(t.get('a')).toMatchObject({ running: 4, queuedPrefillTokens: 584, inFlight: 2 });
    t.report(loadReport('a', { running: 4, queuedPrefillTokens: 300 }));
    expect(t.get('a')).toMatchObject({ running: 4, queuedPrefillTokens: 300, inFlight: 0 });
  });

  it('hands out live views aligned with a worker list, rebuilt after a removal', () => {
    const t = new LoadTracker();
    const workers = [{ id: 'a' }, { id: 'b' }];
    const views = t.viewsFor(workers);
    expect(views.map((v) => v.running)).toEqual([0, 0]);
    t.report(loadReport('b', { running: 7 }));
    expect(t.viewsFor(workers)).toBe(views);
    expect(views[1]!.running).toBe(7);
    t.removeWorker('b');
    t.report(loadReport('b', { running: 2 }));
    expect(t.viewsFor(workers)[1]!.running).toBe(2);
  });

  it('accounts in-flight work on a worker that has not reported yet, and forgets removed workers', () => {
    const t = new LoadTracker();
    t.addInFlight('b', { running: 1, prefillTokens: 10 });
    expect(t.get('b')).toMatchObject({ running: 1, queuedPrefillTokens: 10, receivedAt: undefined });
    t.removeWorker('b');
    expect(t.get('b')).toBe(UNKNOWN_LOAD);
  });
});
