export type LogFields = Readonly<Record<string, unknown>>;

/** The structured logger the API writes to; pino-compatible in spirit (message plus fields). */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const LEVELS: Readonly<Record<LogLevel, number>> = { debug: 20, info: 30, warn: 40, error: 50 };

export interface JsonLoggerOptions {
  /** Lowest level written; default 'info'. */
  readonly level?: LogLevel;
  /** Where each JSON line goes; default process.stderr. */
  readonly write?: (line: string) => void;
  /** Fields added to every line. */
  readonly base?: LogFields;
  /** Shorthand for base.service. */
  readonly service?: string;
}

/** One JSON object per line: {level, time, msg, ...base, ...fields}; Error values are expanded. */
export function createLogger(opts: JsonLoggerOptions = {}): Logger {
  const min = LEVELS[opts.level ?? 'info'];
  const write = opts.write ?? ((line: string) => void process.stderr.write(line));
  const base = opts.service === undefined ? (opts.base ?? {}) : { service: opts.service, ...opts.base };
  const log =
    (level: LogLevel) =>
    (msg: string, fields: LogFields = {}): void => {
      if (LEVELS[level] < min) return;
      const record = { level, time: new Date().toISOString(), msg, ...base, ...fields };
      write(JSON.stringify(record, errorReplacer) + '\n');
    };
  return { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
}

/** A logger that adds `fields` to every line of `parent`. */
export function childLogger(parent: Logger, fields: LogFields): Logger {
  const wrap =
    (fn: (msg: string, f?: LogFields) => void) =>
    (msg: string, f: LogFields = {}): void =>
      fn(msg, { ...fields, ...f });
  return {
    debug: wrap(parent.debug.bind(parent)),
    info: wrap(parent.info.bind(parent)),
    warn: wrap(parent.warn.bind(parent)),
    error: wrap(parent.error.bind(parent)),
  };
}

export const createJsonLogger = createLogger;

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

function errorReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return { name: value.name, message: value.message, stack: value.stack };
  return value;
}
