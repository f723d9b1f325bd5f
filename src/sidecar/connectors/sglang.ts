/**
 * `sglang`: SGLang's disaggregation meets prefill and decode engines through the prefiller's bootstrap
 * server, so both legs carry the same `bootstrap_host`/`bootstrap_port`/`bootstrap_room` and start at
 * once; the client gets the decoder's answer and the prefiller's is discarded.
 */
import type { Rng } from '../../core/rng.js';
import type { Connector, PdRequest } from './connector.js';

export interface SglangOptions {
  /** SGLang's `--disaggregation-bootstrap-port` on the prefiller (env `SGLANG_BOOTSTRAP_PORT`). */
  readonly bootstrapPort: number;
  readonly rng: Rng;
  /** Wall-clock nanoseconds since the epoch. */
  readonly nowNs: () => bigint;
}

export const DEFAULT_SGLANG_BOOTSTRAP_PORT = 8998;

export function sglang(opts: SglangOptions): Connector {
  return {
    name: 'sglang',
    ordering: 'concurrent',
    prefillBody(req: PdRequest): Buffer {
      // An int64 unique per request, as upstream: nanoseconds plus a random offset below 1000.
      const room = opts.nowNs() + BigInt(opts.rng.int(0, 999));
      return req.body.patch([
        ['bootstrap_host', JSON.stringify(req.target.host)],
        ['bootstrap_port', String(opts.bootstrapPort)],
        ['bootstrap_room', room.toString()],
      ]);
    },
    decodeBody(_req, _prefill, prefillBody: Buffer): Buffer {
      return prefillBody;
    },
  };
}

/** Epoch-anchored nanoseconds from the monotonic clock: distinct for requests in the same millisecond. */
export function epochNanos(): () => bigint {
  const base = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
  return () => base + process.hrtime.bigint();
}
