import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import { parseDuration, parseDurationMs } from '../../src/core/duration.js';

describe('parseDurationMs', () => {
  it.each([
    ['50ms', 50],
    ['1s', 1000],
    ['1.5s', 1500],
    ['1m30s', 90_000],
    ['2h', 7_200_000],
    ['1s500ms', 1500],
    ['500us', 0.5],
    ['250000ns', 0.25],
    [' 200ms ', 200],
    ['0', 0],
    [75, 75],
  ])('reads %j as %d ms', (text, ms) => {
    expect(parseDurationMs(text)).toBeCloseTo(ms, 9);
  });

  it.each(['', 'abc', '10', '1 s', '-1s', '1x', 's', '1s2', NaN, -5, Infinity])('rejects %j', (text) => {
    expect(parseDurationMs(text)).toBeNull();
  });
});

describe('parseDuration', () => {
  it('names the field of a malformed duration', () => {
    expect(parseDuration('2s', 'interval')).toBe(2000);
    expect(() => parseDuration('soon', 'interval')).toThrow(ConfigError);
    expect(() => parseDuration('soon', 'interval')).toThrow(/interval: "soon" is not a duration/);
  });
});
