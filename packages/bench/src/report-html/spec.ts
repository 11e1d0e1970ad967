// What an HTML report shows, as plain data: tables and charts (uPlot's aligned-data layout). The bench and
// simulate pages build one of these; page.ts turns it into a self-contained file. Deriving the numbers
// here, not in the browser, keeps them testable and the page's script generic.
import { percentile } from '../stats';

/** One chart: x values, and series aligned with them (null: no value there). */
export interface ChartSpec {
  readonly title: string;
  /** One sentence under the title: what is plotted and how it was derived. */
  readonly note: string;
  /** `bars`: x is a category index (0, 1, …) named by `x.categories`. */
  readonly kind: 'lines' | 'bars';
  readonly x: { readonly label: string; readonly values: readonly number[]; readonly categories?: readonly string[] };
  /** `log`: a log10 axis (latency tails span decades); values ≤ 0 are left out. */
  readonly y: { readonly label: string; readonly log?: boolean };
  readonly series: readonly ChartSeries[];
}

export interface ChartSeries {
  readonly label: string;
  readonly values: readonly (number | null)[];
}

export interface TableSpec {
  readonly title: string;
  readonly columns: readonly string[];
  readonly rows: readonly (readonly string[])[];
}

export interface ReportPage {
  readonly title: string;
  /** Lines under the title: what was run, where, when. */
  readonly meta: readonly string[];
  readonly tables: readonly TableSpec[];
  readonly charts: readonly ChartSpec[];
}

/** Percentiles plotted on a distribution chart: 0, 0.5, …, 100. */
export const PERCENTILE_GRID: readonly number[] = Array.from({ length: 201 }, (_, i) => i / 2);

/** A distribution as its percentile curve on PERCENTILE_GRID; all null when there are no samples. */
export function percentileCurve(values: ArrayLike<number>): (number | null)[] {
  if (values.length === 0) return PERCENTILE_GRID.map(() => null);
  const sorted = Float64Array.from(values).sort();
  return PERCENTILE_GRID.map((q) => round(percentile(sorted, q), 3));
}

/** A bin width for a span: about `bins` bins, rounded to 1, 2 or 5 × a power of ten (seconds). */
export function binWidth(spanSec: number, bins = 60): number {
  if (!(spanSec > 0)) return 1;
  const raw = spanSec / bins;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].find((m) => m * pow >= raw)!;
  return step * pow;
}

/**
 * Tokens per second over time: each item adds `tokens` spread evenly over [from, to] seconds (a point when
 * from = to), into bins of `width` seconds covering [0, span]. Returns bin starts and rates.
 */
export function rateOverTime(
  items: Iterable<{ readonly from: number; readonly to: number; readonly tokens: number }>,
  spanSec: number,
  width: number,
): { starts: number[]; rates: number[] } {
  const n = Math.max(1, Math.ceil(spanSec / width));
  const sums = new Float64Array(n);
  const bin = (t: number): number => Math.min(n - 1, Math.max(0, Math.floor(t / width)));
  for (const { from, to, tokens } of items) {
    if (!(tokens > 0)) continue;
    if (!(to > from)) {
      sums[bin(from)]! += tokens;
      continue;
    }
    const perSec = tokens / (to - from);
    for (let b = bin(from); b <= bin(to); b++) {
      const overlap = Math.min(to, (b + 1) * width) - Math.max(from, b * width);
      if (overlap > 0) sums[b]! += perSec * overlap;
    }
  }
  return { starts: Array.from({ length: n }, (_, b) => round(b * width, 6)), rates: Array.from(sums, (s) => round(s / width, 3)) };
}

/** Series of different runs binned alike share one x axis; shorter runs are null past their end. */
export function alignRates(runs: readonly { readonly starts: number[]; readonly rates: number[] }[]): {
  x: number[];
  series: (number | null)[][];
} {
  const longest = runs.reduce((a, r) => (r.starts.length > a.starts.length ? r : a), runs[0] ?? { starts: [], rates: [] });
  return { x: longest.starts, series: runs.map((r) => longest.starts.map((_, i) => r.rates[i] ?? null)) };
}

export function round(x: number, digits: number): number {
  const m = 10 ** digits;
  return Math.round(x * m) / m;
}

/** A number for a table cell: fixed digits, or an em dash for none. */
export function cell(x: number | null | undefined, digits: number, suffix = ''): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '—' : `${x.toFixed(digits)}${suffix}`;
}
