/** A one-line progress bar on stderr (only when it is a terminal; otherwise a line at the end). */
export function progressBar(label: string): { update(done: number, total: number): void; end(): void } {
  const tty = process.stderr.isTTY === true;
  let last = -1;
  return {
    update(done, total) {
      const pct = total > 0 ? Math.floor((done / total) * 100) : 100;
      if (!tty || pct === last) return;
      last = pct;
      const width = 30;
      const fill = Math.round((pct / 100) * width);
      process.stderr.write(
        `\r${label} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${String(pct).padStart(3)}% ${(done / 2 ** 20).toFixed(1)}/${(total / 2 ** 20).toFixed(1)} MiB`,
      );
    },
    end() {
      process.stderr.write(tty ? '\n' : `${label}: done\n`);
    },
  };
}

/**
 * A progress bar for counted work on stderr, with a free-form detail after it (e.g. "12 in flight, 3.4 s");
 * `total` undefined shows a spinner-less count. Only when stderr is a terminal; otherwise one line at the end.
 */
export function countBar(label: string): {
  update(done: number, total: number | undefined, detail?: string): void;
  end(summary?: string): void;
} {
  const tty = process.stderr.isTTY === true;
  let lastDraw = 0;
  let drawn = false;
  return {
    update(done, total, detail = '') {
      if (!tty) return;
      const now = Date.now();
      if (now - lastDraw < 100 && done !== total) return; // at most 10 redraws a second
      lastDraw = now;
      drawn = true;
      const width = 30;
      const frac = total !== undefined && total > 0 ? Math.min(1, done / total) : 0;
      const bar =
        total === undefined
          ? ''
          : ` [${'#'.repeat(Math.round(frac * width))}${'.'.repeat(width - Math.round(frac * width))}] ${String(Math.floor(frac * 100)).padStart(3)}%`;
      const count = total === undefined ? `${done}` : `${done}/${total}`;
      process.stderr.write(`\r\x1b[2K${label}${bar} ${count}${detail ? `, ${detail}` : ''}`);
    },
    end(summary) {
      if (tty) process.stderr.write(drawn ? '\n' : '');
      if (!tty || summary !== undefined) process.stderr.write(`${label}: ${summary ?? 'done'}\n`);
    },
  };
}
