/**
 * `llmd kv-indexer`'s HTTP API (llm-d's online example, extended so an EPP can use it remotely):
 *
 *   POST /score_completions       {prompt, model?, cache_salt?}                  → {"<server>": score}
 *   POST /score_chat_completions  {messages, model?, tools?, chat_template?, …}  → {"<server>": score}
 *   POST /score_tokens            {tokens, model?, cache_salt?, pods?}           → {"<server>": score}
 *   POST /speculative             {tokens, model?, cache_salt?, pod}            → 204 (speculative entries)
 *   GET  /metrics  ·  GET /health  ·  GET /debug/index (request keys held per server)
 *
 * A score is the tier-weighted count of leading prompt blocks the server holds (gpu 1, cpu 0.8).
 * `?detail=true` answers `{"<server>": {"score", "blocks"}}` instead. Prompts are tokenized with the
 * model server's tokenizer and chat template (embedded Qwen3 by default), as vLLM renders them.
 * Errors are vLLM's JSON; nothing a client sends can crash the service.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { z } from 'zod';
import {
  BadRequestError,
  LlmdError,
  MethodNotAllowedError,
  PayloadTooLargeError,
  RouteNotFoundError,
  asLlmdError,
  toErrorBody,
} from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { ChatMessage } from '../engine/tokenizer/chat-template.js';
import type { PrefixScore } from './index/index.js';
import type { KvCacheIndexer } from './indexer.js';
import type { LookupCounters, LookupLatency } from './metrics.js';

export const MAX_BODY_BYTES = 16 * 1024 * 1024;

const tokenIds = z.array(z.number().int().min(0).max(0xffffffff)).max(1 << 21);
const salt = z.string().max(4096).nullish();
const model = z.string().min(1).max(512).optional();

const ScoreTokensSchema = z.object({
  tokens: tokenIds,
  model,
  cache_salt: salt,
  pods: z.array(z.string().min(1)).max(10_000).optional(),
});
const ScoreCompletionsSchema = z.object({
  prompt: z.union([z.string().max(MAX_BODY_BYTES), tokenIds]),
  model,
  cache_salt: salt,
  add_special_tokens: z.boolean().optional(),
  pods: z.array(z.string().min(1)).max(10_000).optional(),
});
const ScoreChatSchema = z.object({
  messages: z.array(z.record(z.unknown())).min(1).max(10_000),
  model,
  cache_salt: salt,
  tools: z.array(z.unknown()).optional(),
  chat_template: z.string().optional(),
  chat_template_kwargs: z.record(z.unknown()).optional(),
  add_generation_prompt: z.boolean().optional(),
  continue_final_message: z.boolean().optional(),
  add_special_tokens: z.boolean().optional(),
  pods: z.array(z.string().min(1)).max(10_000).optional(),
});
const SpeculativeSchema = z.object({
  tokens: tokenIds,
  model,
  cache_salt: salt,
  pod: z.string().min(1).max(512),
});

/** The tokenizer the service renders prompts with. */
export interface PromptTokenizer {
  encode(text: string, opts: { addSpecialTokens: boolean }): number[];
  renderChat(options: {
    messages: ChatMessage[];
    tools?: unknown[];
    addGenerationPrompt: boolean;
    continueFinalMessage: boolean;
    chatTemplate?: string;
    chatTemplateKwargs?: Record<string, unknown>;
  }): string;
}

export interface KvIndexerServiceOptions {
  readonly indexer: KvCacheIndexer;
  /** Loaded on first use. */
  readonly tokenizer: () => Promise<PromptTokenizer>;
  /** The model of requests that name none. */
  readonly defaultModel: string;
  readonly registry: Registry;
  readonly lookups: LookupCounters;
  readonly latency: LookupLatency;
  readonly logger: Logger;
}

export class KvIndexerService {
  readonly server: Server;

