import { beforeAll, describe, expect, it } from 'vitest';
import { TOKENIZED_REQUEST, type TokenizedRequest } from '../../../../../src/epp/framework/data-keys.js';
import type { InferenceRequest, RequestKind } from '../../../../../src/epp/framework/request.js';
import { renderChat, type ChatMessage } from '../../../../../src/engine/tokenizer/chat-template.js';
import { loadTokenizer, type LlmdTokenizer } from '../../../../../src/engine/tokenizer/tokenizer.js';
import { definition, TokenProducer } from '../../../../../src/epp/plugins/producer/token.js';
import { create, makeRequest } from '../../../helpers.js';

let tk: LlmdTokenizer;
let producer: TokenProducer;

beforeAll(async () => {
  tk = await loadTokenizer();
  producer = create<TokenProducer>(definition, { backend: 'local' });
  producer.init();
});

function req(kind: RequestKind, json: Record<string, unknown>): InferenceRequest {
  return makeRequest({ json: { model: 'Qwen/Qwen3-0.6B', ...json }, body: { kind, prompt: undefined } });
}

async function produce(r: InferenceRequest, p = producer): Promise<TokenizedRequest> {
  await p.produce(r, []);
  return r.state.read(TOKENIZED_REQUEST)!;
}

const ids = (t: TokenizedRequest): number[][] => t.prompts.map((p) => Array.from(p));

describe('token-producer with the local backend', () => {
  it('encodes a completion prompt as the model server does (special tokens added)', async () => {
    const t = await produce(req('completions', { prompt: 'The quick brown fox' }));
    expect(t.backend).toBe('local');
    expect(ids(t)).toEqual([tk.encode('The quick brown fox', { addSpecialTokens: true })]);
    expect(t.tokenCount).toBe(t.prompts[0]!.length);
  });

  it('encodes each string of a multi-prompt completion and passes token ids through', async () => {
    expect(ids(await produce(req('completions', { prompt: ['one', 'two'] })))).toEqual([
      tk.encode('one'),
      tk.encode('two'),
    ]);
    const t = await produce(req('completions', { prompt: [9, 8, 7] }));
    expect(t).toMatchObject({ backend: 'local', tokenCount: 3 });
  });

  it('renders a chat with the model’s template, then encodes it without special tokens', async () => {
    const messages: ChatMessage[] = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: [{ type: 'text', text: 'Hi!' }] },
    ];
    const text = renderChat(tk, { messages, addGenerationPrompt: true });
    expect(ids(await produce(req('chat-completions', { messages })))).toEqual([
      tk.encode(text, { addSpecialTokens: false }),
    ]);
    const kw = { enable_thinking: false };
    const withKwargs = renderChat(tk, { messages, chatTemplateKwargs: kw, addGenerationPrompt: true });
    expect(ids(await produce(req('chat-completions', { messages, chat_template_kwargs: kw })))).toEqual([
      tk.encode(withKwargs, { addSpecialTokens: false }),
    ]);
  });

  it('honours add_special_tokens from the request', async () => {
    const t = await produce(req('completions', { prompt: 'x', add_special_tokens: false }));
    expect(ids(t)).toEqual([tk.encode('x', { addSpecialTokens: false })]);
  });

  it('encodes embeddings input text', async () => {
    expect(ids(await produce(req('embeddings', { input: 'embed me' })))).toEqual([tk.encode('embed me')]);
  });

  it('estimates what it cannot tokenize: other APIs, images, malformed chats', async () => {
    const shapes: [RequestKind, Record<string, unknown>][] = [
      ['responses', { input: 'hi' }],
      ['conversations', { items: [] }],
      [
        'chat-completions',
        { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] },
      ],
      ['chat-completions', { messages: 'not a list' }],
      ['chat-completions', { messages: [{ content: 'no role' }] }],
      ['completions', { prompt: { weird: true } }],
    ];
    for (const [kind, json] of shapes) {
      const t = await produce(req(kind, json));
      expect(t.backend, `${kind} ${JSON.stringify(json)}`).toBe('estimate');
    }
  });

  it('falls back to estimating every request when the tokenizer cannot be loaded', async () => {
    const broken = create<TokenProducer>(definition, {
      backend: 'local',
      tokenizer: '/nonexistent/tokenizer',
    });
    broken.init();
    const t = await produce(req('completions', { prompt: 'abcd' }), broken);
    expect(t).toMatchObject({ backend: 'estimate', tokenCount: 1 });
  });
});
