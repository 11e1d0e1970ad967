// The one logger interface of every package: pino's calling convention (fields first, then the message),
// so a pino logger is one as it is. @pdserve/log makes them.

export type LogFields = Readonly<Record<string, unknown>>;

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface LogFn {
  (fields: LogFields, msg: string): void;
  (msg: string): void;
}

export interface Logger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  /** A logger that adds `fields` to every line (a request id, a worker id). */
  child(fields: LogFields): Logger;
}
