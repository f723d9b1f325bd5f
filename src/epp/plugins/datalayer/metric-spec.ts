/**
 * Metric specs as `core-metrics-extractor` configs write them: PromQL instant selectors,
 * `name{label="value",other=value}` (quotes optional, as upstream accepts), with `=`, `!=`, `=~` and
 * `!~` matchers. Parsed once at configuration time; matching a sample is a few string compares.
 */
import type { MetricsPage, Sample } from '../../datastore/prometheus-text.js';

export type MatchOp = '=' | '!=' | '=~' | '!~';

export interface LabelMatcher {
  readonly label: string;
  readonly op: MatchOp;
  readonly value: string;
  /** For `=~` / `!~`: anchored, as PromQL anchors. */
  readonly re: RegExp | null;
}

export interface MetricSpec {
  readonly name: string;
  readonly matchers: readonly LabelMatcher[];
  /** The spec as written, for messages. */
  readonly text: string;
  /** Precomputed, so a missing metric costs no string building per poll. */
  readonly missing: string;
  readonly notFinite: string;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Null for an empty spec (the metric is disabled); throws `Error` with the reason when malformed. */
export function parseMetricSpec(text: string): MetricSpec | null {
  const s = text.trim();
  if (s === '') return null;
  const brace = s.indexOf('{');
  const name = (brace < 0 ? s : s.slice(0, brace)).trim();
  if (!NAME.test(name))
    throw new Error(`${JSON.stringify(text)}: ${JSON.stringify(name)} is not a metric name`);
  const matchers: LabelMatcher[] = [];
  if (brace >= 0) {
    if (!s.endsWith('}')) throw new Error(`${JSON.stringify(text)}: the label block is not closed with }`);
    parseMatchers(s.slice(brace + 1, -1), text, matchers);
  }
  return {
    name,
    matchers,
    text: s,
    missing: `${s}: no matching sample`,
    notFinite: `${s}: value is not a finite number`,
  };
}

function parseMatchers(body: string, text: string, out: LabelMatcher[]): void {
  const fail = (why: string): Error => new Error(`${JSON.stringify(text)}: ${why}`);
  let i = 0;
  const n = body.length;
  const ws = (): void => {
    while (i < n && /\s/.test(body[i]!)) i++;
  };
  for (;;) {
    ws();
    if (i >= n) return;
    const ls = i;
    while (i < n && /[a-zA-Z0-9_]/.test(body[i]!)) i++;
    const label = body.slice(ls, i);
    if (!LABEL.test(label)) throw fail(`expected a label name at ${JSON.stringify(body.slice(ls))}`);
    ws();
    let op: MatchOp;
    if (body.startsWith('=~', i)) op = '=~';
    else if (body.startsWith('!~', i)) op = '!~';
    else if (body.startsWith('!=', i)) op = '!=';
    else if (body[i] === '=') op = '=';
    else throw fail(`expected =, !=, =~ or !~ after ${label}`);
    i += op.length;
    ws();
    let value: string;
    if (body[i] === '"' || body[i] === "'") {
      const q = body[i]!;
      i++;
      value = '';
      for (;;) {
        if (i >= n) throw fail(`unterminated string for ${label}`);
        const c = body[i]!;
        if (c === q) {
          i++;
          break;
        }
        if (c === '\\' && i + 1 < n) {
          const e = body[i + 1]!;
          value += e === 'n' ? '\n' : e === 't' ? '\t' : e;
          i += 2;
        } else {
          value += c;
          i++;
        }
      }
    } else {
      const vs = i;
      while (i < n && body[i] !== ',' && !/\s/.test(body[i]!)) i++;
      value = body.slice(vs, i);
      if (value === '' || /["'{}=]/.test(value)) {
        throw fail(`bad value for ${label}`);
      }
    }
    let re: RegExp | null = null;
    if (op === '=~' || op === '!~') {
      try {
        re = new RegExp(`^(?:${value})$`);
      } catch {
        throw fail(`${JSON.stringify(value)} is not a valid regular expression`);
      }
    }
    out.push({ label, op, value, re });
    ws();
    if (i >= n) return;
    if (body[i] !== ',') throw fail(`expected , after the matcher for ${label}`);
    i++;
  }
}

/** PromQL semantics: a label the sample does not have matches as the empty string. */
export function matches(spec: MetricSpec, sample: Sample): boolean {
  const m = spec.matchers;
  for (let i = 0; i < m.length; i++) {
    const x = m[i]!;
    const v = sample.labels[x.label] ?? '';
    switch (x.op) {
      case '=':
        if (v !== x.value) return false;
        break;
      case '!=':
        if (v === x.value) return false;
        break;
      case '=~':
        if (!x.re!.test(v)) return false;
        break;
      case '!~':
        if (x.re!.test(v)) return false;
        break;
    }
  }
  return true;
}

/** The matching sample with the latest timestamp; among equal timestamps (or none), the last one. */
export function latestSample(page: MetricsPage, spec: MetricSpec): Sample | null {
  const fam = page.families.get(spec.name);
  if (fam === undefined) return null;
  let best: Sample | null = null;
  let bestTs = -Infinity;
  for (const s of fam) {
    if (!matches(spec, s)) continue;
    const ts = s.timestampMs ?? -Infinity;
    if (ts >= bestTs) {
      best = s;
      bestTs = ts;
    }
  }
  return best;
}

/** The matching sample with the largest value (LoRA info: the value is the series' timestamp). */
export function largestSample(page: MetricsPage, spec: MetricSpec): Sample | null {
  const fam = page.families.get(spec.name);
  if (fam === undefined) return null;
  let best: Sample | null = null;
  for (const s of fam) {
    if (!matches(spec, s) || Number.isNaN(s.value)) continue;
    if (best === null || s.value >= best.value) best = s;
  }
  return best;
}
