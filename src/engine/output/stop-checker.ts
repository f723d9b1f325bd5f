/**
 * Stop strings on the streamed output text, as vLLM's detokenizer applies them: the output ends where
 * the first stop string completes, and the stop string is cut off unless `include_stop_str_in_output`.
 * A stop string may span any number of tokens, so text that could still be the start of one is held
 * back until it is decided. (vLLM holds back a fixed `max(len(stop)) − 1` characters; holding back
 * only an actual partial match gives the same text, sooner.)
 *
 * Invariant: released text is never part of a later match. The held-back tail is the longest suffix
 * that is a proper prefix of a stop string, so any match that started earlier would have been held.
 */

export interface StopCheckerOptions {
  /** vLLM's `include_stop_str_in_output`: keep the stop string at the end of the text. */
  readonly includeStopStr?: boolean | undefined;
}

/** What one `push` released. The checker reuses this object: read it before the next push. */
export interface StopResult {
  /** Text that is final and can be sent. */
  text: string;
  /** The stop string that ended the output in this push, else null. */
  matched: string | null;
}

export class StopChecker {
  /** Set once a stop string has been seen; no more text is released after that. */
  stopped = false;
  /** The stop string that ended the output. */
  stopReason: string | null = null;

  private readonly stops: readonly string[];
  private readonly includeStop: boolean;
  /** Longest stop string length − 1: the most text a partial match can hold. */
  private readonly keep: number;
  /** The last `keep` characters seen (released or not): matches are searched across this and new text. */
  private window = '';
  /** How many characters at the end of `window` are not yet released. */
  private held = 0;
  private readonly result: StopResult = { text: '', matched: null };

  constructor(stop: string | readonly string[] | null | undefined, options?: StopCheckerOptions) {
    const list = stop == null ? [] : typeof stop === 'string' ? [stop] : stop;
    // An empty stop string would end every output at once; vLLM's OpenAI layer never sends one.
    this.stops = list.filter((s) => s.length > 0);
    this.includeStop = options?.includeStopStr ?? false;
    let longest = 0;
    for (const s of this.stops) if (s.length > longest) longest = s.length;
    this.keep = Math.max(0, longest - 1);
  }

  /** True when there are stop strings to look for. */
  get active(): boolean {
    return this.stops.length > 0;
  }

  /**
   * Add newly decoded text. `final` (the sequence ended) also releases held-back text. `check` false
   * (while fewer than `min_tokens` tokens exist) still tracks partial matches but lets complete ones
   * pass, as vLLM skips the stop-string check before min_tokens.
   */
  push(text: string, final = false, check = true): StopResult {
    const r = this.result;
    const wasStopped = this.stopped;
    r.text = this.append(text, check);
    r.matched = !wasStopped && this.stopped ? this.stopReason : null;
    if (final && !this.stopped) r.text += this.flush();
    return r;
  }

  /** Like `push` without `final`, returning only the released text; the outcome is on `stopped`. */
  append(text: string, check = true): string {
    if (this.stopped) return '';
    if (this.stops.length === 0) return text;
    if (text.length === 0) return '';
    const s = this.window + text;
    const base = this.window.length;
    const unreleased = base - this.held;
    if (check) {
      let at = -1;
      let atEnd = -1;
      let found: string | null = null;
      for (let i = 0; i < this.stops.length; i++) {
        const stop = this.stops[i] as string;
        // Only matches that end in the new text; earlier ones were ruled out by the previous push.
        const idx = s.indexOf(stop, Math.max(0, base - stop.length + 1));
        if (idx < 0) continue;
        // The first stop string to complete wins (on a tie, the longer one), so the outcome does not
        // depend on how the text was split into pieces.
        const end = idx + stop.length;
        if (found === null || end < atEnd || (end === atEnd && idx < at)) {
          at = idx;
          atEnd = end;
          found = stop;
        }
      }
      if (found !== null) {
        this.stopped = true;
        this.stopReason = found;
        this.window = '';
        this.held = 0;
        const end = this.includeStop ? atEnd : at;
        return end > unreleased ? s.slice(unreleased, end) : '';
      }
    }
    const hold = this.includeStop ? 0 : this.partialMatchLength(s);
    const releaseEnd = Math.max(unreleased, s.length - hold);
    this.window = s.length > this.keep ? s.slice(s.length - this.keep) : s;
    this.held = s.length - releaseEnd;
    return releaseEnd > unreleased ? s.slice(unreleased, releaseEnd) : '';
  }

  /** The held-back text, for when the output ends without a stop string. */
  flush(): string {
    if (this.stopped || this.held === 0) return '';
    const out = this.window.slice(this.window.length - this.held);
    this.held = 0;
    return out;
  }

  /** Length of the longest suffix of `s` that is a proper prefix of some stop string. */
  private partialMatchLength(s: string): number {
    const n = s.length;
    for (let k = Math.min(this.keep, n); k > 0; k--) {
      const from = n - k;
      for (let i = 0; i < this.stops.length; i++) {
        const stop = this.stops[i] as string;
        if (stop.length > k && startsWithAt(s, from, stop, k)) return k;
      }
    }
    return 0;
  }
}

/** `s.slice(from, from + k) === stop.slice(0, k)` without allocating. */
function startsWithAt(s: string, from: number, stop: string, k: number): boolean {
  for (let j = 0; j < k; j++) if (s.charCodeAt(from + j) !== stop.charCodeAt(j)) return false;
  return true;
}
