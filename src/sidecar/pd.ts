/**
 * One disaggregated request: choose the prefiller named in `x-prefiller-host-port`, check it against
 * the SSRF allowlist, send the connector's prefill body there (retrying 502/503/504 and unreachable
 * prefillers, all within `--prefill-timeout`), then send the decode body to the local model server
 * and relay its answer. The prefill's answer is small and read whole; the decode's is streamed.
 *
 * Nothing here can hang: the prefill stage has one deadline for all its attempts, a client that goes
 * away aborts whichever legs are open, and a prefill that fails (unreachable, too slow, 5xx, an answer
 * that is not JSON) either falls back to a local decode of the client's body or is reported, as
 * `--prefill-failure-policy` says. 4xx answers are the client's to see, always.
 */
import type { UpstreamCall, UpstreamError, UpstreamResponseHandler } from '../core/http1/client.js';
import { renderRequestHead } from '../core/http1/client.js';
import type { ResponseHead } from '../core/http1/head.js';
import type { Http1Request, Http1Response } from '../core/http1/server.js';
import {
  BadGatewayError,
  BadRequestError,
  InternalError,
  SsrfDeniedError,
  UpstreamTimeoutError,
  type LlmdError,
} from '../core/errors.js';
import { cachedTokensField, type ApiType } from './api.js';
import type { PdRequest, PrefillTarget } from './connectors/connector.js';
import { JsonPatchError, scanObject, type JsonObject } from './json-patch.js';
import {
  forwardedHeaderLines,
  proxyToDecoder,
  requestIdOf,
  sendError,
  type SidecarContext,
} from './proxy.js';
import { responseHeaderLines, type CachedTokensRewrite, type Relay } from './relay.js';
import { hostOfTarget, parseTarget, prefillerCandidates } from './ssrf.js';

/** Statuses a prefill is retried on (llm-d's router sidecar). */
const RETRY_STATUSES: ReadonlySet<number> = new Set([502, 503, 504]);

/** A prefill answer is one small JSON object; more than this is not one. */
const MAX_PREFILL_RESPONSE = 8 * 1024 * 1024;

/** The prefiller must answer something we can read. */
const PREFILL_DROP: ReadonlySet<string> = new Set(['accept-encoding']);

type Outcome =
  | { readonly kind: 'response'; readonly head: ResponseHead; readonly body: Buffer }
  | { readonly kind: 'error'; readonly err: UpstreamError | Error }
  | { readonly kind: 'timeout' }
  | { readonly kind: 'cancelled' };

const TIMEOUT: Outcome = { kind: 'timeout' };
const CANCELLED: Outcome = { kind: 'cancelled' };

/** Echo of a header value in an error message: bounded, so a huge value is not reflected back whole. */
function shown(v: string): string {
  return JSON.stringify(v.length > 100 ? v.slice(0, 100) + '…' : v);
}

export function runPd(
  ctx: SidecarContext,
  req: Http1Request,
  res: Http1Response,
  api: ApiType,
  headerValue: string,
): void {
  const candidates = prefillerCandidates(headerValue);
  if (candidates === null) {
    sendError(res, new BadRequestError('x-prefiller-host-port is too long.'));
    return;
  }
  // An empty header means no disaggregation: the local server does it all.
  if (candidates.length === 0) {
    proxyToDecoder(ctx, req, res, req.body, forwardedHeaderLines(req.headers, null), null);
    return;
  }
  const o = ctx.options;
  const chosen =
    o.enablePrefillerSampling && candidates.length > 1
      ? candidates[ctx.rng.int(0, candidates.length - 1)]!
      : candidates[0]!;
  let value = chosen;
  if (ctx.allowlist !== null) {
    // Checked on the raw value, before anything is parsed or sent, as upstream does.
    if (!ctx.allowlist.allows(hostOfTarget(value))) {
      ctx.logger.warn(
        { request_id: req.headers['x-request-id'], prefiller: shown(chosen) },
        'prefill target refused by SSRF protection',
      );
      sendError(res, new SsrfDeniedError());
      return;
    }
  } else if (/^http:\/\//i.test(value)) {
    // Older EPPs sent a URL; tolerated without SSRF protection only (upstream's backward compatibility).
    value = value.slice(7);
  }
  const target = parseTarget(value);
  if (target === null) {
    sendError(
      res,
      new BadRequestError(`x-prefiller-host-port: ${shown(chosen)} is not a valid host:port prefill target.`),
    );
    return;
  }
  let body: JsonObject;
  try {
    body = scanObject(req.body);
  } catch (err) {
    if (!(err instanceof JsonPatchError)) throw err;
    sendError(res, new BadRequestError(`Invalid JSON request body: ${err.message}.`));
    return;
  }
  new PdCall(ctx, req, res, { body, api, target }, requestIdOf(req.headers)).start();
}

