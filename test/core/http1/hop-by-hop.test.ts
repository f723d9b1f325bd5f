/** The one definition of the headers not copied across a hop, and how each proxy builds on it. */
import { describe, expect, it } from 'vitest';
import {
  HOP_BY_HOP_HEADERS,
  RELAY_DROPPED_HEADERS,
  RELAY_OWN_HEADERS,
  headerSet,
} from '../../../src/core/http1/hop-by-hop.js';
import { EXT_PROC_NOT_ECHOED } from '../../../src/epp/extproc/server.js';
import { GATEWAY_DROPPED_HEADERS } from '../../../src/epp/gateway/gateway.js';
import { HEADERS, SYSTEM_OWNED_HEADERS } from '../../../src/epp/handling/director.js';

const sorted = (s: Iterable<string>): string[] => [...s].sort();

describe('hop-by-hop headers', () => {
  it('are RFC 9110’s connection-specific fields, and a relay also drops the ones it writes itself', () => {
    expect(sorted(HOP_BY_HOP_HEADERS)).toEqual([
      'connection',
      'keep-alive',
      'proxy-authenticate',
      'proxy-authorization',
      'proxy-connection',
      'te',
      'trailer',
      'transfer-encoding',
      'upgrade',
    ]);
    expect(sorted(RELAY_DROPPED_HEADERS)).toEqual(
      sorted([...HOP_BY_HOP_HEADERS, 'host', 'content-length', 'expect']),
    );
    expect(sorted(RELAY_OWN_HEADERS)).toEqual(['content-length', 'expect', 'host']);
  });

  it('builds lookup sets of lower-cased names from several lists', () => {
    const s = headerSet(['A', 'b'], new Set(['b', 'C-D']));
    expect(sorted(s)).toEqual(['a', 'b', 'c-d']);
    expect(s.has('c-d')).toBe(true);
  });

  it('the gateway drops what a relay drops plus the headers the EPP sets, but passes control headers on', () => {
    expect(sorted(GATEWAY_DROPPED_HEADERS)).toEqual(
      sorted([
        ...RELAY_DROPPED_HEADERS,
        'x-gateway-destination-endpoint',
        'x-gateway-destination-endpoint-subset',
        'x-gateway-destination-endpoint-served',
        'x-llm-d-request-dropped-reason',
      ]),
    );
    for (const h of Object.values(HEADERS).flat()) expect(GATEWAY_DROPPED_HEADERS.has(h), h).toBe(false);
  });

  it('ext_proc drops the EPP’s own headers and host, and leaves hop-by-hop ones to Envoy', () => {
    expect(sorted(EXT_PROC_NOT_ECHOED)).toEqual(sorted([...SYSTEM_OWNED_HEADERS, 'host']));
    for (const h of HOP_BY_HOP_HEADERS) expect(EXT_PROC_NOT_ECHOED.has(h), h).toBe(false);
    for (const h of Object.values(HEADERS).flat()) expect(EXT_PROC_NOT_ECHOED.has(h), h).toBe(true);
    // What both sides share: the framing header and the target's host.
    expect(sorted([...EXT_PROC_NOT_ECHOED].filter((h) => RELAY_DROPPED_HEADERS.has(h)))).toEqual([
      'content-length',
      'host',
    ]);
  });
});
