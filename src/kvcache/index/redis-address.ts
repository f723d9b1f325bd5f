/**
 * llm-d's `redisConfig.address` (and `valkeyConfig.address`) into connection options, accepting what
 * upstream accepts (go-redis `ParseURL` behind a scheme fix-up):
 *
 *  - `redis://[user:password@]host[:port][/db]`, `rediss://…` (TLS);
 *  - `valkey://…` and `valkeys://…`, the same protocol under Valkey's names;
 *  - `unix://[user:password@]/path/to.sock[?db=N]`;
 *  - a bare `host:port` (or `host`), taken as `redis://` as upstream does for backward compatibility.
 *
 * Query options are go-redis's, with its rules: `db` (overrides the path's), `client_name`,
 * `skip_verify` (TLS only) and `dial_timeout` (a Go duration, or a plain number of seconds; ≤ 0
 * disables it) are used; go-redis's pool and retry tunables are checked for their type and ignored,
 * so an address written for the Go replicas works here too; the last of repeated options counts, and
 * an empty value means the default. Anything else is a ConfigError naming the address (its password
 * hidden, and never echoed from a malformed part), never a silent default.
 */
import { parseDurationMs } from '../../core/duration.js';
import { ConfigError } from '../../core/errors.js';

export interface RedisAddress {
  /** TCP host (IPv6 without brackets); absent for a unix socket. */
  readonly host?: string;
  readonly port?: number;
  /** Unix socket path. */
  readonly path?: string;
  readonly tls: boolean;
  /** TLS: verify the server's certificate (go-redis `skip_verify=true` turns it off). */
  readonly verifyTls: boolean;
  readonly username?: string;
  readonly password?: string;
  readonly db: number;
  readonly clientName?: string;
  readonly connectTimeoutMs?: number;
  /** The address for logs: the password replaced by `***`. */
  readonly display: string;
}

const DEFAULT_PORT = 6379;
/** Longest address quoted in full in a message. */
const MAX_SHOWN = 200;

type OptionType = 'int' | 'duration' | 'bool';

/** go-redis options that tune its own pool or retries: meaningful to Go, checked and ignored here. */
const IGNORED_OPTIONS: ReadonlyMap<string, OptionType> = new Map<string, OptionType>([
  ['protocol', 'int'],
  ['max_retries', 'int'],
  ['min_retry_backoff', 'duration'],
  ['max_retry_backoff', 'duration'],
  ['read_timeout', 'duration'],
  ['write_timeout', 'duration'],
  ['pool_fifo', 'bool'],
  ['pool_size', 'int'],
  ['pool_timeout', 'duration'],
  ['min_idle_conns', 'int'],
  ['max_idle_conns', 'int'],
  ['max_active_conns', 'int'],
  ['max_concurrent_dials', 'int'],
  ['pipeline_pool_size', 'int'],
  ['pipeline_read_buffer_size', 'int'],
  ['pipeline_write_buffer_size', 'int'],
  ['conn_max_idle_time', 'duration'],
  ['conn_max_lifetime', 'duration'],
  ['conn_max_lifetime_jitter', 'duration'],
  ['idle_timeout', 'duration'],
  ['idle_check_frequency', 'duration'],
  ['max_conn_age', 'duration'],
]);

const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;
const HOSTNAME = /^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$/;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
/** An IPv6 literal, optionally with a zone (`%25eth0` in a URL). */
const IPV6 = /^([0-9A-Fa-f:.]+)(?:%25([A-Za-z0-9_.~-]+))?$/;

function fail(address: string, why: string): never {
  const reason = why.length > MAX_SHOWN ? why.slice(0, MAX_SHOWN) + '…' : why;
  throw new ConfigError(`invalid Redis address "${redact(address)}": ${reason}`, 'address');
}

/**
 * The address for messages, any password hidden: everything between the scheme and the last `@`
 * after the user name, wherever that `@` is (a password with an unencoded `/`, `?` or `#` still
 * does not show), cut to a readable length. Control characters are shown escaped.
 */
function redact(address: string): string {
  const m = SCHEME.exec(address);
  const from = m === null ? 0 : m[0].length;
  const at = address.lastIndexOf('@');
  let out = address;
  if (at >= from) {
    const info = address.slice(from, at);
    const colon = info.indexOf(':');
    if (colon >= 0) out = address.slice(0, from + colon + 1) + '***' + address.slice(at);
  }
  if (out.length > MAX_SHOWN) out = out.slice(0, MAX_SHOWN) + '…';
  // eslint-disable-next-line no-control-regex
  return out.replace(/[\u0000-\u001f\u007f]/g, (c) => '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0'));
}

