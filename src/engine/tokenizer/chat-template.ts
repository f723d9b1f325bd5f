/**
 * Chat templates: OpenAI chat messages rendered to a prompt string by the model's Jinja template
 * (`@huggingface/jinja`), following vLLM's preprocessing: text parts joined with newlines for templates
 * that expect string content, tool-call arguments parsed from JSON, `continue_final_message` cutting the
 * prompt after the final message, request `chat_template_kwargs` merged last.
 *
 * A template is compiled once per distinct source and kept in a small bounded cache; any template
 * failure (syntax, `raise_exception`, runtime) becomes a `ChatTemplateError`, a 400 for the client.
 */
import { Template } from '@huggingface/jinja';

import { BadRequestError } from '../../core/errors.js';
import type { LlmdTokenizer } from './tokenizer.js';

/** The chat template is missing, does not compile or fails while rendering. */
export class ChatTemplateError extends BadRequestError {
  constructor(message: string) {
    super(message, 'messages');
  }
}

export interface ChatContentPart {
  readonly type: string;
  readonly text?: string;
  readonly [key: string]: unknown;
}

export interface ChatMessage {
  readonly role: string;
  readonly content?: string | readonly ChatContentPart[] | null;
  readonly name?: string;
  readonly tool_calls?: readonly unknown[] | null;
  readonly tool_call_id?: string;
  readonly [key: string]: unknown;
}

export interface ChatRenderOptions {
  readonly messages: readonly ChatMessage[];
  /** A template given with the request; replaces the tokenizer's. */
  readonly chatTemplate?: string | undefined;
  /** Default true. */
  readonly addGenerationPrompt?: boolean | undefined;
  /** Leave the final (assistant) message open so the model continues it. */
  readonly continueFinalMessage?: boolean | undefined;
  readonly tools?: readonly unknown[] | null | undefined;
  readonly documents?: readonly unknown[] | null | undefined;
  /** Extra template variables, e.g. Qwen3's `enable_thinking`; applied last, as in vLLM. */
  readonly chatTemplateKwargs?: Readonly<Record<string, unknown>> | null | undefined;
}

/** The special tokens a template may reference. `LlmdTokenizer` satisfies it. */
export type ChatTemplateTokens = Pick<
  LlmdTokenizer,
  'chatTemplate' | 'bosToken' | 'eosToken' | 'padToken' | 'unkToken'
>;

/** Render `options.messages` to the prompt text (not yet tokenized). */
export function renderChat(tokenizer: ChatTemplateTokens, options: ChatRenderOptions): string {
  const source = options.chatTemplate ?? tokenizer.chatTemplate;
  if (source === undefined) {
    throw new ChatTemplateError(
      'The model has no chat template, so you must provide one with the request (chat_template).',
    );
  }
  const addGenerationPrompt = options.addGenerationPrompt ?? true;
  const continueFinal = options.continueFinalMessage ?? false;
  if (addGenerationPrompt && continueFinal) {
    throw new ChatTemplateError(
      'Cannot set both `continue_final_message` and `add_generation_prompt` to True.',
    );
  }
  const compiled = compile(source);
  const messages = new Array<Record<string, unknown>>(options.messages.length);
  for (let i = 0; i < options.messages.length; i++) {
    messages[i] = prepareMessage(options.messages[i] as ChatMessage, compiled.openaiContent);
  }
  const context: Record<string, unknown> = {
    messages,
    add_generation_prompt: addGenerationPrompt,
    continue_final_message: continueFinal,
    bos_token: tokenizer.bosToken ?? '',
    eos_token: tokenizer.eosToken ?? '',
    pad_token: tokenizer.padToken ?? '',
    unk_token: tokenizer.unkToken ?? '',
  };
  if (options.tools != null) context.tools = options.tools;
  if (options.documents != null) context.documents = options.documents;
  if (options.chatTemplateKwargs != null) Object.assign(context, options.chatTemplateKwargs);

  let rendered: string;
  try {
    rendered = compiled.template.render(context);
  } catch (err) {
    throw new ChatTemplateError(`Chat template rendering failed: ${(err as Error).message}`);
  }
  return continueFinal ? cutAfterFinalMessage(rendered, options.messages) : rendered;
}

interface CompiledTemplate {
  readonly template: Template;
  /** The template loops over message content parts (vLLM's "openai" content format). */
  readonly openaiContent: boolean;
}

const MAX_CACHED_TEMPLATES = 32;
const compiledCache = new Map<string, CompiledTemplate>();

