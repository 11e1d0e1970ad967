// Structured logging: a pino-compatible interface, a JSON-lines default, and outage de-duplication.

export type LogFields = Readonly<Record<string, unknown>>;

/** The subset of pino's API the control plane uses; a pino logger satisfies it. */
export interface Logger {
  info(fields: LogFields, message: string): void;
  warn(fields: LogFields, message: string): void;
  error(fields: LogFields, message: string): void;
}

function writeLine(level: string, fields: LogFields, message: string): void {
  process.stderr.write(
    `${JSON.stringify({ level, time: Date.now(), component: 'control-plane', ...fields, msg: message })}\n`,
  );
}

export const jsonLogger: Logger = {
  info: (fields, message) => writeLine('info', fields, message),
  warn: (fields, message) => writeLine('warn', fields, message),
  error: (fields, message) => writeLine('error', fields, message),
};

export const silentLogger: Logger = {
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The URL without credentials, for logs and errors. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    else if (parsed.username !== '') parsed.username = '***'; // a token (nats://TOKEN@host)
    return parsed.toString();
  } catch {
    return '<invalid url>';
  }
}

/**
 * Logs the first failure of a background activity and its recovery, not every retry in between, so that a
 * Redis or NATS outage produces two lines rather than one per heartbeat.
 */
export class OutageLog {
  private failures = 0;

  constructor(
    private readonly logger: Logger,
    private readonly activity: string,
    private readonly fields: LogFields = {},
  ) {}

  failed(error: unknown): void {
    this.failures += 1;
    if (this.failures === 1) {
      this.logger.warn({ ...this.fields, err: errorMessage(error) }, `${this.activity} failing; will retry`);
    }
  }

  succeeded(): void {
    if (this.failures > 0) {
      this.logger.info({ ...this.fields, failedAttempts: this.failures }, `${this.activity} recovered`);
      this.failures = 0;
    }
  }
}
