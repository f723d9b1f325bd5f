/**
 * Structured JSON logging (pino). Components take a `Logger` and make children with their own
 * bindings (`component`, `request_id`); nothing logs through a global.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function createLogger(
  level: LogLevel,
  component: string,
  destination?: NodeJS.WritableStream,
): Logger {
  const opts = { level, base: { component }, timestamp: pino.stdTimeFunctions.isoTime };
  return destination ? pino(opts, destination) : pino(opts);
}

/** A logger that drops everything, for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
