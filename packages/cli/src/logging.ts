import { createLogger, type Logger, type LogLevel } from '@pdserve/api';
import type { Logger as PinoStyleLogger } from '@pdserve/control-plane';

export function serviceLogger(service: string, level: string | undefined): Logger {
  const lvl = (['debug', 'info', 'warn', 'error'].includes(level ?? '') ? level : 'info') as LogLevel;
  return createLogger({ level: lvl, service });
}

/** The control plane logs pino-style (fields first); adapt our logger to it. */
export function pinoStyle(l: Logger): PinoStyleLogger {
  return {
    info: (fields, msg) => l.info(msg, fields),
    warn: (fields, msg) => l.warn(msg, fields),
    error: (fields, msg) => l.error(msg, fields),
  };
}
