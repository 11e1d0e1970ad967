/** A counting semaphore whose waiters are served in order; `acquire` gives up (false) when `stop` aborts. */
export class Slots {
  private free: number;
  private readonly waiters: (() => void)[] = [];

  constructor(capacity: number) {
    this.free = capacity;
  }

  async acquire(stop: AbortSignal): Promise<boolean> {
    if (stop.aborted) return false;
    if (this.free > 0) {
      this.free--;
      return true;
    }
    return new Promise<boolean>((resolve) => {
      const grant = (): void => {
        stop.removeEventListener('abort', giveUp);
        resolve(true);
      };
      const giveUp = (): void => {
        const at = this.waiters.indexOf(grant);
        if (at >= 0) this.waiters.splice(at, 1);
        resolve(false);
      };
      this.waiters.push(grant);
      stop.addEventListener('abort', giveUp, { once: true });
    });
  }

  release(): void {
    const next = this.waiters.shift();
    if (next !== undefined) next();
    else this.free++;
  }
}

/** Resolves at `performance.now() ≥ at` or when `stop` aborts, whichever is first. */
export function sleepUntil(at: number, now: number, stop: AbortSignal): Promise<void> {
  const ms = at - now;
  if (ms <= 0 || stop.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    let timer: NodeJS.Timeout;
    const done = (): void => {
      clearTimeout(timer);
      stop.removeEventListener('abort', done);
      resolve();
    };
    // Timers round to whole milliseconds and may fire a little before `at`: sleep again for the rest.
    const arm = (): void => {
      const left = at - performance.now();
      if (left <= 0) done();
      else timer = setTimeout(arm, Math.ceil(left));
    };
    timer = setTimeout(arm, Math.ceil(ms));
    stop.addEventListener('abort', done, { once: true });
  });
}
