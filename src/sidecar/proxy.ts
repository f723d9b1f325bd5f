/**
 * The sidecar's routes: `GET /health` answered here, the inference POSTs that carry
 * `x-prefiller-host-port` handed to the P/D flow, and everything else — the same POSTs without the
 * header, `/v1/models`, `/metrics`, anything — relayed to the local model server as is (method, target,
 * headers, body bytes), minus the routing headers the EPP set for this hop.
 */
import { randomUUID } from 'node:crypto';
import type { Http1Pool, UpstreamError } from '../core/http1/client.js';
import { renderRequestHead } from '../core/http1/client.js';
import { RELAY_DROPPED_HEADERS } from '../core/http1/hop-by-hop.js';
import type { Http1Request, Http1Response } from '../core/http1/server.js';
import {
  BadGatewayError,
  DecoderNotReadyError,
  LlmdError,
  SsrfDeniedError,
  toErrorBody,
} from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { Rng } from '../core/rng.js';
import { PD_ROUTES, pathOf } from './api.js';
import type { Connector } from './connectors/connector.js';
import type { SidecarOptions } from './options.js';
import { runPd } from './pd.js';
import { Relay, type CachedTokensRewrite } from './relay.js';
import type { PrefillAllowlist } from './ssrf.js';
import type { PrefillPools } from './upstreams.js';

export const PREFILLER_HEADER = 'x-prefiller-host-port';

/** Set by the EPP for this hop only; never forwarded (llm-d PR #999). */
export const ROUTING_HEADERS: ReadonlySet<string> = new Set([
  PREFILLER_HEADER,
  'x-encoder-hosts-ports',
  'x-kv-cache-source-host-port',
]);

/** What one listener's requests need: the options, its decoder, the shared prefill pools. */
export interface SidecarContext {
  readonly options: SidecarOptions;
  readonly connector: Connector;
  readonly decoder: Http1Pool;
  /** Host header for the decoder. */
  readonly decoderHostPort: string;
  readonly prefillPools: PrefillPools;
  /** Null when SSRF protection is off. */
  readonly allowlist: PrefillAllowlist | null;
  readonly rng: Rng;
  readonly logger: Logger;
}

export function createHandler(ctx: SidecarContext): (req: Http1Request, res: Http1Response) => void {
  return (req, res) => {
    const path = pathOf(req.target);
    if (path === '/health' && (req.method === 'GET' || req.method === 'HEAD')) {
      res.send(200, '', '');
      return;
    }
    const api = req.method === 'POST' ? PD_ROUTES.get(path) : undefined;
    const prefiller = req.headers[PREFILLER_HEADER];
    if (api !== undefined && prefiller !== undefined) {
      runPd(ctx, req, res, api, prefiller);
      return;
    }
    proxyToDecoder(ctx, req, res, req.body, forwardedHeaderLines(req.headers, null), null);
  };
}

/**
 * The client's headers as `name: value` lines for the next hop, without hop-by-hop and routing
 * headers. With `requestId`, the client's `x-request-id` is replaced by it (one value, not two).
 */
export function forwardedHeaderLines(
  h: Readonly<Record<string, string>>,
  requestId: string | null,
  drop?: ReadonlySet<string>,
): string {
  let out = '';
  for (const k in h) {
    if (RELAY_DROPPED_HEADERS.has(k) || ROUTING_HEADERS.has(k) || drop?.has(k)) continue;
    if (requestId !== null && k === 'x-request-id') continue;
    out += k + ': ' + h[k] + '\r\n';
  }
  if (requestId !== null) out += 'x-request-id: ' + requestId + '\r\n';
  return out;
}

/** Printable ASCII without commas or spaces, of a sane length: safe to reuse as both legs' id. */
const REQUEST_ID = /^[\x21-\x2b\x2d-\x7e]{1,256}$/;

/**
 * The id both legs carry: the one the EPP or client sent, so logs line up across hops, else a fresh
 * UUID. A value that arrived twice (joined by a comma) or is odd is replaced.
 */
export function requestIdOf(h: Readonly<Record<string, string>>): string {
  const v = h['x-request-id'];
  return v !== undefined && REQUEST_ID.test(v) ? v : randomUUID();
}

/**
 * Sends `body` to the local model server and relays its answer. `rewrite` sets the cached-token count
 * in a 2xx answer. A client that goes away aborts the call.
 */
export function proxyToDecoder(
  ctx: SidecarContext,
  req: Http1Request,
  res: Http1Response,
  body: Buffer,
  headerLines: string,
  rewrite: CachedTokensRewrite | null,
  requestId?: string,
): Relay {
  const relay = new Relay(res, rewrite, (err) => decoderFailed(ctx, res, err, requestId));
  const head = renderRequestHead(req.method, req.target, ctx.decoderHostPort, headerLines, body.length);
  relay.upstream = ctx.decoder.request(req.method, head, body, relay);
  res.onClose(() => relay.abort());
  return relay;
}

function decoderFailed(
  ctx: SidecarContext,
  res: Http1Response,
  err: UpstreamError,
  requestId?: string,
): void {
  if (res.clientGone) return;
  // A refused connection is a decoder not (yet) listening; anything else is a broken answer.
  const e = err.connectFailed
    ? new DecoderNotReadyError()
    : new BadGatewayError(`The decode server failed: ${err.message}.`);
  ctx.logger.warn(
    { request_id: requestId, model_server: ctx.decoderHostPort, err: err.message, code: err.code },
    err.connectFailed ? 'waiting for the model server to be ready' : 'model server failed',
  );
  sendError(res, e);
}

/**
 * An error in llm-d's sidecar format: vLLM's flat error JSON, except the SSRF refusal, which is Go's
 * `http.Error` plain text (its body ends with a newline).
 */
export function sendError(res: Http1Response, e: LlmdError): void {
  if (res.headersSent) {
    // Mid-answer, the connection is all there is to cut; after it, the connection is the next request's.
    if (!res.finished) res.destroy();
    return;
  }
  if (e instanceof SsrfDeniedError) {
    res.send(
      e.status,
      'content-type: text/plain; charset=utf-8\r\nx-content-type-options: nosniff\r\n',
      e.message + '\n',
    );
    return;
  }
  res.send(e.status, 'content-type: application/json\r\n', toErrorBody(e, 'vllm-flat'));
}
