/**
 * The contract every KV connector meets: how the prefill and decode bodies are built from the client's
 * body, and whether the decode leg waits for the prefill's answer. A connector is pure body
 * arithmetic over the JSON patcher; the P/D flow (`../pd.ts`) does the I/O.
 */
import type { ApiType } from '../api.js';
import type { JsonObject } from '../json-patch.js';

export const CONNECTOR_NAMES = ['nixlv2', 'nixl', 'shared-storage', 'sglang'] as const;
export type ConnectorName = (typeof CONNECTOR_NAMES)[number];

/** The prefiller a request names in `x-prefiller-host-port`, validated. */
export interface PrefillTarget {
  /** `host:port`, IPv6 in brackets: the pool key and the Host header. */
  readonly hostPort: string;
  /** Without brackets. */
  readonly host: string;
  readonly port: number;
}

export interface PdRequest {
  /** The client's body, scanned once. */
  readonly body: JsonObject;
  readonly api: ApiType;
  readonly target: PrefillTarget;
}

export interface Connector {
  readonly name: ConnectorName;
  /**
   * `serial`: the decode leg is built from the prefiller's answer. `concurrent`: both legs start at
   * once and the prefiller's answer is discarded (the engines meet through a bootstrap server).
   */
  readonly ordering: 'serial' | 'concurrent';
  prefillBody(req: PdRequest): Buffer;
  /**
   * `prefill` is the prefiller's 2xx JSON answer for a serial connector, null for a concurrent one;
   * `prefillBody` is what `prefillBody` returned. `warn` reports what the answer lacked.
   */
  decodeBody(
    req: PdRequest,
    prefill: JsonObject | null,
    prefillBody: Buffer,
    warn: (msg: string, fields?: Record<string, unknown>) => void,
  ): Buffer;
}