function decode(address: string, part: string, what: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return fail(address, `${what} is not valid percent-encoding`);
  }
}

function parseDb(address: string, text: string): number {
  if (!/^[0-9]{1,5}$/.test(text)) fail(address, `database "${text}" is not a non-negative integer`);
  return Number(text);
}

/** go-redis's boolean option values. */
function parseBool(address: string, name: string, v: string): boolean {
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0' || v === '') return false;
  return fail(address, `${name} must be true, false, 1 or 0, got "${v}"`);
}

/**
 * go-redis's duration option values: a plain integer is seconds, else a Go duration (`500ms`,
 * `1m30s`, signed); zero or less disables the timeout (0 here). Milliseconds, rounded up.
 */
function parseGoDuration(address: string, name: string, v: string): number {
  if (/^[+-]?[0-9]{1,15}$/.test(v)) return Math.max(0, Number(v)) * 1000;
  const negative = v.startsWith('-');
  const ms = parseDurationMs(v.startsWith('-') || v.startsWith('+') ? v.slice(1) : v);
  if (ms === null || v.trim() !== v) fail(address, `${name} "${v}" is not a duration`);
  return negative ? 0 : Math.ceil(ms);
}

interface QueryResult {
  db?: number;
  clientName?: string;
  skipVerify?: boolean;
  connectTimeoutMs?: number;
}

function parseQuery(address: string, query: string, tls: boolean): QueryResult {
  const out: QueryResult = {};
  if (query === '') return out;
  for (const [k, v] of new URLSearchParams(query)) {
    // An option name holding '@' is a password's tail cut off at an unencoded '?': do not echo it.
    if (k.includes('@')) fail(address, "'@' in the options: percent-encode '/', '?' and '#' in a password");
    // As go-redis: an empty value means the default, and the last of repeated options counts.
    if (k === 'db') {
      if (v === '') delete out.db;
      else out.db = parseDb(address, v);
    } else if (k === 'client_name') {
      if (v === '') delete out.clientName;
      else out.clientName = v;
    } else if (k === 'skip_verify' && tls) out.skipVerify = parseBool(address, k, v);
    else if (k === 'dial_timeout') {
      if (v === '') delete out.connectTimeoutMs;
      else out.connectTimeoutMs = parseGoDuration(address, k, v);
    } else {
      const type = IGNORED_OPTIONS.get(k);
      if (type === undefined) {
        fail(address, k === 'skip_verify' ? 'skip_verify needs rediss:// (TLS)' : `unexpected option "${k}"`);
      }
      if (v === '') continue;
      if (type === 'int' && !/^[+-]?[0-9]{1,18}$/.test(v)) fail(address, `${k} "${v}" is not an integer`);
      if (type === 'duration') parseGoDuration(address, k, v);
      if (type === 'bool') parseBool(address, k, v);
    }
  }
  return out;
}

/** `[user[:password]@]` before a host or socket path. */
function splitUserInfo(address: string, rest: string): { user?: string; password?: string; rest: string } {
  const at = rest.lastIndexOf('@');
  if (at < 0) return { rest };
  const info = rest.slice(0, at);
  const colon = info.indexOf(':');
  const user = decode(address, colon < 0 ? info : info.slice(0, colon), 'user name');
  const password = colon < 0 ? undefined : decode(address, info.slice(colon + 1), 'password');
  return {
    ...(user !== '' ? { user } : {}),
    ...(password !== undefined ? { password } : {}),
    rest: rest.slice(at + 1),
  };
}

