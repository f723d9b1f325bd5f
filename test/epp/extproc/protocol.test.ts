/** The protos load from the .proto files beside the module, and the wire helpers round-trip. */
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  BODY_CHUNK_BYTES,
  PROTO_DIR,
  bodyChunks,
  fromStruct,
  headersOf,
  protos,
  toStruct,
} from '../../../src/epp/extproc/protocol.js';
import { subsetOf } from '../../../src/epp/extproc/server.js';

const DIR = join(import.meta.dirname, '../../../src/epp/extproc/proto');

describe('ext_proc protocol', () => {
  it('loads the .proto files beside the module', () => {
    expect(resolve(PROTO_DIR)).toBe(resolve(DIR));
    expect(Object.keys(protos().extProc)).toEqual(['Process']);
    expect(Object.keys(protos().health).sort()).toEqual(['Check', 'Watch']);
  });

  it('keeps upstream field numbers on the wire', () => {
    const svc = protos().extProc.Process!;
    const bytes = svc.requestSerialize({ request_body: { body: Buffer.from('ab'), end_of_stream: true } });
    // field 4 (request_body), length-delimited: tag 0x22; inside: field 1 bytes (0x0a), field 2 varint (0x10).
    expect([...bytes]).toEqual([0x22, 6, 0x0a, 2, 0x61, 0x62, 0x10, 1]);
    const out = svc.responseSerialize({ request_headers: { response: { clear_route_cache: true } } });
    // field 1 (request_headers) > field 1 (response) > field 5 (clear_route_cache).
    expect([...out]).toEqual([0x0a, 4, 0x0a, 2, 0x28, 1]);
    const hv = svc.requestSerialize({
      request_headers: { headers: { headers: [{ key: 'k', raw_value: Buffer.from('v') }] } },
    });
    // HeaderValue.raw_value is field 3 (0x1a).
    expect([...hv]).toEqual([0x12, 10, 0x0a, 8, 0x0a, 6, 0x0a, 1, 0x6b, 0x1a, 1, 0x76]);
  });

  it('chunks bodies at 62000 bytes, an empty body being one empty chunk', () => {
    expect(bodyChunks(Buffer.alloc(0), true)).toEqual([{ body: Buffer.alloc(0), end_of_stream: true }]);
    const c = bodyChunks(Buffer.alloc(BODY_CHUNK_BYTES * 2 + 1), true);
    expect(c.map((x) => [x.body.length, x.end_of_stream])).toEqual([
      [BODY_CHUNK_BYTES, false],
      [BODY_CHUNK_BYTES, false],
      [1, true],
    ]);
  });

  it('reads headers lower-cased, raw_value first, and Struct values both ways', () => {
    expect(
      headersOf({
        headers: {
          headers: [
            { key: 'X-A', value: 'plain', raw_value: Buffer.from('raw') },
            { key: 'x-b', value: 'v' },
          ],
        },
      }),
    ).toEqual({ 'x-a': 'raw', 'x-b': 'v' });
    const v = { a: 'x', b: [1, true, null], c: { d: 'e' } };
    expect(fromStruct(toStruct(v))).toEqual(v);
  });

  it('reads the subset hint by IP; absent is null, empty is empty', () => {
    const md = (list: unknown) => ({
      filter_metadata: {
        'envoy.lb.subset_hint': toStruct({ 'x-gateway-destination-endpoint-subset': list as never }),
      },
    });
    expect(subsetOf(null)).toBeNull();
    expect(subsetOf({ filter_metadata: {} })).toBeNull();
    expect([...subsetOf(md(['10.0.0.1:8000', '[fd00::1]:80', 'fd00::2']))!]).toEqual([
      '10.0.0.1',
      'fd00::1',
      'fd00::2',
    ]);
    expect(subsetOf(md([]))!.size).toBe(0);
  });
});
