import { describe, expect, it } from 'vitest';

import { Rng } from '../../../src/core/rng.js';
import { StopChecker } from '../../../src/engine/output/stop-checker.js';

/** Feed the pieces one by one; returns the released text and each step's release. */
function feed(checker: StopChecker, pieces: readonly string[]): { text: string; steps: string[] } {
  const steps: string[] = [];
  for (const p of pieces) {
    steps.push(checker.append(p));
    if (checker.stopped) break;
  }
  const text = steps.join('') + checker.flush();
  return { text, steps };
}

describe('StopChecker', () => {
  it('passes text straight through without stop strings', () => {
    const c = new StopChecker(undefined);
    expect(c.active).toBe(false);
    expect(c.append('hello')).toBe('hello');
    expect(c.flush()).toBe('');
  });

  it('ends the output before a stop string inside one piece', () => {
    const c = new StopChecker('STOP');
    const { text } = feed(c, ['abc STOP def']);
    expect(text).toBe('abc ');
    expect(c.stopped).toBe(true);
    expect(c.stopReason).toBe('STOP');
  });

  it('finds a stop string spanning several pieces', () => {
    const c = new StopChecker(['</answer>']);
    const { text, steps } = feed(c, ['The answer', ' is 4</', 'ans', 'wer> and more']);
    expect(text).toBe('The answer is 4');
    expect(c.stopReason).toBe('</answer>');
    // "</" and "ans" are held back until they are known to belong to the stop string.
    expect(steps).toEqual(['The answer', ' is 4', '', '']);
  });

  it('holds back a partial match and releases it once it cannot match', () => {
    const c = new StopChecker('STOP');
    expect(c.append('go ST')).toBe('go ');
    expect(c.append('O')).toBe('');
    expect(c.append('NE')).toBe('STONE');
    expect(c.stopped).toBe(false);
  });

  it('releases held-back text when the output ends', () => {
    const c = new StopChecker('STOP');
    expect(c.append('the end ST')).toBe('the end ');
    expect(c.flush()).toBe('ST');
    expect(c.flush()).toBe('');
  });

  it('keeps the stop string with include_stop_str_in_output and holds nothing back', () => {
    const c = new StopChecker(['###'], { includeStopStr: true });
    expect(c.append('a #')).toBe('a #');
    expect(c.append('#')).toBe('#');
    expect(c.append('# tail')).toBe('#');
    expect(c.stopped).toBe(true);
  });

  it('stops at the stop string that completes first', () => {
    const c = new StopChecker(['world', 'lo']);
    expect(feed(c, ['hello world']).text).toBe('hel');
    expect(c.stopReason).toBe('lo');
    const d = new StopChecker(['abcd', 'bc']);
    expect(feed(d, ['xabcd']).text).toBe('xa');
    expect(d.stopReason).toBe('bc');
  });

  it('handles a stop string whose prefix repeats', () => {
    const c = new StopChecker('aab');
    const { text } = feed(c, ['xa', 'a', 'a', 'b!']);
    expect(text).toBe('xa');
    expect(c.stopped).toBe(true);
  });

  it('lets a complete match through while checking is off, as before min_tokens', () => {
    const c = new StopChecker('.');
    expect(c.append('a.b', false)).toBe('a.b');
    expect(c.append('c.d')).toBe('c');
    expect(c.stopped).toBe(true);
  });

  it('finds a match that started before checking was switched on', () => {
    const c = new StopChecker('xy');
    expect(c.append('ax', false)).toBe('a');
    expect(c.append('yz')).toBe('');
    expect(c.stopped).toBe(true);
  });

  it('reports the match once through push and releases held text when final', () => {
    const c = new StopChecker('END');
    const r1 = c.push('abc E');
    expect(r1).toEqual({ text: 'abc ', matched: null });
    expect(c.push('N', true)).toEqual({ text: 'EN', matched: null });
    const d = new StopChecker(['END']);
    expect(d.push('x EN').text).toBe('x ');
    expect(d.push('D y')).toEqual({ text: '', matched: 'END' });
    expect(d.push('more')).toEqual({ text: '', matched: null });
  });

  it('ignores empty stop strings', () => {
    const c = new StopChecker(['', 'Z']);
    expect(c.append('abc')).toBe('abc');
    expect(c.append('Z')).toBe('');
    expect(c.stopped).toBe(true);
  });

  it('releases nothing after stopping', () => {
    const c = new StopChecker('!');
    c.append('hi!');
    expect(c.append('more')).toBe('');
    expect(c.flush()).toBe('');
  });

  it('agrees with a plain search on random text split at random points', () => {
    const rng = new Rng(1234);
    const alphabet = 'ab. \u00e9';
    const pick = (len: number): string => {
      let s = '';
      for (let i = 0; i < len; i++) s += alphabet[rng.int(0, alphabet.length - 1)];
      return s;
    };
    for (let round = 0; round < 2000; round++) {
      const text = pick(rng.int(0, 40));
      const stops = Array.from({ length: rng.int(1, 3) }, () => pick(rng.int(1, 4)));
      const include = rng.next() < 0.3;
      const pieces: string[] = [];
      for (let i = 0; i < text.length;) {
        const n = rng.int(0, 5);
        pieces.push(text.slice(i, i + n));
        i += n;
      }
      // The stop string that completes first (on a tie, the one that started first).
      let at = -1;
      let which = '';
      for (const s of stops) {
        const idx = text.indexOf(s);
        if (idx < 0) continue;
        const end = idx + s.length;
        if (at < 0 || end < at + which.length || (end === at + which.length && idx < at)) {
          at = idx;
          which = s;
        }
      }
      const c = new StopChecker(stops, { includeStopStr: include });
      let out = '';
      for (const p of pieces) {
        const released = c.append(p);
        out += released;
        // Released text is final: it is always a prefix of the expected output.
        if (at >= 0) expect(at + (include ? which.length : 0)).toBeGreaterThanOrEqual(out.length);
        if (c.stopped) break;
      }
      out += c.flush();
      const expected = at < 0 ? text : text.slice(0, include ? at + which.length : at);
      expect(out).toBe(expected);
      expect(c.stopped).toBe(at >= 0);
    }
  });
});