export function parseRedisAddress(address: string): RedisAddress {
  if (typeof address !== 'string') fail(String(address), 'it is not a string');
  if (address.trim() === '') fail(address, 'it is empty');
  if (/\s/.test(address)) fail(address, 'it contains white space');
  if (CONTROL.test(address)) fail(address, 'it contains a control character');
  const m = SCHEME.exec(address);
  const scheme = m === null ? 'redis' : m[1]!.toLowerCase();
  const body = m === null ? address : address.slice(m[0].length);
  if (scheme === 'unix') return parseUnix(address, body);
  let tls: boolean;
  if (scheme === 'redis' || scheme === 'valkey') tls = false;
  else if (scheme === 'rediss' || scheme === 'valkeys') tls = true;
  else
    fail(
      address,
      `unsupported scheme "${scheme}://" (use redis://, rediss://, valkey://, valkeys:// or unix://)`,
    );

  const q = body.indexOf('?');
  const beforeQuery = q < 0 ? body : body.slice(0, q);
  const slash = beforeQuery.indexOf('/');
  const authority = slash < 0 ? beforeQuery : beforeQuery.slice(0, slash);
  const dbPath = slash < 0 ? '' : beforeQuery.slice(slash + 1);
  // A password's tail cut off at an unencoded '/': do not echo it.
  if (dbPath.includes('@'))
    fail(address, "'@' after the host: percent-encode '/', '?' and '#' in a password");
  const query = parseQuery(address, q < 0 ? '' : body.slice(q + 1), tls);
  const { user, password, rest: hostPort } = splitUserInfo(address, authority);

  let host: string;
  let portText: string | null;
  if (hostPort.startsWith('[')) {
    const close = hostPort.indexOf(']');
    if (close < 0) fail(address, 'unterminated IPv6 address');
    const literal = IPV6.exec(hostPort.slice(1, close));
    if (literal === null || !literal[1]!.includes(':')) {
      fail(address, `"${hostPort.slice(1, close)}" is not an IPv6 address`);
    }
    host = literal[2] === undefined ? literal[1]! : `${literal[1]!}%${literal[2]}`;
    const after = hostPort.slice(close + 1);
    if (after !== '' && !after.startsWith(':')) fail(address, 'expected ":port" after the IPv6 address');
    portText = after === '' ? null : after.slice(1);
  } else {
    const colon = hostPort.lastIndexOf(':');
    host = colon < 0 ? hostPort : hostPort.slice(0, colon);
    portText = colon < 0 ? null : hostPort.slice(colon + 1);
    if (host === '') host = 'localhost';
    if (!HOSTNAME.test(host)) fail(address, `"${host}" is not a host name or address`);
  }
  let port = DEFAULT_PORT;
  if (portText !== null) {
    if (!/^[0-9]{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
      fail(address, `port "${portText}" is not a number from 1 to 65535`);
    }
    port = Number(portText);
  }
  // As go-redis: empty path segments do not count, more than one is an error, `?db=` overrides.
  const segments = dbPath.split('/').filter((x) => x !== '');
  if (segments.length > 1) fail(address, `"/${dbPath}" is not a database number`);
  const db = query.db ?? (segments.length === 0 ? 0 : parseDb(address, segments[0]!));
  return {
    host,
    port,
    tls,
    verifyTls: !(query.skipVerify ?? false),
    ...(user !== undefined ? { username: user } : {}),
    ...(password !== undefined ? { password } : {}),
    db,
    ...(query.clientName !== undefined ? { clientName: query.clientName } : {}),
    ...(query.connectTimeoutMs !== undefined ? { connectTimeoutMs: query.connectTimeoutMs } : {}),
    display: `${tls ? 'rediss' : 'redis'}://${host.includes(':') ? `[${host}]` : host}:${port}/${db}`,
  };
}

/**
 * `unix://[user:password@]/absolute/path[?options]`: as in any URL, user info is only what precedes
 * the path's first `/` (so a path may hold `@`); a host there is refused rather than ignored as
 * go-redis does (`unix://tmp/r.sock` would connect to `/r.sock`).
 */
function parseUnix(address: string, body: string): RedisAddress {
  const q = body.indexOf('?');
  const beforeQuery = q < 0 ? body : body.slice(0, q);
  const slash = beforeQuery.indexOf('/');
  if (slash < 0) fail(address, 'empty unix socket path (write unix:///absolute/path)');
  const { user, password, rest: host } = splitUserInfo(address, beforeQuery.slice(0, slash));
  if (host !== '') fail(address, 'a unix socket address takes no host (write unix:///absolute/path)');
  const query = parseQuery(address, q < 0 ? '' : body.slice(q + 1), false);
  const path = decode(address, beforeQuery.slice(slash), 'socket path');
  if (path.trim() === '/' || path.trim() === '') fail(address, 'empty unix socket path');
  const db = query.db ?? 0;
  return {
    path,
    tls: false,
    verifyTls: true,
    ...(user !== undefined ? { username: user } : {}),
    ...(password !== undefined ? { password } : {}),
    db,
    ...(query.clientName !== undefined ? { clientName: query.clientName } : {}),
    ...(query.connectTimeoutMs !== undefined ? { connectTimeoutMs: query.connectTimeoutMs } : {}),
    display: `unix://${path}?db=${db}`,
  };
}
