/**
 * The HTTP face of `llmd serve`: vLLM's OpenAI-compatible routes over `node:http`. It validates and
 * tokenizes requests, hands sequences to the engine, and routes each step's tokens to the exchanges
 * that own them. Every failure becomes a typed error rendered once, in `sendError`.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  ChatCompletionRequestSchema,
  CompletionRequestSchema,
  DetokenizeRequestSchema,
  TokenizeRequestSchema,
  parseBody,
  type ChatCompletionRequest,
  type ChatMessage,
  type CompletionRequest,
} from '../api/openai.js';
import {
  BadRequestError,
  ContextLengthError,
  KvTransferFailedError,
  LlmdError,
  MethodNotAllowedError,
  ModelNotFoundError,
  PayloadTooLargeError,
  PrefixCacheBusyError,
  QueueFullError,
  RouteNotFoundError,
  asLlmdError,
  toErrorBody,
} from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { EngineCore } from './core/engine-core.js';
import type { StepResult } from './core/types.js';
import type { DriverSink, RealtimeDriver } from './driver.js';
import { Exchange, Sequence, type ExchangeKind } from './exchange.js';
import { TransferError } from './kv-transfer/client.js';
import type { NixlConnector, RemoteBlocks, TransferRole } from './kv-transfer/connector.js';
import type { EngineMetrics } from './metrics.js';
import type { ServeOptions } from './options.js';
import { OutputTextStream, type OutputGenerator } from './output/index.js';
import { renderChat, type ChatRenderOptions } from './tokenizer/chat-template.js';
import type { LlmdTokenizer } from './tokenizer/tokenizer.js';

/** vLLM's default `max_tokens` for /v1/completions. */
const COMPLETION_DEFAULT_MAX_TOKENS = 16;

const NO_TRANSFER: TransferRole = { kind: 'none' };

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

export interface EngineServerContext {
  options: ServeOptions;
  /** Served model names; the first is the one reported in responses. */
  modelNames: readonly string[];
  maxModelLen: number;
  numGpuBlocks: number;
  core: EngineCore;
  driver: RealtimeDriver;
  tokenizer: LlmdTokenizer;
  output: OutputGenerator;
  metrics: EngineMetrics;
  logger: Logger;
  version: string;
  /** Called after `POST /reset_prefix_cache` cleared the cache (the KV-event publisher flushes). */
  onPrefixCacheReset?: () => void;
  /** P/D over the NixlConnector protocol, when `--kv-transfer-config` asks for it. */
  connector: NixlConnector | null;
}

interface PromptInput {
  ids: number[];
  /** Prompt text when the client sent text (for `echo`), else decoded lazily. */
  text: string | null;
}

interface SamplingInput {
  n: number;
  maxTokens: number | null;
  minTokens: number;
  ignoreEos: boolean;
  seed: number | null;
  temperature: number;
  stop: string[] | null;
  stopTokenIds: number[] | null;
  includeStopStr: boolean;
  skipSpecialTokens: boolean;
  cacheSalt: string | undefined;
  stream: boolean;
  includeUsage: boolean;
  continuousUsage: boolean;
}

export class EngineServer implements DriverSink {
  private readonly owners = new Map<string, { seq: Sequence; ex: Exchange }>();
  private readonly modelSet: ReadonlySet<string>;
  private readonly created = Math.floor(Date.now() / 1000);
  private closing = false;

  constructor(private readonly ctx: EngineServerContext) {
    this.modelSet = new Set(ctx.modelNames);
  }

  /** Stop accepting generation requests (shutdown in progress). */
  drain(): void {
    this.closing = true;
  }

