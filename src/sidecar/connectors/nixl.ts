/**
 * `nixl`, the first NixlConnector protocol (deprecated upstream, kept for old vLLM releases): the
 * transfer fields travel at the top level of the bodies rather than inside `kv_transfer_params`, and
 * the token limits are left alone.
 */
import { NON_STREAMING } from '../api.js';
import { REMOVE, type JsonEdit, type JsonObject } from '../json-patch.js';
import type { Connector, PdRequest } from './connector.js';

/** Copied from the prefiller's answer to the decode body when present. */
const REMOTE_FIELDS = ['remote_block_ids', 'remote_engine_id', 'remote_host', 'remote_port'] as const;

export const nixl: Connector = {
  name: 'nixl',
  ordering: 'serial',
  prefillBody(req: PdRequest): Buffer {
    return req.body.patch([['do_remote_decode', 'true'], ...NON_STREAMING]);
  },
  decodeBody(req: PdRequest, prefill: JsonObject | null, _prefillBody, warn): Buffer {
    const edits: [string, JsonEdit][] = [
      ['do_remote_decode', REMOVE],
      ['do_remote_prefill', 'true'],
    ];
    const missing: string[] = [];
    for (const f of REMOTE_FIELDS) {
      const raw = prefill?.raw(f);
      if (raw === undefined) missing.push(f);
      else edits.push([f, raw]);
    }
    if (missing.length > 0) warn('prefiller response lacks remote fields', { missing });
    return req.body.patch(edits);
  },
};
