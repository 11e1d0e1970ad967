import { readFile } from 'node:fs/promises';

/** The Mooncake FAST'25 synthetic trace, shipped in the repository (`packages/bench/traces/README.md`: source, licence). */
export const MOONCAKE_TRACE = new URL('../traces/mooncake_synthetic_trace.jsonl', import.meta.url).pathname;

/** One line of a Mooncake-format trace (`packages/bench/traces/README.md`). */
export interface TraceRecord {
  /** Arrival time in ms, relative to the first request. */
  readonly timestamp: number;
  readonly inputLength: number;
  readonly outputLength: number;
  /** Prefix block hashes, one per `traceBlockSize`-token block (the last one may be partial). */
  readonly hashIds: readonly number[];
}

export interface Trace {
  readonly source: string;
  readonly records: readonly TraceRecord[];
}

/** A line that is not a valid trace record; the message names the file and line. */
export class TraceError extends Error {
  constructor(
    readonly source: string,
    readonly line: number,
    reason: string,
  ) {
    super(`${source}:${line}: ${reason}`);
    this.name = 'TraceError';
  }
}

export async function readTrace(path: string): Promise<Trace> {
  return parseTrace(await readFile(path, 'utf8'), path);
}

/** Parses JSON Lines text; blank lines are skipped, anything else must be a valid record. */
export function parseTrace(text: string, source = '<trace>'): Trace {
  const records: TraceRecord[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    records.push(parseRecord(line, (reason) => new TraceError(source, i + 1, reason)));
  }
  if (records.length === 0) throw new TraceError(source, 1, 'no records');
  return { source, records };
}

function parseRecord(line: string, fail: (reason: string) => TraceError): TraceRecord {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch (err) {
    throw fail(`not JSON (${(err as Error).message})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw fail('expected a JSON object');
  const o = v as Record<string, unknown>;
  const int = (key: string, min: number): number => {
    const x = o[key];
    if (typeof x !== 'number' || !Number.isInteger(x) || x < min)
      throw fail(`'${key}' must be an integer ≥ ${min}, got ${JSON.stringify(x)}`);
    return x;
  };
  const ts = o['timestamp'];
  if (typeof ts !== 'number' || !Number.isFinite(ts) || ts < 0) throw fail(`'timestamp' must be a number ≥ 0, got ${JSON.stringify(ts)}`);
  const ids = o['hash_ids'];
  if (!Array.isArray(ids)) throw fail(`'hash_ids' must be an array of integers`);
  for (const h of ids) {
    if (typeof h !== 'number' || !Number.isSafeInteger(h) || h < 0)
      throw fail(`'hash_ids' must hold integers ≥ 0, got ${JSON.stringify(h)}`);
  }
  return { timestamp: ts, inputLength: int('input_length', 1), outputLength: int('output_length', 0), hashIds: ids as number[] };
}
