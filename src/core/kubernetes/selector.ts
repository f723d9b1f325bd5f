/**
 * Kubernetes label selectors in their string form (`app=vllm,tier!=cache,zone in (a,b),!canary`), as
 * `--endpoint-selector` takes them and the API server's `labelSelector` parameter accepts them. Parsed
 * here so that a typo fails at start-up, and so that pods can be matched locally as well.
 */
import { ConfigError } from '../errors.js';

type Requirement =
  | { readonly op: 'exists' | 'notexists'; readonly key: string }
  | { readonly op: 'in' | 'notin'; readonly key: string; readonly values: ReadonlySet<string> };

export interface LabelSelector {
  /** The canonical string, for the API server. */
  readonly text: string;
  matches(labels: Readonly<Record<string, string>>): boolean;
}

const KEY =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

/** Parses a selector string; throws a `ConfigError` naming `flag`. An empty string matches everything. */
export function parseLabelSelector(text: string, flag = '--endpoint-selector'): LabelSelector {
  const reqs: Requirement[] = [];
  const bad = (part: string, why: string): ConfigError =>
    new ConfigError(`${flag} ${JSON.stringify(text)}: ${JSON.stringify(part)} ${why}`, flag);
  for (const part of splitTopLevel(text)) {
    const p = part.trim();
    if (p === '') {
      if (text.trim() === '') continue;
      throw bad(part, 'is an empty requirement');
    }
    let m: RegExpExecArray | null;
    if ((m = /^!\s*(\S+)$/.exec(p)) !== null) {
      reqs.push({ op: 'notexists', key: checkKey(m[1]!, p, bad) });
    } else if ((m = /^(\S+?)\s*(==|!=|=)\s*(\S*)$/.exec(p)) !== null) {
      const key = checkKey(m[1]!, p, bad);
      const value = checkValue(m[3]!, p, bad);
      reqs.push({ op: m[2] === '!=' ? 'notin' : 'in', key, values: new Set([value]) });
    } else if ((m = /^(\S+)\s+(in|notin)\s*\(([^()]*)\)$/.exec(p)) !== null) {
      const key = checkKey(m[1]!, p, bad);
      const values = m[3]!.split(',').map((v) => checkValue(v.trim(), p, bad));
      reqs.push({ op: m[2] as 'in' | 'notin', key, values: new Set(values) });
    } else if (/^\S+$/.test(p)) {
      reqs.push({ op: 'exists', key: checkKey(p, p, bad) });
    } else {
      throw bad(p, 'is not key, !key, key=value, key!=value, key in (…) or key notin (…)');
    }
  }
  return {
    text: reqs.map(render).join(','),
    matches: (labels) => reqs.every((r) => matchOne(r, labels)),
  };
}

/** The selector of a `matchLabels` map: every key equal. */
export function selectorFromLabels(labels: Readonly<Record<string, string>>): LabelSelector {
  const keys = Object.keys(labels).sort();
  return {
    text: keys.map((k) => `${k}=${labels[k]}`).join(','),
    matches: (l) => keys.every((k) => Object.hasOwn(l, k) && l[k] === labels[k]),
  };
}

function matchOne(r: Requirement, labels: Readonly<Record<string, string>>): boolean {
  const has = Object.hasOwn(labels, r.key);
  switch (r.op) {
    case 'exists':
      return has;
    case 'notexists':
      return !has;
    case 'in':
      return has && r.values.has(labels[r.key]!);
    case 'notin':
      return !has || !r.values.has(labels[r.key]!);
  }
}

function render(r: Requirement): string {
  switch (r.op) {
    case 'exists':
      return r.key;
    case 'notexists':
      return `!${r.key}`;
    case 'in':
    case 'notin': {
      const vs = [...r.values].sort();
      if (vs.length === 1) return `${r.key}${r.op === 'in' ? '=' : '!='}${vs[0]}`;
      return `${r.key} ${r.op} (${vs.join(',')})`;
    }
  }
}

/** Splits on commas outside parentheses. */
function splitTopLevel(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '(') depth++;
    else if (c === ')') depth = Math.max(0, depth - 1);
    else if (c === ',' && depth === 0) {
      out.push(text.slice(start, i));
      start = i + 1;
    }
  }
  out.push(text.slice(start));
  return out;
}

function checkKey(key: string, part: string, bad: (p: string, why: string) => ConfigError): string {
  if (!KEY.test(key)) throw bad(part, `has label key ${JSON.stringify(key)} that is not valid`);
  return key;
}

function checkValue(value: string, part: string, bad: (p: string, why: string) => ConfigError): string {
  if (!VALUE.test(value)) throw bad(part, `has label value ${JSON.stringify(value)} that is not valid`);
  return value;
}
