/**
 * A Prometheus text-format (0.0.4) parser for scraping, which only looks at the metrics it is asked
 * for. A vLLM page is mostly histogram buckets nobody here reads, and every endpoint is scraped every
 * 50 ms, so the parser works on the bytes: it matches the start of each line against the wanted
 * names (probing only the lengths they have, see `MetricNames.matchAt`) and jumps over unwanted lines
 * with `indexOf('\n')` without decoding them. Only wanted lines are decoded (labels with escapes, values including `NaN`,
 * `+Inf`, `-Inf`, optional timestamps).
 *
 * It never throws. A line that does not parse is counted in `badLines` and skipped. Limits: input past
 * `maxBytes` is not read (a line cut there is dropped) and `limit` is `'bytes'`; collection stops after
 * `maxSamples` wanted samples with `limit` `'samples'`; a wanted line longer than `maxLineBytes` or
 * with more than `maxLabels` labels is a bad line.
 */

export interface Sample {
  /** Null-prototype record: a label called `__proto__` is just a label. */
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
  /** As written on the line (milliseconds since the epoch); undefined when absent. */
  readonly timestampMs: number | undefined;
}

export type LimitHit = 'bytes' | 'samples' | null;

export interface MetricsPage {
  /** Wanted metric name → its samples in page order; names absent from the page are absent here. */
  readonly families: ReadonlyMap<string, readonly Sample[]>;
  readonly sampleCount: number;
  /** Sample lines seen, wanted or not (blank lines and comments excluded). */
  readonly lines: number;
  /** Lines that could not be parsed: wanted lines that are malformed, and lines with no metric name. */
  readonly badLines: number;
  readonly limit: LimitHit;
}

export interface ParseLimits {
  readonly maxBytes: number;
  readonly maxSamples: number;
  readonly maxLineBytes: number;
  readonly maxLabels: number;
}

export const DEFAULT_PARSE_LIMITS: ParseLimits = Object.freeze({
  maxBytes: 16 * 1024 * 1024,
  maxSamples: 10_000,
  maxLineBytes: 64 * 1024,
  maxLabels: 64,
});

const NL = 10;
const CR = 13;
const SP = 32;
const TAB = 9;
const HASH = 35;
const QUOTE = 34;
const COMMA = 44;
const EQ = 61;
const BSL = 92;
const LBRACE = 123;
const RBRACE = 125;
const LOWER_N = 110;

