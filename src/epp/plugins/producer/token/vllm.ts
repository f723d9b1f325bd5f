/**
 * The `vllm` tokenizer backend (upstream `tokenizer/vllm_http.go`): the real token ids from a render
 * server — vLLM's `POST /v1/completions/render` and `/v1/chat/completions/render`, which `llmd serve`
 * implements too. The request body goes as the client sent it (with the routed model when it was
 * rewritten), under a timeout. Only completions and chats have a render route; other shapes, and any
 * failure, give null so that the caller estimates instead.
 */
import { Agent, request } from 'undici';
import type { TokenizedRequest } from '../../../framework/data-keys.js';
import type { Endpoint } from '../../../framework/endpoint.js';
import type { InferenceRequest } from '../../../framework/request.js';
import { fromPrompts } from './estimate.js';

export const BACKEND_VLLM = 'vllm';

export interface VllmRenderOptions {
  /** Base URL of the render server; undefined = the first candidate endpoint. */
  readonly url: string | undefined;
  readonly timeoutMs: number;
  /** The model to render with when the request names none. */
  readonly modelName: string | undefined;
}

export class VllmRenderClient {
  private readonly agent = new Agent({ keepAliveTimeout: 30_000, connections: 16 });
  private readonly baseUrl: string | undefined;

  constructor(private readonly opts: VllmRenderOptions) {
    this.baseUrl = opts.url?.replace(/\/+$/, '');
  }

  /** Where a request would be rendered, or null when there is nowhere to send it. */
  urlFor(req: InferenceRequest, endpoints: readonly Endpoint[]): string | null {
    const route =
      req.body.kind === 'completions' || req.body.kind === 'completions-render'
        ? '/v1/completions/render'
        : req.body.kind === 'chat-completions' || req.body.kind === 'chat-completions-render'
          ? '/v1/chat/completions/render'
          : null;
    if (route === null) return null;
    const base = this.baseUrl ?? (endpoints[0] ? `http://${endpoints[0].meta.hostPort}` : undefined);
    return base === undefined ? null : base + route;
  }

  /** Rejects on any failure (network, timeout, status, response shape); null = no render route. */
  async tokenize(req: InferenceRequest, endpoints: readonly Endpoint[]): Promise<TokenizedRequest | null> {
    const url = this.urlFor(req, endpoints);
    if (url === null || req.body.json === null) return null;
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    const auth = req.headers.authorization;
    if (auth !== undefined) headers.authorization = auth;
    const res = await request(url, {
      method: 'POST',
      headers,
      body: this.bodyFor(req),
      dispatcher: this.agent,
      signal: AbortSignal.timeout(this.opts.timeoutMs),
      headersTimeout: this.opts.timeoutMs,
      bodyTimeout: this.opts.timeoutMs,
    });
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new Error(`render returned HTTP ${res.statusCode}`);
    }
    return fromPrompts(parseRender(await res.body.json()), BACKEND_VLLM);
  }

  close(): Promise<void> {
    return this.agent.close();
  }

  private bodyFor(req: InferenceRequest): string | Buffer {
    const json = req.body.json!;
    const model = req.targetModel || this.opts.modelName;
    if (model === undefined || json.model === model) return req.body.raw;
    return JSON.stringify({ ...json, model });
  }
}

/** Completions render answers a list (one entry per prompt), chat render one object. */
function parseRender(body: unknown): Uint32Array[] {
  const entries = Array.isArray(body) ? (body as unknown[]) : [body];
  return entries.map((e) => {
    const ids = typeof e === 'object' && e !== null ? (e as { token_ids?: unknown }).token_ids : undefined;
    if (!Array.isArray(ids) || !ids.every((x) => Number.isInteger(x) && x >= 0 && x <= 0xffffffff)) {
      throw new Error('render response has no token_ids');
    }
    return Uint32Array.from(ids as number[]);
  });
}
