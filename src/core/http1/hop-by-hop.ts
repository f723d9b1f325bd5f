/**
 * The header names a proxy must not copy from one hop to the next, defined once for every relay
 * (the sidecar, the EPP's standalone gateway) and for the ext_proc server, which sets its own names on
 * top. Sets are built once at load: a lookup on the hot path is one `has`, and nothing is allocated
 * per request.
 */

/**
 * RFC 9110 §7.6.1 connection-specific fields, with the pre-standard `keep-alive` and
 * `proxy-connection` that HTTP/1.0 clients still send.
 */
export const HOP_BY_HOP_HEADERS: readonly string[] = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
];

/**
 * End-to-end fields a relay still writes itself for its own hop: the target's host, the body's
 * framing (a relayed or rewritten body is framed anew) and `expect`, since a relay answers
 * 100-continue on its own side.
 */
export const RELAY_OWN_HEADERS: readonly string[] = ['host', 'content-length', 'expect'];

/** A set of lower-cased header names from several lists; build it once, at module load. */
export function headerSet(...lists: readonly Iterable<string>[]): ReadonlySet<string> {
  const out = new Set<string>();
  for (const list of lists) for (const name of list) out.add(name.toLowerCase());
  return out;
}

/** What an HTTP/1.1 relay drops from the headers it copies, in either direction. */
export const RELAY_DROPPED_HEADERS: ReadonlySet<string> = headerSet(HOP_BY_HOP_HEADERS, RELAY_OWN_HEADERS);