  get inFlight(): number {
    return this.owners.size;
  }

  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    this.route(req, res).catch((err: unknown) => this.sendError(res, err));
  };

  onStep(result: StepResult, since: number): void {
    const m = this.ctx.metrics;
    const clock = this.ctx.driver.clock;
    const end = result.endTime;
    if (result.numScheduledTokens > 0) m.observeStep(result.numScheduledTokens);
    const outputs = result.outputs;
    for (let i = 0; i < outputs.length; i++) {
      const out = outputs[i]!;
      const owner = this.owners.get(out.requestId);
      if (owner === undefined) continue;
      try {
        owner.ex.onOutput(owner.seq, out, end);
      } catch (err) {
        // One broken exchange must not stop the step's other deliveries.
        this.ctx.logger.error({ err, request_id: owner.ex.opts.id }, 'failed to deliver tokens');
        owner.ex.cancel();
      }
      // The delay this process added to this output: due → handed to the client's socket.
      m.observeDeliveryLag(clock() - since);
    }
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const method = req.method ?? 'GET';
    switch (path) {
      case '/v1/completions':
        return this.post(req, res, method, path, (b) => this.completions(req, res, b));
      case '/v1/chat/completions':
        return this.post(req, res, method, path, (b) => this.chat(req, res, b));
      case '/v1/completions/render':
        return this.post(req, res, method, path, (b) => this.renderCompletion(req, res, b));
      case '/v1/chat/completions/render':
        return this.post(req, res, method, path, (b) => this.renderChatCompletion(req, res, b));
      case '/tokenize':
        return this.post(req, res, method, path, (b) => this.tokenize(res, b));
      case '/detokenize':
        return this.post(req, res, method, path, (b) => this.detokenize(res, b));
      case '/health':
        this.get(method, path);
        res.writeHead(200, { 'content-length': '0' });
        res.end();
        return;
      case '/version':
        this.get(method, path);
        return sendJson(res, 200, { version: this.ctx.version });
      case '/v1/models':
        this.get(method, path);
        return sendJson(res, 200, this.models());
      case '/reset_prefix_cache':
        return this.resetPrefixCache(method, path, res);
      case '/debug/kv_cache':
        this.get(method, path);
        return this.debugKvCache(res);
      case '/debug/kv_cache/prefix':
        return this.post(req, res, method, path, (b) => this.debugCachedPrefix(res, b));
      case '/metrics': {
        this.get(method, path);
        const text = await this.ctx.metrics.render();
        res.writeHead(200, { 'content-type': this.ctx.metrics.contentType });
        res.end(text);
        return;
      }
      default:
        throw new RouteNotFoundError(method, path);
    }
  }

  private get(method: string, path: string): void {
    if (method !== 'GET' && method !== 'HEAD') throw new MethodNotAllowedError(method, path);
  }

  /** vLLM's dev route: forget every cached block; refused (409, as vLLM) while requests hold blocks. */
  private resetPrefixCache(method: string, path: string, res: ServerResponse): void {
    if (method !== 'POST') throw new MethodNotAllowedError(method, path);
    if (!this.ctx.core.resetPrefixCache()) throw new PrefixCacheBusyError();
    this.ctx.onPrefixCacheReset?.();
    res.writeHead(200, { 'content-length': '0' });
    res.end();
  }

  private async post(
    req: IncomingMessage,
    res: ServerResponse,
    method: string,
    path: string,
    handler: (body: unknown) => void | Promise<void>,
  ): Promise<void> {
    if (method !== 'POST') throw new MethodNotAllowedError(method, path);
    const raw = await readBody(req, this.ctx.options.maxRequestBodyBytes);
    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      throw new BadRequestError('Request body is not valid JSON.');
    }
    await handler(body);
    void res;
  }

  private sendError(res: ServerResponse, err: unknown): void {
    const e = asLlmdError(err);
    if (!(err instanceof LlmdError))
      this.ctx.logger.error({ err }, 'unexpected error while handling a request');
    else this.ctx.logger.debug({ code: e.code, msg: e.message }, 'request rejected');
    if (res.headersSent) {
      res.end();
      return;
    }
    const body = toErrorBody(e);
    const headers: Record<string, string | number> = {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
    };
    // The rest of an oversized body is not read: the connection cannot be reused.
    if (e.status === 413) headers.connection = 'close';
    res.writeHead(e.status, headers);
    res.end(body);
  }

  private resolveModel(model: string | null | undefined): string {
    if (model === null || model === undefined) return this.ctx.modelNames[0]!;
    if (!this.modelSet.has(model)) throw new ModelNotFoundError(model);
    return model;
  }

  private models(): Record<string, unknown> {
    return {
      object: 'list',
      data: this.ctx.modelNames.map((id) => ({
        id,
        object: 'model',
        created: this.created,
        owned_by: 'vllm',
        root: this.ctx.options.model,
        parent: null,
        max_model_len: this.ctx.maxModelLen,
        permission: [],
      })),
    };
  }

  // ---- generation -------------------------------------------------------------------------------

  private completions(req: IncomingMessage, res: ServerResponse, raw: unknown): Promise<void> {
    const body = parseBody(CompletionRequestSchema, raw);
    const model = this.resolveModel(body.model);
    const prompts = this.completionPrompts(body);
    const sampling = samplingOf(body, body.max_tokens ?? COMPLETION_DEFAULT_MAX_TOKENS);
    const echo = body.echo === true;
    return this.start(
      req,
      res,
      'completion',
      model,
      prompts,
      sampling,
      (p) => (echo ? (p.text ?? this.ctx.tokenizer.decode(p.ids, { skipSpecialTokens: false })) : ''),
      null,
      body.kv_transfer_params,
    );
  }

  private chat(req: IncomingMessage, res: ServerResponse, raw: unknown): Promise<void> {
    const body = parseBody(ChatCompletionRequestSchema, raw);
    const model = this.resolveModel(body.model);
    const prompt = this.chatPrompt(body);
    const sampling = samplingOf(body, body.max_completion_tokens ?? body.max_tokens ?? null);
    const echoIds = this.ctx.options.mode === 'echo' ? this.lastMessageIds(body.messages) : null;
    return this.start(
      req,
      res,
      'chat',
      model,
      [prompt],
      sampling,
      () => '',
      echoIds,
      body.kv_transfer_params,
    );
  }

  private completionPrompts(body: CompletionRequest): PromptInput[] {
    const addSpecial = body.add_special_tokens ?? true;
    const p = body.prompt;
    const tk = this.ctx.tokenizer;
    if (typeof p === 'string') return [{ ids: tk.encode(p, { addSpecialTokens: addSpecial }), text: p }];
    if (p.length > 0 && typeof p[0] === 'number')
      return [{ ids: this.checkIds(p as number[], 'prompt'), text: null }];
    const out: PromptInput[] = [];
    const items = p as (string | number[])[];
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      if (typeof item === 'string')
        out.push({ ids: tk.encode(item, { addSpecialTokens: addSpecial }), text: item });
      else out.push({ ids: this.checkIds(item, `prompt[${i}]`), text: null });
    }
    return out;
  }

  /** Token-id prompts skip the tokenizer, so their ids are checked against the vocabulary here. */
  private checkIds(ids: number[], param: string): number[] {
    const max = this.ctx.tokenizer.maxTokenId;
    for (let i = 0; i < ids.length; i++) {
      if (ids[i]! > max)
        throw new BadRequestError(`Token id ${ids[i]} is out of vocabulary (max ${max}).`, param);
    }
    return ids.slice();
  }

  private chatInput(body: {
    messages: ChatMessage[];
    add_generation_prompt?: boolean | null;
    continue_final_message?: boolean | null;
    chat_template?: string | null;
    chat_template_kwargs?: Record<string, unknown> | null;
    tools?: Record<string, unknown>[] | null;
  }): ChatRenderOptions {
    return {
      messages: body.messages,
      addGenerationPrompt: body.add_generation_prompt ?? true,
      continueFinalMessage: body.continue_final_message ?? false,
      chatTemplate: body.chat_template ?? undefined,
      chatTemplateKwargs: body.chat_template_kwargs ?? undefined,
      tools: body.tools ?? undefined,
    };
  }

  private chatPrompt(body: ChatCompletionRequest): PromptInput {
    const text = renderChat(this.ctx.tokenizer, this.chatInput(body));
    return {
      ids: this.ctx.tokenizer.encode(text, { addSpecialTokens: body.add_special_tokens ?? false }),
      text,
    };
  }

  private lastMessageIds(messages: ChatMessage[]): number[] {
    const last = messages[messages.length - 1]!;
    const c = last.content;
    let text = '';
    if (typeof c === 'string') text = c;
    else if (Array.isArray(c)) for (const part of c) if (part.type === 'text' && part.text) text += part.text;
    return this.ctx.tokenizer.encode(text, { addSpecialTokens: false });
  }

  /** Validate lengths and capacity, then hand every (prompt × n) sequence to the engine. */
  private async start(
    req: IncomingMessage,
    res: ServerResponse,
    kind: ExchangeKind,
    model: string,
    prompts: PromptInput[],
    s: SamplingInput,
    echoTextOf: (p: PromptInput) => string,
    echoIds: number[] | null,
    kvTransferParams: Record<string, unknown> | null | undefined,
  ): Promise<void> {
    const c = this.ctx;
    if (this.closing) throw new QueueFullError(0);
    const maxLen = c.maxModelLen;
    const bs = c.options.blockSize;
    const maxTokensOf: number[] = [];
    for (const p of prompts) {
      const len = p.ids.length;
      if (len === 0)
        throw new BadRequestError('The prompt is empty: it must contain at least one token.', 'prompt');
      if (len >= maxLen) {
        throw new ContextLengthError(
          `This model's maximum context length is ${maxLen} tokens. However, your request has ${len} input tokens. Please reduce the length of the input messages.`,
          kind === 'chat' ? 'messages' : 'prompt',
        );
      }
      const maxTokens = s.maxTokens ?? maxLen - len;
      if (len + maxTokens > maxLen) {
        throw new ContextLengthError(
          `'max_tokens' or 'max_completion_tokens' is too large: ${maxTokens}. This model's maximum context length is ${maxLen} tokens and your request has ${len} input tokens (${maxTokens} > ${maxLen} - ${len}).`,
          kind === 'chat' ? 'max_completion_tokens' : 'max_tokens',
        );
      }
      // Block 0 is vLLM's reserved null block: one fewer is usable.
      if (Math.ceil((len + maxTokens) / bs) > c.numGpuBlocks - 1) {
        throw new ContextLengthError(
          `The request needs ${Math.ceil((len + maxTokens) / bs)} KV-cache blocks but the server has ${c.numGpuBlocks - 1}.`,
          'max_tokens',
        );
      }
      if (s.minTokens > maxTokens) {
        throw new BadRequestError(
          `min_tokens (${s.minTokens}) must be at most max_tokens (${maxTokens}).`,
          'min_tokens',
        );
      }
      maxTokensOf.push(maxTokens);
    }
    const numSeqs = prompts.length * s.n;
    const limit = c.options.maxWaitingQueueLength;
    if (c.core.stats().numWaiting + numSeqs > limit) throw new QueueFullError(limit);

    // P/D: a prefill keeps its blocks for the decoder; a decode first pulls the prompt's KV.
    let transfer = c.connector?.classify(kvTransferParams) ?? NO_TRANSFER;
    if (transfer.kind !== 'none' && (prompts.length !== 1 || s.n !== 1)) {
      transfer = { kind: 'invalid', reason: 'disaggregated serving takes one prompt and n = 1' };
    }
    if (transfer.kind === 'invalid') {
      c.logger.warn(
        { reason: transfer.reason },
        'invalid kv_transfer_params: the prompt is computed locally',
      );
      transfer = NO_TRANSFER;
    }
    // A decode's wait for its KV is part of its time to first token, as in vLLM, where the request
    // waits in the scheduler for the remote blocks.
    const arrival = c.driver.clock();
    let remotePrefilled = false;
    if (transfer.kind === 'decode') {
      remotePrefilled = await this.pullPrompt(req, res, transfer.remote, prompts[0]!.ids, s.cacheSalt);
      if (res.destroyed || res.writableEnded) return;
    }
    const holdBlocks = transfer.kind === 'prefill';

    const headerId = req.headers['x-request-id'];
    const baseId =
      typeof headerId === 'string' && headerId.length > 0 && headerId.length <= 256 ? headerId : hexId();
    const id = (kind === 'chat' ? 'chatcmpl-' : 'cmpl-') + baseId;
    const ex = new Exchange(res, {
      kind,
      id,
      created: Math.floor(Date.now() / 1000),
      model,
      stream: s.stream,
      includeUsage: s.includeUsage,
      continuousUsage: s.continuousUsage,
      streamInterval: c.options.streamInterval,
      promptTokenDetails: c.options.enablePromptTokensDetails,
      promptTokens: prompts.map((p) => p.ids.length),
      metrics: c.metrics,
      transferParams:
        holdBlocks && c.connector !== null
          ? (seq) =>
              seq.heldBlockIds === null ? null : c.connector!.responseParams(seq.engineId, seq.heldBlockIds)
          : null,
      abort: (engineId) => {
        c.core.abortRequest(engineId);
      },
      onDone: (done) => {
        for (const seq of done.sequences) this.owners.delete(seq.engineId);
      },
    });
    const now = arrival;
    for (let pi = 0; pi < prompts.length; pi++) {
      const p = prompts[pi]!;
      const maxTokens = maxTokensOf[pi]!;
      const echoText = echoTextOf(p);
      for (let ci = 0; ci < s.n; ci++) {
        const index = pi * s.n + ci;
        const engineId = `${id}-${index}`;
        const outputTokenIds = c.output.plan({
          promptTokenIds: p.ids,
          maxTokens,
          explicitMaxTokens: s.maxTokens !== null,
          minTokens: s.minTokens,
          ignoreEos: s.ignoreEos,
          seed: s.seed ?? c.options.seed,
          // Greedy sampling gives every choice the same text; otherwise each choice has its own.
          sequenceIndex: s.temperature === 0 ? 0 : ci,
          echoTokenIds: echoIds ?? p.ids,
          stop: s.stop,
          stopTokenIds: s.stopTokenIds,
          includeStopStrInOutput: s.includeStopStr,
          skipSpecialTokens: s.skipSpecialTokens,
        });
        const textStream = new OutputTextStream(c.tokenizer, {
          stop: s.stop,
          stopTokenIds: s.stopTokenIds,
          includeStopStrInOutput: s.includeStopStr,
          minTokens: s.minTokens,
          skipSpecialTokens: s.skipSpecialTokens,
          promptTokenIds: p.ids,
        });
        const seq = new Sequence(engineId, index, pi, p.ids.length, maxTokens, now, textStream, echoText);
        ex.add(seq);
        this.owners.set(engineId, { seq, ex });
        c.core.addRequest({
          requestId: engineId,
          promptTokenIds: p.ids,
          outputTokenIds,
          maxTokens,
          arrivalTime: now,
          cacheSalt: s.cacheSalt,
          holdBlocksOnFinish: holdBlocks,
          remotePrefilled,
        });
      }
    }
    c.metrics.observeRequest(s.n);
    res.on('close', () => {
      if (!ex.finished) ex.cancel();
      else if (holdBlocks && !res.writableFinished) {
        // The prefill finished but its kv_transfer_params never reached the client: no decoder will
        // come for these blocks, so they need not wait for the abort timeout.
        for (const seq of ex.sequences) if (seq.heldBlockIds !== null) c.core.releaseHeld(seq.engineId);
      }
    });
    ex.begin({ 'x-request-id': baseId });
    c.driver.kick();
  }

  /**
   * Pulls the prompt's KV from the prefiller before the decode starts. Returns whether the engine may
   * treat the prompt as computed; with `kv_load_failure_policy: recompute` a failed pull falls back to
   * computing it here, with `fail` it becomes an error response.
   */
  private async pullPrompt(
    req: IncomingMessage,
    res: ServerResponse,
    remote: RemoteBlocks,
    promptIds: readonly number[],
    cacheSalt: string | undefined,
  ): Promise<boolean> {
    const c = this.ctx;
    const connector = c.connector!;
    const abort = new AbortController();
    const onClose = (): void => abort.abort();
    res.once('close', onClose);
    try {
      const out = await connector.pull(remote, promptIds, { cacheSalt, signal: abort.signal });
      if (out.remainingSimulatedS > 0) await sleep(out.remainingSimulatedS * 1000, abort.signal);
      return true;
    } catch (err) {
      if (abort.signal.aborted) return false;
      const e = err instanceof TransferError ? err : new TransferError('connection', String(err));
      c.logger.warn(
        {
          request_id: req.headers['x-request-id'],
          remote: `${remote.host}:${remote.port}`,
          kind: e.kind,
          err: e.message,
        },
        'KV transfer failed',
      );
      if (connector.settings.failurePolicy === 'recompute') return false;
      throw new KvTransferFailedError(
        `KV transfer from ${remote.host}:${remote.port} failed (${e.kind}): ${e.message}`,
      );
    } finally {
      res.off('close', onClose);
    }
  }

  // ---- tokenizer endpoints ---------------------------------------------------------------------

  private tokenize(res: ServerResponse, raw: unknown): void {
    const body = parseBody(TokenizeRequestSchema, raw);
    this.resolveModel(body.model);
    const tk = this.ctx.tokenizer;
    let ids: number[];
    if ('messages' in body) {
      const text = renderChat(tk, this.chatInput(body));
      ids = tk.encode(text, { addSpecialTokens: body.add_special_tokens ?? false });
    } else {
      ids = tk.encode(body.prompt, { addSpecialTokens: body.add_special_tokens ?? true });
    }
    const strs = body.return_token_strs ? ids.map((i) => tk.decode([i], { skipSpecialTokens: false })) : null;
    sendJson(res, 200, {
      count: ids.length,
      max_model_len: this.ctx.maxModelLen,
      tokens: ids,
      token_strs: strs,
    });
  }

  private detokenize(res: ServerResponse, raw: unknown): void {
    const body = parseBody(DetokenizeRequestSchema, raw);
    this.resolveModel(body.model);
    const ids = this.checkIds(body.tokens, 'tokens');
    sendJson(res, 200, { prompt: this.ctx.tokenizer.decode(ids, { skipSpecialTokens: false }) });
  }

  /** vLLM's render endpoint: the token ids a completion would run on, one entry per prompt. */
  private renderCompletion(req: IncomingMessage, res: ServerResponse, raw: unknown): void {
    const body = parseBody(CompletionRequestSchema, raw);
    const model = body.model ?? this.ctx.modelNames[0]!;
    const prompts = this.completionPrompts(body);
    const id = 'cmpl-' + requestIdOf(req);
    sendJson(
      res,
      200,
      prompts.map((p, i) => ({
        request_id: prompts.length > 1 ? `${id}-${i}` : id,
        token_ids: p.ids,
        sampling_params: { max_tokens: body.max_tokens ?? COMPLETION_DEFAULT_MAX_TOKENS },
        model,
      })),
    );
  }

  /** llmd's debug view of the prefix cache: every cached block's 64-bit hash, as KV events name it. */
  private debugKvCache(res: ServerResponse): void {
    const hashes = this.ctx.core.cachedBlockHashes();
    const list = [...hashes.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).map(String);
    let blocks = 0;
    for (const n of hashes.values()) blocks += n;
    sendJson(res, 200, {
      block_size: this.ctx.options.blockSize,
      num_cached_blocks: blocks,
      block_hashes: list,
    });
  }

  /** How many leading full blocks of a completion request's prompt the prefix cache holds (no side effect). */
  private debugCachedPrefix(res: ServerResponse, raw: unknown): void {
    const body = parseBody(CompletionRequestSchema, raw);
    this.resolveModel(body.model);
    const prompts = this.completionPrompts(body);
    sendJson(
      res,
      200,
      prompts.map((p) => ({
        prompt_tokens: p.ids.length,
        cached_blocks: this.ctx.core.cachedLeadingBlocks(p.ids, { cacheSalt: body.cache_salt ?? undefined }),
      })),
    );
  }

  private renderChatCompletion(req: IncomingMessage, res: ServerResponse, raw: unknown): void {
    const body = parseBody(ChatCompletionRequestSchema, raw);
    const model = body.model ?? this.ctx.modelNames[0]!;
    const prompt = this.chatPrompt(body);
    sendJson(res, 200, {
      request_id: 'chatcmpl-' + requestIdOf(req),
      token_ids: prompt.ids,
      sampling_params: { max_tokens: body.max_completion_tokens ?? body.max_tokens ?? null },
      model,
      features: null,
    });
  }
}

