export interface StopMatch {
  /** Text safe to emit now. */
  readonly text: string;
  /** A stop string matched; `text` is everything before it and nothing more will be emitted. */
  readonly stopped: boolean;
  /** Which stop string matched (the first push that stops says it). */
  readonly matched?: string;
}

/**
 * Finds stop strings in streamed text. Any tail that could be the start of a stop string is held back
 * until it is known not to be one, so a stop string is never emitted, even when split across deltas.
 * Memory and work per push are bounded by the delta plus the longest stop string.
 */
export class StopMatcher {
  private readonly stops: readonly string[];
  private held = '';
  private done = false;

  constructor(stops: readonly string[]) {
    this.stops = [...new Set(stops.filter((s) => s.length > 0))];
  }

  get stopped(): boolean {
    return this.done;
  }

  push(delta: string): StopMatch {
    if (this.done) return { text: '', stopped: true };
    if (this.stops.length === 0) return { text: delta, stopped: false };
    const text = this.held + delta;
    // The earliest match wins; held text never contains a whole stop string, so none is missed.
    let at = -1;
    let matched = '';
    for (const stop of this.stops) {
      const i = text.indexOf(stop);
      if (i !== -1 && (at === -1 || i < at)) {
        at = i;
        matched = stop;
      }
    }
    if (at !== -1) {
      this.done = true;
      this.held = '';
      return { text: text.slice(0, at), stopped: true, matched };
    }
    const keep = this.partialMatchLength(text);
    this.held = text.slice(text.length - keep);
    return { text: text.slice(0, text.length - keep), stopped: false };
  }

  /** The text still held back (no stop string matched); call at end of stream. */
  flush(): string {
    const out = this.done ? '' : this.held;
    this.held = '';
    return out;
  }

  /** Length of the longest suffix of `text` that is a proper prefix of some stop string. */
  private partialMatchLength(text: string): number {
    let best = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, text.length); n > best; n--) {
        if (text.endsWith(stop.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}
