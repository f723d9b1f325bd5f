/**
 * The `local` tokenizer backend: the model server's own tokenizer and chat template in process, so
 * the ids are the ones `llmd serve` computes (by default the embedded Qwen3 tokenizer). Completions are
 * encoded with special tokens and chats are rendered then encoded without, as vLLM does unless the
 * request says `add_special_tokens`. The tokenizer modules are imported and the tokenizer loaded on
 * first use only, once. Shapes it cannot tokenize (responses, conversations, multimodal chats) give
 * null: the caller estimates them instead.
 */
import type { TokenizedRequest } from '../../../framework/data-keys.js';
import type { RequestBody } from '../../../framework/request.js';
import type { ChatMessage, ChatRenderOptions } from '../../../../engine/tokenizer/chat-template.js';
import type { LlmdTokenizer } from '../../../../engine/tokenizer/tokenizer.js';
import { fromPrompts, tokenIdPrompts } from './estimate.js';

export const BACKEND_LOCAL = 'local';

interface Loaded {
  readonly tokenizer: LlmdTokenizer;
  readonly renderChat: (tk: LlmdTokenizer, options: ChatRenderOptions) => string;
}

export class LocalTokenizer {
  private loading: Promise<Loaded> | null = null;

  /** `tokenizerPath`: a directory or tokenizer.json; undefined = the embedded Qwen3 tokenizer. */
  constructor(private readonly tokenizerPath: string | undefined) {}

  /** Starts loading (idempotent); rejects when the tokenizer cannot be loaded. */
  load(): Promise<Loaded> {
    this.loading ??= (async () => {
      const [{ loadTokenizer }, { renderChat }] = await Promise.all([
        import('../../../../engine/tokenizer/tokenizer.js'),
        import('../../../../engine/tokenizer/chat-template.js'),
      ]);
      return { tokenizer: await loadTokenizer(this.tokenizerPath), renderChat };
    })();
    return this.loading;
  }

  /** The request's token ids, or null when this backend cannot tokenize it. Throws on template errors. */
  async tokenize(body: RequestBody): Promise<TokenizedRequest | null> {
    const { tokenizer, renderChat } = await this.load();
    const json = body.json;
    const addSpecial = json?.add_special_tokens;
    switch (body.kind) {
      case 'completions':
      case 'completions-render': {
        const prompt = body.prompt ?? json?.prompt;
        const ids = tokenIdPrompts(prompt);
        if (ids !== null) return fromPrompts(ids, BACKEND_LOCAL);
        const texts = typeof prompt === 'string' ? [prompt] : stringArray(prompt);
        if (texts === null) return null;
        const opts = { addSpecialTokens: typeof addSpecial === 'boolean' ? addSpecial : true };
        return fromPrompts(
          texts.map((t) => Uint32Array.from(tokenizer.encode(t, opts))),
          BACKEND_LOCAL,
        );
      }
      case 'chat-completions':
      case 'chat-completions-render': {
        const messages = body.messages ?? json?.messages;
        if (!Array.isArray(messages)) return null;
        const text = renderChat(tokenizer, {
          messages: messages as ChatMessage[],
          tools: Array.isArray(body.tools ?? json?.tools)
            ? ((body.tools ?? json?.tools) as unknown[])
            : undefined,
          addGenerationPrompt: optionalBoolean(json?.add_generation_prompt) ?? true,
          continueFinalMessage: optionalBoolean(json?.continue_final_message) ?? false,
          chatTemplate: typeof json?.chat_template === 'string' ? json.chat_template : undefined,
          chatTemplateKwargs: isRecord(json?.chat_template_kwargs) ? json.chat_template_kwargs : undefined,
        });
        const opts = { addSpecialTokens: typeof addSpecial === 'boolean' ? addSpecial : false };
        return fromPrompts([Uint32Array.from(tokenizer.encode(text, opts))], BACKEND_LOCAL);
      }
      case 'embeddings': {
        const input = body.input ?? json?.input;
        const ids = tokenIdPrompts(input);
        if (ids !== null) return fromPrompts(ids, BACKEND_LOCAL);
        const texts = typeof input === 'string' ? [input] : stringArray(input);
        if (texts === null) return null;
        return fromPrompts(
          texts.map((t) => Uint32Array.from(tokenizer.encode(t))),
          BACKEND_LOCAL,
        );
      }
      default:
        return null;
    }
  }
}

function stringArray(v: unknown): string[] | null {
  return Array.isArray(v) && v.every((s) => typeof s === 'string') ? (v as string[]) : null;
}

function optionalBoolean(v: unknown): boolean | undefined {
  return typeof v === 'boolean' ? v : undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
