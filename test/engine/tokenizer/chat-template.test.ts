import { beforeAll, describe, expect, it } from 'vitest';

import { ChatTemplateError, renderChat } from '../../../src/engine/tokenizer/chat-template.js';
import { loadTokenizer, type LlmdTokenizer } from '../../../src/engine/tokenizer/tokenizer.js';
import { writeTinyTokenizer } from './tiny-tokenizer.js';

let qwen: LlmdTokenizer;

beforeAll(async () => {
  qwen = await loadTokenizer();
});

function renderError(fn: () => unknown): ChatTemplateError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ChatTemplateError);
    const e = err as ChatTemplateError;
    expect(e.status).toBe(400);
    return e;
  }
  throw new Error('expected a ChatTemplateError');
}

describe('the Qwen3 chat template', () => {
  it('renders a user turn followed by the assistant generation prompt', () => {
    const prompt = renderChat(qwen, { messages: [{ role: 'user', content: 'Hello there' }] });
    expect(prompt).toBe('<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n');
  });

  it('renders system, user and earlier assistant turns', () => {
    const prompt = renderChat(qwen, {
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'One?' },
        { role: 'assistant', content: 'Two.' },
        { role: 'user', content: 'Three?' },
      ],
    });
    expect(prompt).toBe(
      '<|im_start|>system\nBe brief.<|im_end|>\n' +
        '<|im_start|>user\nOne?<|im_end|>\n' +
        '<|im_start|>assistant\nTwo.<|im_end|>\n' +
        '<|im_start|>user\nThree?<|im_end|>\n' +
        '<|im_start|>assistant\n',
    );
  });

  it('omits the generation prompt when asked', () => {
    const prompt = renderChat(qwen, {
      messages: [{ role: 'user', content: 'Hi' }],
      addGenerationPrompt: false,
    });
    expect(prompt).toBe('<|im_start|>user\nHi<|im_end|>\n');
  });

  it('passes chat_template_kwargs to the template, such as enable_thinking', () => {
    const prompt = renderChat(qwen, {
      messages: [{ role: 'user', content: 'Hi' }],
      chatTemplateKwargs: { enable_thinking: false },
    });
    expect(prompt).toBe('<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n');
  });

  it('joins text content parts with newlines', () => {
    const prompt = renderChat(qwen, {
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'first' },
            { type: 'text', text: 'second' },
          ],
        },
      ],
    });
    expect(prompt).toBe('<|im_start|>user\nfirst\nsecond<|im_end|>\n<|im_start|>assistant\n');
  });

  it('renders tools, assistant tool calls with parsed arguments and tool results', () => {
    const prompt = renderChat(qwen, {
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            {
              id: 'call_1',
              type: 'function',
              function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
            },
          ],
        },
        { role: 'tool', tool_call_id: 'call_1', content: 'sunny' },
      ],
      tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }],
    });
    expect(prompt).toContain('<tools>\n{"type": "function", "function": {"name": "get_weather"');
    expect(prompt).toContain(
      '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    );
    expect(prompt).toContain('<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>\n');
    expect(prompt.endsWith('<|im_start|>assistant\n')).toBe(true);
  });

  it('continues the final assistant message instead of closing it', () => {
    const prompt = renderChat(qwen, {
      messages: [
        { role: 'user', content: 'Count' },
        { role: 'assistant', content: 'One, two,' },
      ],
      addGenerationPrompt: false,
      continueFinalMessage: true,
    });
    expect(prompt.endsWith('One, two,')).toBe(true);
    expect(prompt).not.toContain('One, two,<|im_end|>');
  });

  it('refuses continue_final_message together with add_generation_prompt', () => {
    const err = renderError(() =>
      renderChat(qwen, {
        messages: [{ role: 'assistant', content: 'x' }],
        continueFinalMessage: true,
      }),
    );
    expect(err.message).toContain('continue_final_message');
  });

  it('rejects content parts that are not text', () => {
    const err = renderError(() =>
      renderChat(qwen, {
        messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }],
      }),
    );
    expect(err.message).toContain('image_url');
  });

  it('does not change the caller messages', () => {
    const call = { id: 'c', type: 'function', function: { name: 'f', arguments: '{"a":1}' } };
    const messages = [
      { role: 'user', content: 'q' },
      { role: 'assistant', content: '', tool_calls: [call] },
    ];
    renderChat(qwen, { messages, addGenerationPrompt: false });
    expect(call.function.arguments).toBe('{"a":1}');
  });
});

describe('custom chat templates', () => {
  it('renders a template given with the request, with the special tokens in scope', () => {
    const template =
      '{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>{% endfor %}' +
      '{% if add_generation_prompt %}<assistant>{% endif %}|{{ eos_token }}|{{ greeting }}';
    const prompt = renderChat(qwen, {
      messages: [{ role: 'user', content: 'hi' }],
      chatTemplate: template,
      chatTemplateKwargs: { greeting: 'hello' },
    });
    expect(prompt).toBe('<user>hi</user><assistant>|<|im_end|>|hello');
  });

  it('keeps content parts as a list for templates that loop over them', () => {
    const template =
      "{% for m in messages %}{% for p in m['content'] %}[{{ p.text }}]{% endfor %}{% endfor %}";
    const prompt = renderChat(qwen, {
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'a' },
            { type: 'text', text: 'b' },
          ],
        },
        { role: 'user', content: 'c' },
      ],
      chatTemplate: template,
    });
    expect(prompt).toBe('[a][b][c]');
  });

  it('renders the BOS token of a Llama-style tokenizer', async () => {
    const tiny = await loadTokenizer(await writeTinyTokenizer());
    expect(renderChat(tiny, { messages: [{ role: 'user', content: 'hi' }] })).toBe('<s>[user] hi\n');
  });

  it('turns a template syntax error into a ChatTemplateError', () => {
    const err = renderError(() =>
      renderChat(qwen, {
        messages: [{ role: 'user', content: 'hi' }],
        chatTemplate: '{% for m in messages %}',
      }),
    );
    expect(err.message).toMatch(/^Invalid chat template/);
  });

  it('turns raise_exception in a template into a ChatTemplateError with its message', () => {
    const err = renderError(() =>
      renderChat(qwen, {
        messages: [{ role: 'user', content: 'hi' }],
        chatTemplate: "{{ raise_exception('Only system and user roles are supported') }}",
      }),
    );
    expect(err.message).toContain('Only system and user roles are supported');
  });

  it('requires a template when the tokenizer has none', async () => {
    const err = renderError(() =>
      renderChat(
        {
          chatTemplate: undefined,
          bosToken: undefined,
          eosToken: undefined,
          padToken: undefined,
          unkToken: undefined,
        },
        {
          messages: [{ role: 'user', content: 'hi' }],
        },
      ),
    );
    expect(err.message).toContain('chat template');
  });
});
