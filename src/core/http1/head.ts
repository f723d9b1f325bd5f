/**
 * HTTP/1.1 message heads (RFC 9112): the request line or status line and the header fields, parsed
 * from the bytes before the blank line. Strict where leniency lets requests be smuggled past a proxy
 * (bare CR or LF, whitespace before the colon, conflicting Content-Length, Transfer-Encoding together
 * with Content-Length, obsolete line folding): such a head is rejected, never guessed at.
 */

export const CRLFCRLF = Buffer.from('\r\n\r\n');

/** Header names are lower-cased; repeated fields are joined with `, ` (responses keep `set-cookie` apart too). */
export type Headers = Record<string, string>;

export interface RequestHead {
  readonly method: string;
  readonly target: string;
  /** 10 or 11. */
  readonly version: number;
  readonly headers: Headers;
}

export interface ResponseHead {
  readonly status: number;
  readonly reason: string;
  readonly version: number;
  readonly headers: Headers;
  /** `set-cookie` lines, which cannot be joined. */
  readonly setCookie: readonly string[] | null;
}

export class HeadError extends Error {
  constructor(
    message: string,
    /** The status a server answers with. */
    readonly status = 400,
  ) {
    super(message);
  }
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const METHOD = /^[A-Z]+$/;

/**
 * Raw field name → validated lower-case name. Clients and servers send the same few names over and
 * over; a lookup is cheaper than a regex and a `toLowerCase` per field. Bounded, so hostile input
 * cannot grow it.
 */
const NAMES = new Map<string, string>();
const MAX_CACHED_NAMES = 1024;

function fieldName(raw: string): string {
  const hit = NAMES.get(raw);
  if (hit !== undefined) return hit;
  if (!TOKEN.test(raw)) throw new HeadError('invalid header field name');
  const name = raw.toLowerCase();
  if (NAMES.size < MAX_CACHED_NAMES) NAMES.set(raw, name);
  return name;
}

/** Parses the header lines of `lines[1..]` into `out`; returns the `set-cookie` values, if any. */
function parseFields(lines: string[], out: Headers, maxHeaders: number): string[] | null {
  if (lines.length - 1 > maxHeaders) throw new HeadError('too many header fields', 431);
  let setCookie: string[] | null = null;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const c = line.charCodeAt(0);
    if (c === 0x20 || c === 0x09) throw new HeadError('obsolete line folding');
    const colon = line.indexOf(':');
    if (colon <= 0) throw new HeadError('header field without a name');
    const name = fieldName(line.slice(0, colon));
    let start = colon + 1;
    let end = line.length;
    while (start < end && (line.charCodeAt(start) === 0x20 || line.charCodeAt(start) === 0x09)) start++;
    while (end > start && (line.charCodeAt(end - 1) === 0x20 || line.charCodeAt(end - 1) === 0x09)) end--;
    const value = line.slice(start, end);
    // CR and LF cannot be left (splitLines checked); NUL can.
    if (value.indexOf('\0') >= 0) throw new HeadError(`invalid characters in header ${name}`);
    if (name === 'set-cookie') (setCookie ??= []).push(value);
    const prev = out[name];
    if (prev === undefined) out[name] = value;
    else if (name === 'content-length') {
      if (prev !== value) throw new HeadError('conflicting content-length');
    } else out[name] = prev + ', ' + value;
  }
  return setCookie;
}

function splitLines(head: string): string[] {
  const lines = head.split('\r\n');
  // Every CR and every LF must belong to a CRLF: a bare one would let two parsers disagree about where
  // a header ends. Counting them is one native scan each.
  const pairs = lines.length - 1;
  if (count(head, '\n') !== pairs || count(head, '\r') !== pairs)
    throw new HeadError('bare CR or LF in the head');
  return lines;
}

function count(s: string, ch: string): number {
  let n = 0;
  for (let i = s.indexOf(ch); i >= 0; i = s.indexOf(ch, i + 1)) n++;
  return n;
}

function parseVersion(v: string): number {
  if (v === 'HTTP/1.1') return 11;
  if (v === 'HTTP/1.0') return 10;
  throw new HeadError(`unsupported protocol version`, v.startsWith('HTTP/') ? 505 : 400);
}

