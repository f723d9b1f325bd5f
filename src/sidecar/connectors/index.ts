/** The connector registry: `--connector` / `--kv-connector` names to connectors. */
import type { Rng } from '../../core/rng.js';
import type { Connector, ConnectorName } from './connector.js';
import { nixl } from './nixl.js';
import { nixlv2 } from './nixlv2.js';
import { sharedStorage } from './shared-storage.js';
import { epochNanos, sglang } from './sglang.js';

export type { Connector, ConnectorName, PdRequest, PrefillTarget } from './connector.js';
export { CONNECTOR_NAMES } from './connector.js';

export interface ConnectorOptions {
  readonly sglangBootstrapPort: number;
  readonly rng: Rng;
}

export function createConnector(name: ConnectorName, opts: ConnectorOptions): Connector {
  switch (name) {
    case 'nixlv2':
      return nixlv2;
    case 'nixl':
      return nixl;
    case 'shared-storage':
      return sharedStorage;
    case 'sglang':
      return sglang({ bootstrapPort: opts.sglangBootstrapPort, rng: opts.rng, nowNs: epochNanos() });
  }
}
