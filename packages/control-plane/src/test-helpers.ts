// Shared by this package's tests (not exported from the index).
import type { LogFields, Logger } from './log';
import type { ServiceRecord } from './types';

export async function waitFor(what: string, predicate: () => boolean, timeoutMs = 5_000, intervalMs = 10): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

let clusters = 0;
/** A fresh cluster name per test, so tests sharing a server (or the process hub) do not see each other. */
export function uniqueCluster(): string {
  clusters += 1;
  return `t${process.pid}-${clusters}`;
}

export function sampleRecord(id: string, overrides: Partial<ServiceRecord> = {}): ServiceRecord {
  return {
    id,
    role: 'decode',
    grpcAddress: `127.0.0.1:${50_000 + id.length}`,
    adminAddress: '127.0.0.1:9100',
    model: 'tiny-llama',
    capacity: { totalBlocks: 1_024, blockSize: 16, maxNumSeqs: 64 },
    transfer: { transports: ['tcp', 'grpc'], tcp: '127.0.0.1:7000' },
    incarnation: `inc-${id}-1`,
    startedAt: 1_700_000_000_000,
    ...overrides,
  };
}

export interface LogLine {
  readonly level: 'debug' | 'info' | 'warn' | 'error';
  readonly fields: LogFields;
  readonly message: string;
}

/** Keeps log lines in memory, so tests stay quiet and can assert on what was logged. */
export function memoryLogger(): Logger & { readonly lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at =
    (level: LogLine['level'], bound: LogFields) =>
    (fields: LogFields | string, message?: string): void => {
      lines.push(
        typeof fields === 'string'
          ? { level, fields: bound, message: fields }
          : { level, fields: { ...bound, ...fields }, message: message ?? '' },
      );
    };
  const make = (bound: LogFields): Logger => ({
    debug: at('debug', bound),
    info: at('info', bound),
    warn: at('warn', bound),
    error: at('error', bound),
    child: (f) => make({ ...bound, ...f }),
  });
  return { lines, ...make({}) };
}
