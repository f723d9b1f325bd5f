/**
 * `token-producer` (legacy type `tokenizer`): the request's prompt as token ids, the
 * `TokenizedRequest` that prefix-cache routing, P/D deciders and load estimates consume. Backends:
 * `estimate` (default; bytes as pseudo-tokens, no tokenizer), `local` (the model server's tokenizer
 * and chat template in process) and `vllm` (a render server's real ids). `local` and `vllm` estimate
 * whatever they cannot tokenize, and `vllm` also when the render server fails or is slow, so a
 * request always gets a TokenizedRequest. A request that already has one keeps it.
 */
import { z } from 'zod';
import { TOKENIZED_REQUEST, type TokenizedRequest } from '../../framework/data-keys.js';
import type { Endpoint } from '../../framework/endpoint.js';
import { definePlugin, type PluginHandle, type TypedName } from '../../framework/plugin.js';
import type { InferenceRequest } from '../../framework/request.js';
import type { DataProducer } from '../../framework/requestcontrol.js';
import { parseDuration } from '../../../core/duration.js';
import type { Logger } from '../../../core/log.js';
import { estimateTokens } from './token/estimate.js';
import { LocalTokenizer } from './token/local.js';
import { VllmRenderClient } from './token/vllm.js';

export const TYPE = 'token-producer';
export const LEGACY_TYPE = 'tokenizer';

/** Upstream's `vllm.timeout`. */
const DEFAULT_RENDER_TIMEOUT_MS = 5000;
/** The framework's default for producers, as upstream. */
const DEFAULT_PRODUCE_TIMEOUT_MS = 400;
/** Covers the one-time tokenizer load on the first request. */
const DEFAULT_LOCAL_PRODUCE_TIMEOUT_MS = 5000;
/** The render call's own timeout must fire first, so that the request is estimated rather than dropped. */
const RENDER_FALLBACK_MARGIN_MS = 100;

/** A Go duration (`5s`, `500ms`, `1m30s`) or milliseconds; more than zero. */
const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    const ms = parseDuration(v, 'vllm.timeout');
    if (ms > 0) return Math.ceil(ms);
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'must be more than zero' });
  } catch (err) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: (err as Error).message });
  }
  return z.NEVER;
});

/** As upstream, `vllm` settings or a `modelName` select the vllm backend when none is named. */
function backendOf(p: { backend?: Backend; vllm?: object; modelName?: string }): Backend {
  return p.backend ?? (p.vllm !== undefined || p.modelName !== undefined ? 'vllm' : 'estimate');
}

type Backend = 'estimate' | 'local' | 'vllm';

export const params = z
  .object({
    backend: z.enum(['estimate', 'local', 'vllm']).optional(),
    /** `vllm`: the model to render with when a request names none. */
    modelName: z.string().min(1).optional(),
    /** `local`: a tokenizer directory or tokenizer.json; default the embedded Qwen3 tokenizer. */
    tokenizer: z.string().min(1).optional(),
    /** `vllm`: base URL of the render server; default the first candidate endpoint. */
    url: z.string().url().optional(),
    timeoutMs: z.number().int().positive().optional(),
    /** Upstream's form of the two above. */
    vllm: z.object({ url: z.string().url().optional(), timeout: duration.optional() }).strict().optional(),
    produceTimeoutMs: z.number().int().positive().optional(),
  })
  .strict()
  .superRefine((p, ctx) => {
    const backend = backendOf(p);
    const issue = (path: string, message: string): void =>
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: [path], message });
    if (p.tokenizer !== undefined && backend !== 'local') issue('tokenizer', 'applies to backend local only');
    for (const k of ['modelName', 'url', 'timeoutMs', 'vllm'] as const) {
      if (p[k] !== undefined && backend !== 'vllm') issue(k, 'applies to backend vllm only');
    }
    if (p.url !== undefined && p.vllm?.url !== undefined) issue('url', 'set either url or vllm.url');
    if (p.timeoutMs !== undefined && p.vllm?.timeout !== undefined) {
      issue('timeoutMs', 'set either timeoutMs or vllm.timeout');
    }
  })
  .transform((p) => {
    const backend = backendOf(p);
    const timeoutMs = p.timeoutMs ?? p.vllm?.timeout ?? DEFAULT_RENDER_TIMEOUT_MS;
    const defaultProduce =
      backend === 'vllm'
        ? timeoutMs + RENDER_FALLBACK_MARGIN_MS
        : backend === 'local'
          ? DEFAULT_LOCAL_PRODUCE_TIMEOUT_MS
          : DEFAULT_PRODUCE_TIMEOUT_MS;
    return {
      backend,
      modelName: p.modelName,
      tokenizer: p.tokenizer,
      url: p.url ?? p.vllm?.url,
      timeoutMs,
      produceTimeoutMs: p.produceTimeoutMs ?? defaultProduce,
    };
  });

export type TokenProducerParams = z.output<typeof params>;

export const definition = definePlugin({
  type: TYPE,
  aliases: [LEGACY_TYPE],
  params,
  create: (name, p, handle) => new TokenProducer(name, p, handle),
});

export class TokenProducer implements DataProducer {
  readonly typedName: TypedName;
  readonly produces = [TOKENIZED_REQUEST];
  readonly produceTimeoutMs: number;
  readonly backend: TokenProducerParams['backend'];
  private readonly logger: Logger;
  private readonly local: LocalTokenizer | null;
  private readonly render: VllmRenderClient | null;

  constructor(name: string, p: TokenProducerParams, handle: PluginHandle) {
    this.typedName = { type: TYPE, name };
    this.backend = p.backend;
    this.produceTimeoutMs = p.produceTimeoutMs;
    this.logger = handle.logger.child({ plugin: name });
    this.local = p.backend === 'local' ? new LocalTokenizer(p.tokenizer) : null;
    this.render =
      p.backend === 'vllm'
        ? new VllmRenderClient({ url: p.url, timeoutMs: p.timeoutMs, modelName: p.modelName })
        : null;
  }

  /** The tokenizer starts loading with the configuration, not with the first request. */
  init(): void {
    this.local?.load().catch((err: unknown) => {
      this.logger.error({ err }, 'cannot load the tokenizer; requests will be estimated');
    });
  }

  produce(req: InferenceRequest, endpoints: readonly Endpoint[]): void | Promise<void> {
    if (req.state.has(TOKENIZED_REQUEST)) return;
    if (this.local !== null) return this.produceWith(req, this.local.tokenize(req.body));
    if (this.render !== null) return this.produceWith(req, this.render.tokenize(req, endpoints));
    req.state.write(TOKENIZED_REQUEST, estimateTokens(req.body));
  }

  async close(): Promise<void> {
    await this.render?.close();
  }

  private async produceWith(req: InferenceRequest, pending: Promise<TokenizedRequest | null>): Promise<void> {
    let result: TokenizedRequest | null = null;
    try {
      result = await pending;
    } catch (err) {
      this.logger.debug(
        { err, request_id: req.requestId },
        `${this.backend} tokenization failed; estimating`,
      );
    }
    req.state.write(TOKENIZED_REQUEST, result ?? estimateTokens(req.body));
  }
}