/** `head` is the text before the blank line, without it. */
export function parseRequestHead(head: string, maxHeaders = 100): RequestHead {
  const lines = splitLines(head);
  const line = lines[0]!;
  const sp1 = line.indexOf(' ');
  const sp2 = line.indexOf(' ', sp1 + 1);
  if (sp1 <= 0 || sp2 <= sp1 + 1 || line.indexOf(' ', sp2 + 1) >= 0)
    throw new HeadError('malformed request line');
  const method = line.slice(0, sp1);
  if (!METHOD.test(method)) throw new HeadError('malformed method');
  const target = line.slice(sp1 + 1, sp2);
  const version = parseVersion(line.slice(sp2 + 1));
  const headers: Headers = Object.create(null) as Headers;
  parseFields(lines, headers, maxHeaders);
  return { method, target, version, headers };
}

export function parseResponseHead(head: string, maxHeaders = 200): ResponseHead {
  const lines = splitLines(head);
  const line = lines[0]!;
  const sp1 = line.indexOf(' ');
  if (sp1 <= 0) throw new HeadError('malformed status line', 502);
  let version: number;
  try {
    version = parseVersion(line.slice(0, sp1));
  } catch {
    throw new HeadError('malformed status line', 502);
  }
  const code = line.slice(sp1 + 1, sp1 + 4);
  const status = /^[1-9]\d\d$/.test(code) ? Number(code) : NaN;
  if (Number.isNaN(status) || (line.length > sp1 + 4 && line.charCodeAt(sp1 + 4) !== 0x20)) {
    throw new HeadError('malformed status line', 502);
  }
  const headers: Headers = Object.create(null) as Headers;
  let setCookie: string[] | null;
  try {
    setCookie = parseFields(lines, headers, maxHeaders);
  } catch (err) {
    throw new HeadError((err as Error).message, 502);
  }
  return { status, reason: line.slice(sp1 + 5), version, headers, setCookie };
}

/** How the body that follows a head is delimited. */
export type Framing =
  | { readonly kind: 'none' }
  | { readonly kind: 'length'; readonly length: number }
  | { readonly kind: 'chunked' }
  /** Until the connection closes (responses only). */
  | { readonly kind: 'close' };

const NONE: Framing = { kind: 'none' };
const CHUNKED: Framing = { kind: 'chunked' };
const CLOSE: Framing = { kind: 'close' };

function contentLength(v: string): number {
  if (!/^\d{1,15}$/.test(v)) throw new HeadError('invalid content-length');
  return Number(v);
}

function isChunked(te: string): boolean {
  const codings = te.toLowerCase().split(',');
  const last = codings[codings.length - 1]!.trim();
  if (last !== 'chunked') throw new HeadError('unsupported transfer-encoding', 501);
  for (let i = 0; i < codings.length - 1; i++) {
    if (codings[i]!.trim() === 'chunked') throw new HeadError('chunked applied twice');
  }
  return true;
}

export function requestFraming(h: Headers): Framing {
  const te = h['transfer-encoding'];
  const cl = h['content-length'];
  if (te !== undefined) {
    if (cl !== undefined) throw new HeadError('both transfer-encoding and content-length');
    if (isChunked(te)) return CHUNKED;
  }
  if (cl !== undefined) {
    const n = contentLength(cl);
    return n === 0 ? NONE : { kind: 'length', length: n };
  }
  return NONE;
}

/** RFC 9112 §6.3, for the response to a request with `method`. */
export function responseFraming(method: string, status: number, h: Headers): Framing {
  if (method === 'HEAD' || status < 200 || status === 204 || status === 304) return NONE;
  const te = h['transfer-encoding'];
  if (te !== undefined) {
    try {
      return isChunked(te) ? CHUNKED : CLOSE;
    } catch {
      return CLOSE;
    }
  }
  const cl = h['content-length'];
  if (cl !== undefined) {
    let n: number;
    try {
      n = contentLength(cl);
    } catch {
      throw new HeadError('invalid content-length', 502);
    }
    return n === 0 ? NONE : { kind: 'length', length: n };
  }
  return CLOSE;
}

/** Whether the connection may carry another message after this one. */
export function keepAlive(version: number, h: Headers): boolean {
  const c = h['connection'];
  if (c === undefined) return version >= 11;
  const v = c.toLowerCase();
  if (v.includes('close')) return false;
  return version >= 11 || v.includes('keep-alive');
}
