// Logging helpers: outage de-duplication and redaction. The logger is the one of @pdserve/log (pino); the
// control plane logs through whichever its owner hands it.
import type { LogFields, Logger } from '@pdserve/contracts';
import { errorMessage } from '@pdserve/log';

export type { LogFields, Logger };
export { errorMessage, silentLogger } from '@pdserve/log';

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
