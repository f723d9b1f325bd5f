/**
 * `nixlv2`, the default (vLLM's NixlConnector): the prefill leg asks for one token with the null-filled
 * `kv_transfer_params` that tells the prefiller to keep its blocks for a remote decode; the decode leg
 * is the client's body exactly, plus the `kv_transfer_params` the prefiller answered, byte for byte.
 */
import { NON_STREAMING, oneTokenEdits } from '../api.js';
import type { Connector, PdRequest } from './connector.js';
import type { JsonObject } from '../json-patch.js';

/** What llm-d's sidecar and vLLM's toy proxy both send, field for field. */
export const PREFILL_KV_TRANSFER_PARAMS =
  '{"do_remote_decode":true,"do_remote_prefill":false,"remote_engine_id":null,' +
  '"remote_block_ids":null,"remote_host":null,"remote_port":null}';

export const nixlv2: Connector = {
  name: 'nixlv2',
  ordering: 'serial',
  prefillBody(req: PdRequest): Buffer {
    return req.body.patch([
      ['kv_transfer_params', PREFILL_KV_TRANSFER_PARAMS],
      ...NON_STREAMING,
      ...oneTokenEdits(req.body, req.api),
    ]);
  },
  decodeBody(req: PdRequest, prefill: JsonObject | null, _prefillBody, warn): Buffer {
    const params = prefill?.raw('kv_transfer_params');
    // vLLM then prefills locally: slower, still correct.
    if (params === undefined) warn("missing 'kv_transfer_params' field in prefiller response");
    return req.body.patch([['kv_transfer_params', params ?? 'null']]);
  },
};
