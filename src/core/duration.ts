/**
 * Go-style durations as llm-d's configs and flags write them (`50ms`, `2s`, `1m30s`, `1.5h`), or a
 * plain number of milliseconds.
 */
import { ConfigError } from './errors.js';

const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;

/** Milliseconds, or null when `text` is not a duration. `0` is accepted, negative values are not. */
export function parseDurationMs(text: string | number): number | null {
  if (typeof text === 'number') return Number.isFinite(text) && text >= 0 ? text : null;
  const s = text.trim();
  if (s === '0') return 0;
  if (s === '') return null;
  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < s.length) {
    const m = PART.exec(s);
    if (m === null) return null;
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
  }
  return Number.isFinite(total) ? total : null;
}

/** Milliseconds; a malformed value is a ConfigError naming `field`. */
export function parseDuration(value: string | number, field: string): number {
  const ms = parseDurationMs(value);
  if (ms === null) {
    throw new ConfigError(
      `${field}: ${JSON.stringify(value)} is not a duration (e.g. 50ms, 2s, 1m30s)`,
      field,
    );
  }
  return ms;
}