// vLLM inspects the template's AST for a loop over `message['content']`; a source-level match finds
// the same loops in the templates that ship with models.
const CONTENT_LOOP = /\{%-?\s*for\s+\w+\s+in\s+[\w.]*(?:\.content\b|\[\s*['"]content['"]\s*\])/;

function compile(source: string): CompiledTemplate {
  const hit = compiledCache.get(source);
  if (hit !== undefined) return hit;
  let template: Template;
  try {
    template = new Template(source);
  } catch (err) {
    throw new ChatTemplateError(`Invalid chat template: ${(err as Error).message}`);
  }
  const compiled = { template, openaiContent: CONTENT_LOOP.test(source) };
  if (compiledCache.size >= MAX_CACHED_TEMPLATES) {
    const oldest = compiledCache.keys().next().value;
    if (oldest !== undefined) compiledCache.delete(oldest);
  }
  compiledCache.set(source, compiled);
  return compiled;
}

function prepareMessage(message: ChatMessage, openaiContent: boolean): Record<string, unknown> {
  if (typeof message !== 'object' || message === null || typeof message.role !== 'string') {
    throw new ChatTemplateError('Each message must be an object with a string `role`.');
  }
  const out: Record<string, unknown> = { ...message };
  out.content = openaiContent ? contentParts(message.content) : contentText(message.content);
  if (Array.isArray(message.tool_calls)) out.tool_calls = message.tool_calls.map(parseToolCallArguments);
  return out;
}

const TEXT_PART_TYPES = new Set(['text', 'input_text', 'output_text', 'refusal']);

function partText(part: ChatContentPart): string {
  if (typeof part !== 'object' || part === null || !TEXT_PART_TYPES.has(part.type)) {
    const type = typeof part === 'object' && part !== null ? String(part.type) : typeof part;
    throw new ChatTemplateError(`Unsupported content part type '${type}': this model accepts text only.`);
  }
  const text = part.type === 'refusal' ? part.refusal : part.text;
  if (typeof text !== 'string')
    throw new ChatTemplateError(`Content part of type '${part.type}' has no text.`);
  return text;
}

/** String-format templates get the text parts joined by newlines, as vLLM does. */
function contentText(content: ChatMessage['content']): string {
  if (content == null) return '';
  if (typeof content === 'string') return content;
  let text = '';
  for (let i = 0; i < content.length; i++) {
    if (i > 0) text += '\n';
    text += partText(content[i] as ChatContentPart);
  }
  return text;
}

/** OpenAI-format templates get a list of `{type: 'text', text}` parts. */
function contentParts(content: ChatMessage['content']): { type: 'text'; text: string }[] {
  if (content == null) return [];
  if (typeof content === 'string') return [{ type: 'text', text: content }];
  return content.map((part) => ({ type: 'text' as const, text: partText(part) }));
}

/** vLLM hands templates the arguments as an object, not the JSON string the API carries. */
function parseToolCallArguments(call: unknown): unknown {
  if (typeof call !== 'object' || call === null) return call;
  const fn = (call as { function?: unknown }).function;
  if (typeof fn !== 'object' || fn === null) return call;
  const args = (fn as { arguments?: unknown }).arguments;
  if (typeof args !== 'string') return call;
  let parsed: unknown;
  try {
    parsed = JSON.parse(args);
  } catch {
    return call;
  }
  return { ...call, function: { ...fn, arguments: parsed } };
}

/**
 * transformers' `continue_final_message`: drop whatever the template appends after the final message
 * (end-of-turn tokens), so generation continues it.
 */
function cutAfterFinalMessage(rendered: string, messages: readonly ChatMessage[]): string {
  const last = messages[messages.length - 1];
  if (last === undefined) return rendered;
  const content = last.content;
  let final: string;
  if (typeof content === 'string') final = content;
  else if (Array.isArray(content) && content.length > 0)
    final = partText(content[content.length - 1] as ChatContentPart);
  else return rendered;
  if (final.length === 0) return rendered;
  let at = rendered.lastIndexOf(final);
  if (at >= 0) return rendered.slice(0, at + final.length);
  const trimmed = final.trim();
  at = trimmed.length === 0 ? -1 : rendered.lastIndexOf(trimmed);
  if (at < 0) {
    throw new ChatTemplateError(
      'continue_final_message is set but the final message does not appear in the chat after applying the chat template.',
    );
  }
  return rendered.slice(0, at + trimmed.length);
}
