// @pdserve/log: the one logger, pino. JSON lines by default ({level, time, msg, service, ...fields}, the
// shape log pipelines read); one readable line per record when asked, or when stderr is a terminal.
import { pino } from 'pino';
import type { Logger, LogLevel } from '@pdserve/contracts';

export type { LogFields, Logger, LogLevel } from '@pdserve/contracts';

export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];
export const LOG_FORMATS = ['json', 'pretty', 'auto'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export interface LoggerOptions {
  /** Least severe level written; default 'info'. */
  readonly level?: LogLevel;
  /** `service` field on every line. */
  readonly service?: string;
  /** 'json' lines, 'pretty' readable lines, or 'auto' (default): pretty when stderr is a terminal. */
  readonly format?: LogFormat;
  /** Where each line goes; default process.stderr (synchronously: nothing is lost on exit). */
  readonly write?: (line: string) => void;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const write = opts.write ?? ((line: string) => void process.stderr.write(line));
  const format = opts.format ?? 'auto';
  const pretty = format === 'pretty' || (format === 'auto' && opts.write === undefined && process.stderr.isTTY === true);
  return pino(
    {
      level: opts.level ?? 'info',
      base: opts.service === undefined ? {} : { service: opts.service },
      messageKey: 'msg',
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: pino.stdSerializers.err, error: pino.stdSerializers.err },
    },
    { write: pretty ? (line: string) => write(prettyLine(line)) : write },
  );
}

/** Writes nothing. */
export const silentLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => silentLogger,
};

/** `12:00:01.234 WARN  [gateway] worker unreachable; retrying elsewhere worker=d-1 error="..."` */
export function prettyLine(json: string): string {
  let r: Record<string, unknown>;
  try {
    r = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const { level, time, msg, service, ...fields } = r;
  const clock = typeof time === 'string' ? time.slice(11, 23) : '';
  const where = typeof service === 'string' ? ` [${service}]` : '';
  const rest = Object.entries(fields)
    .map(([k, v]) => ` ${k}=${typeof v === 'string' && !/[\s"=]/.test(v) ? v : JSON.stringify(v)}`)
    .join('');
  return `${clock} ${String(level).toUpperCase().padEnd(5)}${where} ${String(msg ?? '')}${rest}\n`;
}

/** The error's message, for a log field. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