class PdCall {
  private clientGone = false;
  private timedOut = false;
  private prefillCall: UpstreamCall | null = null;
  private decode: Relay | null = null;
  /** Settles the attempt or back-off in progress, when the deadline or the client ends it early. */
  private wake: ((o: Outcome) => void) | null = null;
  private deadline: NodeJS.Timeout | null = null;
  private readonly started = performance.now();
  private readonly headerLines: string;
  private readonly prefillHeaderLines: string;

  constructor(
    private readonly ctx: SidecarContext,
    private readonly req: Http1Request,
    private readonly res: Http1Response,
    private readonly pd: PdRequest,
    private readonly requestId: string,
  ) {
    this.headerLines = forwardedHeaderLines(req.headers, requestId);
    this.prefillHeaderLines = forwardedHeaderLines(req.headers, requestId, PREFILL_DROP);
    res.onClose(() => {
      this.clientGone = true;
      this.stopPrefill(CANCELLED);
      this.decode?.abort();
    });
  }

  private get target(): PrefillTarget {
    return this.pd.target;
  }

  start(): void {
    const connector = this.ctx.connector;
    const prefillBody = connector.prefillBody(this.pd);
    this.deadline = setTimeout(() => {
      this.timedOut = true;
      this.stopPrefill(TIMEOUT);
    }, this.ctx.options.prefillTimeoutMs);
    if (connector.ordering === 'concurrent') {
      // The engines meet through the bootstrap server; the prefill's answer carries nothing we need.
      this.attempt(prefillBody, true)
        .then((out) => {
          this.clearDeadline();
          if (out.kind === 'response' && out.head.status < 300) return;
          this.warnFailed(out, 'the decode leg goes on');
        })
        .catch(this.crashed);
      this.startDecode(connector.decodeBody(this.pd, null, prefillBody, this.warn), null);
      return;
    }
    this.prefill(prefillBody)
      .then((out) => this.prefilled(out, prefillBody))
      .catch(this.crashed);
  }

  /** A bug, not a failure of either server: logged in full, a bare 500 for the client. */
  private readonly crashed = (err: unknown): void => {
    this.clearDeadline();
    this.ctx.logger.error({ err, request_id: this.requestId }, 'P/D flow failed');
    this.prefillCall?.abort();
    this.decode?.abort();
    if (!this.clientGone) sendError(this.res, new InternalError());
  };

  private readonly warn = (msg: string, fields?: Record<string, unknown>): void => {
    this.ctx.logger.warn({ request_id: this.requestId, prefiller: this.target.hostPort, ...fields }, msg);
  };

  /** Attempts until one is final, retries spent, or the deadline passes. */
  private async prefill(body: Buffer): Promise<Outcome> {
    const o = this.ctx.options;
    for (let attempt = 0; ; attempt++) {
      const out = await this.attempt(body, false);
      if (out.kind === 'timeout' || out.kind === 'cancelled') return out;
      const retryable = out.kind === 'error' || RETRY_STATUSES.has(out.head.status);
      if (!retryable || attempt >= o.prefillMaxRetries) return out;
      this.warn('prefill failed, retrying', {
        attempt: attempt + 1,
        of: o.prefillMaxRetries,
        ...(out.kind === 'error' ? { err: out.err.message } : { status: out.head.status }),
      });
      const after = await this.sleep(o.prefillRetryBackoffMs);
      if (after !== null) return after;
    }
  }

  /** One prefill request; its answer read whole (or, with `discard`, read and dropped). */
  private async attempt(body: Buffer, discard: boolean): Promise<Outcome> {
    if (this.clientGone) return CANCELLED;
    if (this.timedOut) return TIMEOUT;
    const pool = this.ctx.prefillPools.get(this.target);
    return new Promise<Outcome>((resolve) => {
      let settled = false;
      const settle = (o: Outcome): void => {
        if (settled) return;
        settled = true;
        this.wake = null;
        this.prefillCall = null;
        resolve(o);
      };
      this.wake = settle;
      const parts: Buffer[] = [];
      let bytes = 0;
      let head: ResponseHead | null = null;
      const handler: UpstreamResponseHandler = {
        onHead: (h) => {
          head = h;
        },
        onRaw: () => undefined,
        onData: (d) => {
          if (discard) return;
          bytes += d.length;
          if (bytes > MAX_PREFILL_RESPONSE) {
            call.abort();
            settle({ kind: 'error', err: new Error('prefill response too large') });
            return;
          }
          parts.push(d);
        },
        onEnd: () =>
          settle({
            kind: 'response',
            head: head!,
            body: parts.length === 1 ? parts[0]! : Buffer.concat(parts, bytes),
          }),
        onError: (err) => settle({ kind: 'error', err }),
      };
      const method = this.req.method;
      const reqHead = renderRequestHead(
        method,
        this.req.target,
        this.target.hostPort,
        this.prefillHeaderLines,
        body.length,
      );
      const call = pool.request(method, reqHead, body, handler);
      if (!settled) this.prefillCall = call;
    });
  }

