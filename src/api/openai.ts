/**
 * The OpenAI/vLLM request bodies `llmd serve` accepts, as schemas checked at the HTTP edge. Unknown
 * fields are ignored (as vLLM does); known fields are type- and range-checked and a violation becomes a
 * 400 naming the field.
 */
import { z } from 'zod';
import { BadRequestError } from '../core/errors.js';

const MAX_N = 128;

const tokenId = z.number().int().nonnegative().max(0xffffffff);
const stop = z.union([z.string(), z.array(z.string()).max(64)]).nullish();

const streamOptions = z
  .object({
    include_usage: z.boolean().nullish(),
    continuous_usage_stats: z.boolean().nullish(),
  })
  .nullish();

/** Fields shared by completions and chat (vLLM's SamplingParams surface). */
const samplingFields = {
  model: z.string().nullish(),
  n: z.number().int().min(1).max(MAX_N).nullish(),
  stream: z.boolean().nullish(),
  stream_options: streamOptions,
  max_tokens: z.number().int().min(1).nullish(),
  min_tokens: z.number().int().min(0).nullish(),
  ignore_eos: z.boolean().nullish(),
  stop,
  stop_token_ids: z.array(tokenId).max(256).nullish(),
  include_stop_str_in_output: z.boolean().nullish(),
  skip_special_tokens: z.boolean().nullish(),
  seed: z.number().int().nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  top_k: z.number().int().min(-1).nullish(),
  min_p: z.number().min(0).max(1).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  repetition_penalty: z.number().gt(0).nullish(),
  cache_salt: z.string().min(1).nullish(),
  priority: z.number().int().nullish(),
  user: z.string().nullish(),
  kv_transfer_params: z.record(z.unknown()).nullish(),
};

export const CompletionRequestSchema = z.object({
  ...samplingFields,
  prompt: z.union([
    z.string(),
    z.array(z.string()).min(1),
    z.array(tokenId).min(1),
    z.array(z.array(tokenId).min(1)).min(1),
  ]),
  echo: z.boolean().nullish(),
  add_special_tokens: z.boolean().nullish(),
  logprobs: z.number().int().min(0).max(20).nullish(),
});
export type CompletionRequest = z.infer<typeof CompletionRequestSchema>;

const contentPart = z
  .object({ type: z.string(), text: z.string().optional() })
  .passthrough()
  .refine((p) => p.type !== 'text' || typeof p.text === 'string', { message: 'text part needs `text`' });

export const ChatMessageSchema = z
  .object({
    role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
    content: z.union([z.string(), z.array(contentPart), z.null()]).optional(),
    name: z.string().optional(),
    tool_calls: z.array(z.record(z.unknown())).nullish(),
    tool_call_id: z.string().optional(),
    reasoning_content: z.string().nullish(),
  })
  .passthrough();
export type ChatMessage = z.infer<typeof ChatMessageSchema>;

export const ChatCompletionRequestSchema = z.object({
  ...samplingFields,
  messages: z.array(ChatMessageSchema).min(1),
  max_completion_tokens: z.number().int().min(1).nullish(),
  tools: z.array(z.record(z.unknown())).nullish(),
  tool_choice: z.unknown().optional(),
  chat_template: z.string().nullish(),
  chat_template_kwargs: z.record(z.unknown()).nullish(),
  add_generation_prompt: z.boolean().nullish(),
  continue_final_message: z.boolean().nullish(),
  add_special_tokens: z.boolean().nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
});
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequestSchema>;

/** vLLM's /tokenize takes either a completion-style prompt or chat messages. */
export const TokenizeRequestSchema = z.union([
  z.object({
    model: z.string().nullish(),
    prompt: z.string(),
    add_special_tokens: z.boolean().nullish(),
    return_token_strs: z.boolean().nullish(),
  }),
  z.object({
    model: z.string().nullish(),
    messages: z.array(ChatMessageSchema).min(1),
    add_generation_prompt: z.boolean().nullish(),
    continue_final_message: z.boolean().nullish(),
    add_special_tokens: z.boolean().nullish(),
    chat_template: z.string().nullish(),
    chat_template_kwargs: z.record(z.unknown()).nullish(),
    tools: z.array(z.record(z.unknown())).nullish(),
    return_token_strs: z.boolean().nullish(),
  }),
]);
export type TokenizeRequest = z.infer<typeof TokenizeRequestSchema>;

export const DetokenizeRequestSchema = z.object({
  model: z.string().nullish(),
  tokens: z.array(tokenId),
});
export type DetokenizeRequest = z.infer<typeof DetokenizeRequestSchema>;

/**
 * Validate a parsed JSON body. The error names the first offending field the way a user would write it
 * (`messages[0].role`).
 */
export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new BadRequestError('Request body must be a JSON object.');
  }
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issue = pickIssue(r.error.issues);
  const field = formatPath(issue.path);
  const message = field ? `Invalid field \`${field}\`: ${issue.message}` : issue.message;
  throw new BadRequestError(message, field || null);
}

/** For a union, zod reports `invalid_union`; the deepest branch error is the useful one. */
function pickIssue(issues: readonly z.ZodIssue[]): z.ZodIssue {
  const first = issues[0]!;
  if (first.code === 'invalid_union') {
    let best: z.ZodIssue | undefined;
    for (const e of first.unionErrors) {
      for (const i of e.issues) if (!best || i.path.length > best.path.length) best = i;
    }
    if (best && best.path.length > first.path.length) return best;
  }
  return first;
}

function formatPath(path: readonly (string | number)[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${p}` : p;
  return out;
}