/** 1 = may start a metric name / may continue one / may start a label name / may continue one. */
const NAME_START = new Uint8Array(256);
const NAME_CHAR = new Uint8Array(256);
const LABEL_START = new Uint8Array(256);
const LABEL_CHAR = new Uint8Array(256);
/** 1 = may follow a metric name: `{`, space, tab. */
const NAME_END = new Uint8Array(256);
NAME_END[LBRACE] = NAME_END[SP] = NAME_END[TAB] = 1;
for (let c = 0; c < 256; c++) {
  const alpha = (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
  const digit = c >= 48 && c <= 57;
  LABEL_START[c] = alpha ? 1 : 0;
  LABEL_CHAR[c] = alpha || digit ? 1 : 0;
  NAME_START[c] = alpha || c === 58 ? 1 : 0;
  NAME_CHAR[c] = alpha || digit || c === 58 ? 1 : 0;
}

const EMPTY_LABELS: Readonly<Record<string, string>> = Object.freeze(
  Object.create(null) as Record<string, string>,
);

interface Candidate {
  readonly name: string;
  readonly bytes: Uint8Array;
}

/** The wanted names, compiled once for byte matching. Build one per configuration, not per scrape. */
export class MetricNames {
  readonly names: ReadonlySet<string>;
  private readonly byLength: (Candidate[] | undefined)[] = [];
  /** The distinct byte lengths of the names, ascending. */
  private readonly lengths: Int32Array;

  constructor(names: Iterable<string>) {
    this.names = new Set(names);
    for (const name of this.names) {
      const bytes = Buffer.from(name, 'utf8');
      const list = (this.byLength[bytes.length] ??= []);
      list.push({ name, bytes });
    }
    const lengths: number[] = [];
    this.byLength.forEach((l, n) => {
      if (l !== undefined) lengths.push(n);
    });
    this.lengths = Int32Array.from(lengths);
  }

  /**
   * The wanted name that starts the line at `start`, or null. Rather than scanning the line's name
   * byte by byte, it probes, for each wanted length, whether the byte there ends a name (`{`, blank or
   * end of line) and only then compares bytes: a dozen reads per line instead of one per name byte.
   */
  matchAt(buf: Uint8Array, start: number, lineEnd: number): Candidate | null {
    const lengths = this.lengths;
    for (let i = 0; i < lengths.length; i++) {
      const end = start + lengths[i]!;
      if (end > lineEnd) return null;
      if (end < lineEnd && NAME_END[buf[end]!] === 0) continue;
      const c = this.match(buf, start, end);
      if (c !== null) return c;
    }
    return null;
  }

  /** The wanted name spelled by exactly `buf[start, end)`, or null. */
  match(buf: Uint8Array, start: number, end: number): Candidate | null {
    const n = end - start;
    const list = n < this.byLength.length ? this.byLength[n] : undefined;
    if (list === undefined) return null;
    // From the end: wanted names share prefixes (`vllm:`), so the tail decides sooner.
    outer: for (const c of list) {
      const b = c.bytes;
      for (let i = n - 1; i >= 0; i--) if (buf[start + i] !== b[i]) continue outer;
      return c;
    }
    return null;
  }
}

/**
 * Parses `input`, keeping only samples whose name is in `wanted` (every sample when `wanted` is null).
 * Pass a `MetricNames` on hot paths; a plain Set is compiled on each call.
 */
export function parsePrometheusText(
  input: Uint8Array | string,
  wanted: MetricNames | ReadonlySet<string> | null,
  limits: Partial<ParseLimits> = {},
): MetricsPage {
  const lim = { ...DEFAULT_PARSE_LIMITS, ...limits };
  const matcher = wanted === null || wanted instanceof MetricNames ? wanted : new MetricNames(wanted);
  const buf = toBuffer(input, lim.maxBytes);
  const families = new Map<string, Sample[]>();
  const cut = buf.length > lim.maxBytes;
  const end = cut ? lim.maxBytes : buf.length;
  let limit: LimitHit = cut ? 'bytes' : null;
  let lines = 0;
  let badLines = 0;
  let sampleCount = 0;
  let pos = 0;

  while (pos < end) {
    const nl = buf.indexOf(NL, pos);
    let lineEnd: number;
    let next: number;
    if (nl === -1 || nl >= end) {
      if (cut) {
        // The limit fell inside this line: what is left of it is not the line that was sent.
        if (!blank(buf, pos, end)) badLines++;
        break;
      }
      lineEnd = end;
      next = end;
    } else {
      lineEnd = nl;
      next = nl + 1;
    }
    if (lineEnd > pos && buf[lineEnd - 1] === CR) lineEnd--;
    let p = pos;
    pos = next;
    while (p < lineEnd && (buf[p] === SP || buf[p] === TAB)) p++;
    if (p === lineEnd) continue;
    const c = buf[p]!;
    if (c === HASH) continue;
    lines++;
    if (NAME_START[c] === 0) {
      badLines++;
      continue;
    }
    let name: string;
    let q: number;
    if (matcher === null) {
      q = p + 1;
      while (q < lineEnd && NAME_CHAR[buf[q]!] === 1) q++;
      name = buf.toString('latin1', p, q);
    } else {
      const c = matcher.matchAt(buf, p, lineEnd);
      if (c === null) continue;
      name = c.name;
      q = p + c.bytes.length;
    }
    if (lineEnd - p > lim.maxLineBytes) {
      badLines++;
      continue;
    }
    const sample = parseSample(buf, q, lineEnd, lim.maxLabels);
    if (sample === null) {
      badLines++;
      continue;
    }
    if (sampleCount >= lim.maxSamples) {
      limit = 'samples';
      break;
    }
    sampleCount++;
    const fam = families.get(name);
    if (fam === undefined) families.set(name, [sample]);
    else fam.push(sample);
  }
  return { families, sampleCount, lines, badLines, limit };
}

function toBuffer(input: Uint8Array | string, maxBytes: number): Buffer {
  if (typeof input === 'string') {
    // Every UTF-16 unit is at least one UTF-8 byte, so the first `maxBytes + 1` units hold the first
    // `maxBytes` bytes and at least one more (which marks the cut), without encoding a huge string.
    return Buffer.from(input.length > maxBytes ? input.slice(0, maxBytes + 1) : input, 'utf8');
  }
  return Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
}

function blank(buf: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = buf[i];
    if (c !== SP && c !== TAB && c !== CR) return false;
  }
  return true;
}

