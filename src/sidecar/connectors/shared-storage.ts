/**
 * `shared-storage` (formerly `lmcache`): the engines share a KV store, so the prefill leg only has to
 * compute and store the prompt's blocks (one token, no streaming), and the decode leg is the client's
 * body untouched — the decoder finds the blocks in the store.
 */
import { NON_STREAMING, oneTokenEdits } from '../api.js';
import type { Connector, PdRequest } from './connector.js';

export const sharedStorage: Connector = {
  name: 'shared-storage',
  ordering: 'serial',
  prefillBody(req: PdRequest): Buffer {
    return req.body.patch([...NON_STREAMING, ...oneTokenEdits(req.body, req.api)]);
  },
  decodeBody(req: PdRequest): Buffer {
    return req.body.buf;
  },
};