  /** Null after the pause; the outcome that cut it short otherwise. */
  private sleep(ms: number): Promise<Outcome | null> {
    if (this.clientGone) return Promise.resolve(CANCELLED);
    if (this.timedOut) return Promise.resolve(TIMEOUT);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wake = null;
        resolve(null);
      }, ms);
      this.wake = (o) => {
        clearTimeout(t);
        this.wake = null;
        resolve(o);
      };
    });
  }

  private stopPrefill(o: Outcome): void {
    this.prefillCall?.abort();
    this.prefillCall = null;
    this.wake?.(o);
  }

  private clearDeadline(): void {
    if (this.deadline !== null) clearTimeout(this.deadline);
    this.deadline = null;
  }

  private prefilled(out: Outcome, prefillBody: Buffer): void {
    this.clearDeadline();
    if (out.kind === 'cancelled' || this.clientGone) return;
    if (out.kind !== 'response') return this.failed(out);
    const status = out.head.status;
    if (status >= 500) return this.failed(out);
    if (status < 200 || status >= 300) {
      // The request itself is at fault (or redirected): the prefiller's answer is the client's.
      this.warn('prefill refused, relaying its answer', { status });
      return this.relayPrefill(out);
    }
    let answer: JsonObject;
    try {
      answer = scanObject(out.body);
    } catch (err) {
      if (!(err instanceof JsonPatchError)) throw err;
      return this.failed(out, `answered ${status} with a body that is not a JSON object (${err.message})`);
    }
    const field = cachedTokensField(this.pd.api);
    const rewrite: CachedTokensRewrite | null =
      field === null ? null : { detailsField: field, cached: cachedTokensOf(answer) };
    this.ctx.logger.debug(
      {
        request_id: this.requestId,
        prefiller: this.target.hostPort,
        prefill_ms: Math.round(performance.now() - this.started),
      },
      'prefill done',
    );
    this.startDecode(this.ctx.connector.decodeBody(this.pd, answer, prefillBody, this.warn), rewrite);
  }

  /** The prefill failed for the prefiller's reasons: fall back to a local decode, or report it. */
  private failed(out: Outcome, invalid?: string): void {
    const o = this.ctx.options;
    if (o.prefillFailurePolicy === 'fallback') {
      this.warnFailed(out, 'decoding locally', invalid);
      this.startDecode(this.req.body, null);
      return;
    }
    this.warnFailed(out, 'relaying the failure', invalid);
    const where = `Prefill at ${this.target.hostPort}`;
    let e: LlmdError;
    if (invalid !== undefined) e = new BadGatewayError(`${where} ${invalid}.`);
    else if (out.kind === 'timeout')
      e = new UpstreamTimeoutError(`${where} did not complete within ${o.prefillTimeoutMs} ms.`);
    else if (out.kind === 'error') e = new BadGatewayError(`${where} failed: ${out.err.message}.`);
    else if (out.kind === 'response') return this.relayPrefill(out);
    else return;
    sendError(this.res, e);
  }

  private warnFailed(out: Outcome, then: string, invalid?: string): void {
    const fields: Record<string, unknown> = { policy: this.ctx.options.prefillFailurePolicy };
    if (invalid !== undefined) fields.reason = invalid;
    else if (out.kind === 'timeout')
      fields.reason = `timed out after ${this.ctx.options.prefillTimeoutMs} ms`;
    else if (out.kind === 'error') fields.reason = out.err.message;
    else if (out.kind === 'response') fields.status = out.head.status;
    else return;
    this.warn(`prefill failed, ${then}`, fields);
  }

  private relayPrefill(out: Extract<Outcome, { kind: 'response' }>): void {
    this.res.send(out.head.status, responseHeaderLines(out.head), out.body);
  }

  private startDecode(body: Buffer, rewrite: CachedTokensRewrite | null): void {
    if (this.clientGone) return;
    this.decode = proxyToDecoder(
      this.ctx,
      this.req,
      this.res,
      body,
      this.headerLines,
      rewrite,
      this.requestId,
    );
  }
}

/** The prefiller's own prefix-cache hits (`usage.prompt_tokens_details.cached_tokens`; 0 when absent). */
function cachedTokensOf(answer: JsonObject): number {
  try {
    const usage = answer.object('usage');
    const details = usage?.object('prompt_tokens_details') ?? usage?.object('input_tokens_details');
    const n = details?.value('cached_tokens');
    return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : 0;
  } catch {
    return 0;
  }
}