function isWs(c: number | undefined): boolean {
  return c === SP || c === TAB;
}

/**
 * Label names and most label values repeat on every scrape (`model_name`, `engine="0"`,
 * `block_size="16"`), and decoding a short string costs more than finding it again: short ASCII
 * strings are kept here by a hash of their bytes and reused after a byte compare. Bounded: when full it
 * starts over, so a page of endless distinct values costs time, not memory.
 */
const INTERN = new Map<number, string>();
const INTERN_MAX_ENTRIES = 4096;
const INTERN_MAX_LEN = 64;

function intern(buf: Buffer, s: number, e: number, hash: number): string {
  const len = e - s;
  if (len > INTERN_MAX_LEN) return buf.toString('latin1', s, e);
  const key = (hash ^ Math.imul(len, 0x9e3779b1)) | 0;
  const hit = INTERN.get(key);
  if (hit !== undefined && hit.length === len) {
    let i = 0;
    while (i < len && hit.charCodeAt(i) === buf[s + i]) i++;
    if (i === len) return hit;
  }
  const str = buf.toString('latin1', s, e);
  if (INTERN.size >= INTERN_MAX_ENTRIES) INTERN.clear();
  INTERN.set(key, str);
  return str;
}

/** The part of a sample line after its name: `{labels}` (optional), value, timestamp (optional). */
function parseSample(buf: Buffer, p: number, e: number, maxLabels: number): Sample | null {
  let labels = EMPTY_LABELS;
  while (p < e && isWs(buf[p])) p++;
  if (p < e && buf[p] === LBRACE) {
    const rec = Object.create(null) as Record<string, string>;
    let count = 0;
    p++;
    for (;;) {
      while (p < e && isWs(buf[p])) p++;
      if (p >= e) return null;
      let c = buf[p]!;
      if (c === RBRACE) {
        p++;
        break;
      }
      if (LABEL_START[c] === 0) return null;
      const ns = p;
      let h = c;
      p++;
      while (p < e) {
        c = buf[p]!;
        if (LABEL_CHAR[c] === 0) break;
        h = (Math.imul(h, 31) + c) | 0;
        p++;
      }
      const lname = intern(buf, ns, p, h);
      while (p < e && isWs(buf[p])) p++;
      if (p >= e || buf[p] !== EQ) return null;
      p++;
      while (p < e && isWs(buf[p])) p++;
      if (p >= e || buf[p] !== QUOTE) return null;
      const vs = ++p;
      let escaped = false;
      let ascii = true;
      h = 0;
      while (p < e) {
        c = buf[p]!;
        if (c === QUOTE) break;
        if (c === BSL) {
          escaped = true;
          p += 2;
        } else {
          if (c >= 0x80) ascii = false;
          h = (Math.imul(h, 31) + c) | 0;
          p++;
        }
      }
      if (p >= e) return null;
      const value = escaped
        ? unescape(buf, vs, p)
        : ascii
          ? intern(buf, vs, p, h)
          : buf.toString('utf8', vs, p);
      if (value === null) return null;
      p++;
      if (++count > maxLabels || lname in rec) return null;
      rec[lname] = value;
      while (p < e && isWs(buf[p])) p++;
      if (p >= e) return null;
      c = buf[p]!;
      if (c === COMMA) {
        p++;
        continue;
      }
      if (c === RBRACE) {
        p++;
        break;
      }
      return null;
    }
    labels = rec;
  }
  while (p < e && isWs(buf[p])) p++;
  const vs = p;
  while (p < e && !isWs(buf[p])) p++;
  if (p === vs) return null;
  const value = parseNumber(buf, vs, p);
  if (value === null) return null;
  while (p < e && isWs(buf[p])) p++;
  let timestampMs: number | undefined;
  if (p < e) {
    const ts = p;
    while (p < e && !isWs(buf[p])) p++;
    const t = parseNumber(buf, ts, p);
    if (t === null || !Number.isFinite(t)) return null;
    timestampMs = t;
    while (p < e && isWs(buf[p])) p++;
    if (p < e) return null;
  }
  return { labels, value, timestampMs };
}

