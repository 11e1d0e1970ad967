// Each service's logger: the one of @pdserve/log, named by the service, at the --log-level and in the
// --log-format asked for (JSON lines unless stderr is a terminal, by default).
import { createLogger, LOG_FORMATS, LOG_LEVELS, type LogFormat, type Logger, type LogLevel } from '@pdserve/log';

export function serviceLogger(service: string, level: string | undefined, format?: string): Logger {
  const lvl = (LOG_LEVELS as readonly string[]).includes(level ?? '') ? (level as LogLevel) : 'info';
  const fmt = (LOG_FORMATS as readonly string[]).includes(format ?? '') ? (format as LogFormat) : 'auto';
  return createLogger({ level: lvl, service, format: fmt });
}