function samplingOf(
  body: CompletionRequest | ChatCompletionRequest,
  maxTokens: number | null,
): SamplingInput {
  const stop =
    body.stop === null || body.stop === undefined
      ? null
      : typeof body.stop === 'string'
        ? [body.stop]
        : body.stop;
  return {
    n: body.n ?? 1,
    maxTokens,
    minTokens: body.min_tokens ?? 0,
    ignoreEos: body.ignore_eos ?? false,
    seed: body.seed ?? null,
    temperature: body.temperature ?? 1,
    stop: stop && stop.length > 0 ? stop.filter((x) => x.length > 0) : null,
    stopTokenIds: body.stop_token_ids ?? null,
    includeStopStr: body.include_stop_str_in_output ?? false,
    skipSpecialTokens: body.skip_special_tokens ?? true,
    cacheSalt: body.cache_salt ?? undefined,
    stream: body.stream ?? false,
    includeUsage: body.stream_options?.include_usage ?? false,
    continuousUsage: body.stream_options?.continuous_usage_stats ?? false,
  };
}

function hexId(): string {
  return randomUUID().replace(/-/g, '');
}

function requestIdOf(req: IncomingMessage): string {
  const h = req.headers['x-request-id'];
  return typeof h === 'string' && h.length > 0 && h.length <= 256 ? h : hexId();
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Read a request body up to `limit` bytes; larger bodies are refused without reading the rest. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > limit) {
      req.resume();
      reject(new PayloadTooLargeError(limit));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > limit) {
        failed = true;
        chunks.length = 0;
        reject(new PayloadTooLargeError(limit));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (!failed) resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    });
    req.on('error', (err) => {
      if (failed) return;
      failed = true;
      reject(err instanceof LlmdError ? err : new BadRequestError('The request body could not be read.'));
    });
  });
}
