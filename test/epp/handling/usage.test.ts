import { describe, expect, it } from 'vitest';
import { SseUsageTracker, usageOf, usageOfJson } from '../../../src/epp/handling/usage.js';

describe('usage extraction', () => {
  it('reads OpenAI and responses-API usage, with cached tokens', () => {
    expect(
      usageOf({
        usage: { prompt_tokens: 10, completion_tokens: 5, prompt_tokens_details: { cached_tokens: 8 } },
      }),
    ).toEqual({
      promptTokens: 10,
      completionTokens: 5,
      cachedTokens: 8,
    });
    expect(usageOf({ response: { usage: { input_tokens: 3, output_tokens: 2 } } })).toEqual({
      promptTokens: 3,
      completionTokens: 2,
      cachedTokens: 0,
    });
    expect(usageOf({ usage: null })).toBeNull();
    expect(usageOf({ usage: { prompt_tokens: 'x' } })).toBeNull();
    expect(
      usageOfJson(Buffer.from('{"usage":{"prompt_tokens":1,"completion_tokens":1}}'))!.promptTokens,
    ).toBe(1);
    expect(usageOfJson(Buffer.from('{"usage":'))).toBeNull();
    expect(usageOfJson(Buffer.from('no usage here'))).toBeNull();
  });

  it('finds the last usage event of an SSE stream split anywhere', () => {
    const events = [
      'data: {"choices":[{"text":"a"}]}\n\n',
      'data: {"choices":[{"text":"b"}],"usage":{"prompt_tokens":4,"completion_tokens":1}}\n\n',
      'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":3}}}\n\n',
      'data: [DONE]\n\n',
    ].join('');
    for (const cut of [1, 7, 50, 100, events.length - 3]) {
      const t = new SseUsageTracker();
      t.push(Buffer.from(events.slice(0, cut)));
      t.push(Buffer.from(events.slice(cut)));
      expect(t.usage()).toEqual({ promptTokens: 4, completionTokens: 2, cachedTokens: 3 });
    }
  });

  it('keeps a bounded tail of long streams', () => {
    const t = new SseUsageTracker();
    t.push(Buffer.from('data: {"usage":{"prompt_tokens":1,"completion_tokens":1}}\n\n'));
    for (let i = 0; i < 2000; i++)
      t.push(Buffer.from(`data: {"choices":[{"text":"${'x'.repeat(50)}"}]}\n\n`));
    t.push(Buffer.from('data: {"usage":{"prompt_tokens":9,"completion_tokens":2000}}\n\ndata: [DONE]\n\n'));
    expect(t.usage()!.completionTokens).toBe(2000);
    const none = new SseUsageTracker();
    none.push(Buffer.from('data: {"choices":[]}\n\n'));
    expect(none.usage()).toBeNull();
  });
});

describe('usage of a JSON body', () => {
  it('parses only the usage object, wherever it sits, with strings that contain braces', () => {
    const body = {
      id: 'x',
      choices: [{ text: 'a } tricky { "usage" text \\" here' }],
      usage: { prompt_tokens: 7, completion_tokens: 3, prompt_tokens_details: { cached_tokens: 5 } },
      kv_transfer_params: null,
    };
    expect(usageOfJson(Buffer.from(JSON.stringify(body, null, 2)))).toEqual({
      promptTokens: 7,
      completionTokens: 3,
      cachedTokens: 5,
    });
  });

  it('gives up on truncated or odd bodies without throwing', () => {
    for (const raw of [
      '{"usage":{"prompt_tokens":1',
      '{"usage" 1}',
      '{"usage":[1]}',
      '"usage"',
      '{"usage":{"x":"\\',
    ]) {
      expect(usageOfJson(Buffer.from(raw))).toBeNull();
    }
  });
});