  constructor(private readonly o: KvIndexerServiceOptions) {
    this.server = createServer((req, res) => {
      this.route(req, res).catch((err: unknown) => this.sendError(res, err));
    });
    this.server.keepAliveTimeout = 65_000;
  }

  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve((this.server.address() as AddressInfo).port);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const method = req.method ?? 'GET';
    const detail = url.searchParams.get('detail') === 'true';
    switch (url.pathname) {
      case '/score_tokens': {
        const b = ScoreTokensSchema.parse(await this.json(req, method, url.pathname));
        return this.answer(res, await this.score(b.tokens, b.model, b.cache_salt, b.pods), detail);
      }
      case '/score_completions': {
        const b = ScoreCompletionsSchema.parse(await this.json(req, method, url.pathname));
        let tokens: readonly number[];
        if (typeof b.prompt === 'string') {
          const tk = await this.o.tokenizer();
          tokens = tk.encode(b.prompt, { addSpecialTokens: b.add_special_tokens ?? true });
        } else tokens = b.prompt;
        return this.answer(res, await this.score(tokens, b.model, b.cache_salt, b.pods), detail);
      }
      case '/score_chat_completions': {
        const b = ScoreChatSchema.parse(await this.json(req, method, url.pathname));
        const tk = await this.o.tokenizer();
        let text: string;
        try {
          text = tk.renderChat({
            messages: b.messages as unknown as ChatMessage[],
            tools: b.tools,
            addGenerationPrompt: b.add_generation_prompt ?? true,
            continueFinalMessage: b.continue_final_message ?? false,
            chatTemplate: b.chat_template,
            chatTemplateKwargs: b.chat_template_kwargs,
          });
        } catch (err) {
          if (err instanceof LlmdError) throw err;
          throw new BadRequestError(
            `The chat template could not be rendered: ${(err as Error).message}`,
            'messages',
          );
        }
        const tokens = tk.encode(text, { addSpecialTokens: b.add_special_tokens ?? false });
        return this.answer(res, await this.score(tokens, b.model, b.cache_salt, b.pods), detail);
      }
      case '/speculative': {
        const b = SpeculativeSchema.parse(await this.json(req, method, url.pathname));
        const spec = this.o.indexer.speculative;
        if (spec !== null)
          spec.add(this.o.indexer.requestKeys(b.tokens, b.model ?? this.o.defaultModel, b.cache_salt), b.pod);
        res.writeHead(204);
        res.end();
        return;
      }
      case '/health':
        this.get(method, url.pathname);
        return send(res, 200, { status: 'ok' });
      case '/metrics': {
        this.get(method, url.pathname);
        const text = await this.o.registry.metrics();
        res.writeHead(200, { 'content-type': this.o.registry.contentType });
        res.end(text);
        return;
      }
      case '/debug/index': {
        this.get(method, url.pathname);
        const index = this.o.indexer.index;
        const servers =
          index.countKeysByPod === undefined ? null : Object.fromEntries(await index.countKeysByPod());
        return send(res, 200, { backend: index.backend, servers });
      }
      default:
        throw new RouteNotFoundError(method, url.pathname);
    }
  }

  private async score(
    tokens: readonly number[],
    modelName: string | undefined,
    cacheSalt: string | null | undefined,
    pods: readonly string[] | undefined,
  ): Promise<Map<string, PrefixScore>> {
    const t0 = performance.now();
    const ix = this.o.indexer;
    const l = this.o.lookups;
    try {
      const scores = await ix.scoreTokens(tokens, modelName ?? this.o.defaultModel, {
        cacheSalt,
        pods: pods === undefined ? undefined : new Set(pods),
      });
      l.lookups++;
      let best = 0;
      for (const s of scores.values()) if (s.blocks > best) best = s.blocks;
      l.bestPrefixBlocks += best;
      return scores;
    } catch (err) {
      l.failures++;
      throw err;
    } finally {
      this.o.latency.observe((performance.now() - t0) / 1000);
    }
  }

  private answer(res: ServerResponse, scores: Map<string, PrefixScore>, detail: boolean): void {
    const out: Record<string, number | PrefixScore> = {};
    for (const [pod, s] of scores) out[pod] = detail ? s : s.score;
    send(res, 200, out);
  }

  private get(method: string, path: string): void {
    if (method !== 'GET' && method !== 'HEAD') throw new MethodNotAllowedError(method, path);
  }

  private async json(req: IncomingMessage, method: string, path: string): Promise<unknown> {
    if (method !== 'POST') throw new MethodNotAllowedError(method, path);
    const raw = await readBody(req, MAX_BODY_BYTES);
    try {
      return JSON.parse(raw.toString('utf8'));
    } catch {
      throw new BadRequestError('Request body is not valid JSON.');
    }
  }

  private sendError(res: ServerResponse, err: unknown): void {
    let e: LlmdError;
    if (err instanceof z.ZodError) {
      const issue = err.issues[0]!;
      const field = issue.path.join('.');
      e = new BadRequestError(
        `${field === '' ? 'body' : field}: ${issue.message}`,
        field === '' ? null : field,
      );
    } else {
      e = asLlmdError(err);
      if (!(err instanceof LlmdError))
        this.o.logger.error({ err }, 'unexpected error while handling a request');
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const body = toErrorBody(e);
    const headers: Record<string, string | number> = {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
    };
    if (e.status === 413) headers.connection = 'close';
    res.writeHead(e.status, headers);
    res.end(body);
  }
}

function send(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** A request body up to `limit` bytes; a larger one is refused without reading the rest. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      req.resume();
      reject(new PayloadTooLargeError(limit));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.destroy();
        reject(new PayloadTooLargeError(limit));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks, size)));
    req.on('error', reject);
  });
}