/** Exact powers of ten: `mantissa / 10^k` is then correctly rounded (the strtod fast path). */
const POW10 = Float64Array.from({ length: 23 }, (_, k) => 10 ** k);

/**
 * A number token. Plain decimals of up to 15 digits (nearly every gauge and counter) are computed
 * from the bytes, exactly; anything else goes through `Number` on the decoded token.
 */
function parseNumber(buf: Buffer, s: number, e: number): number | null {
  let i = s;
  let neg = false;
  const c0 = buf[i];
  if (c0 === 45) {
    neg = true;
    i++;
  } else if (c0 === 43) i++;
  let mant = 0;
  let digits = 0;
  let frac = 0;
  while (i < e) {
    const d = buf[i]! - 48;
    if (d < 0 || d > 9) break;
    mant = mant * 10 + d;
    digits++;
    i++;
  }
  if (i < e && buf[i] === 46) {
    i++;
    while (i < e) {
      const d = buf[i]! - 48;
      if (d < 0 || d > 9) break;
      mant = mant * 10 + d;
      digits++;
      frac++;
      i++;
    }
  }
  if (i === e && digits > 0 && digits <= 15) {
    const v = frac === 0 ? mant : mant / POW10[frac]!;
    return neg ? -v : v;
  }
  return parseFloatToken(buf.toString('latin1', s, e));
}

/** `\\`, `\"` and `\n` are the only escapes the format has; anything else makes the line bad. */
function unescape(buf: Buffer, s: number, e: number): string | null {
  let out = '';
  let seg = s;
  let i = s;
  while (i < e) {
    if (buf[i] !== BSL) {
      i++;
      continue;
    }
    out += buf.toString('utf8', seg, i);
    const n = buf[i + 1];
    if (n === BSL) out += '\\';
    else if (n === QUOTE) out += '"';
    else if (n === LOWER_N) out += '\n';
    else return null;
    i += 2;
    seg = i;
  }
  return out + buf.toString('utf8', seg, e);
}

/** Go's `ParseFloat` spellings: numbers, `NaN`, `Inf`, `+Inf`, `-Inf` (any case). */
function parseFloatToken(s: string): number | null {
  const n = Number(s);
  if (!Number.isNaN(n)) return n;
  switch (s.toLowerCase()) {
    case 'nan':
      return NaN;
    case 'inf':
    case '+inf':
    case 'infinity':
    case '+infinity':
      return Infinity;
    case '-inf':
    case '-infinity':
      return -Infinity;
    default:
      return null;
  }
}
