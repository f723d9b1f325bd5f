import { describe, expect, it } from 'vitest';
import { BadRequestError } from '../../../src/core/errors.js';
import { Rng } from '../../../src/core/rng.js';
import { kindOfPath, parseRequestBody, withModel } from '../../../src/epp/handling/parser.js';

const b = (v: unknown): Buffer => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v));

describe('request parsing', () => {
  it('knows the API from the longest path suffix, ignoring the query', () => {
    expect(kindOfPath('/v1/chat/completions')).toBe('chat-completions');
    expect(kindOfPath('/v1/chat/completions/render')).toBe('chat-completions-render');
    expect(kindOfPath('/v1/completions/render?x=1')).toBe('completions-render');
    expect(kindOfPath('/v1/completions/')).toBe('completions');
    expect(kindOfPath('/v1/embeddings')).toBe('embeddings');
    expect(kindOfPath('/v1/responses')).toBe('responses');
    expect(kindOfPath('/inference/v1/generate')).toBe('other');
  });

  it('reads model, stream, prompt, limits and cache salt of a completion', () => {
    const body = parseRequestBody(
      '/v1/completions',
      b({ model: 'm', prompt: ['a', 'b'], stream: true, max_tokens: 7, cache_salt: 's' }),
    );
    expect(body).toMatchObject({
      kind: 'completions',
      model: 'm',
      stream: true,
      prompt: ['a', 'b'],
      maxTokens: 7,
      cacheSalt: 's',
    });
    expect(parseRequestBody('/v1/completions', b({ model: 'm', prompt: [1, 2, 3] })).prompt).toEqual([
      1, 2, 3,
    ]);
    expect(parseRequestBody('/v1/completions', b({ model: 'm', prompt: [[1], [2, 3]] })).prompt).toEqual([
      [1],
      [2, 3],
    ]);
  });

  it('reads chat messages and tools, keeping only messages with a role', () => {
    const body = parseRequestBody(
      '/v1/chat/completions',
      b({
        model: 'm',
        messages: [{ role: 'user', content: 'hi' }, 7, { content: 'x' }],
        tools: [{ type: 'function' }],
        max_completion_tokens: 3,
      }),
    );
    expect(body.messages).toEqual([{ role: 'user', content: 'hi' }]);
    expect(body.tools).toEqual([{ type: 'function' }]);
    expect(body.maxTokens).toBe(3);
  });

  it('answers 400 for bodies that are not JSON objects or lack a model', () => {
    for (const raw of ['{', '[]', '"x"', '', '{"model": 3}', '{"prompt":"x"}', '{"model": ""}']) {
      expect(() => parseRequestBody('/v1/completions', b(raw))).toThrow(BadRequestError);
    }
    try {
      parseRequestBody('/v1/chat/completions', b({ messages: [] }));
    } catch (e) {
      expect((e as BadRequestError).message).toBe('model not found in request body');
    }
  });

  it('passes other paths through without judging the body', () => {
    expect(parseRequestBody('/generate', b('not json')).kind).toBe('other');
    expect(parseRequestBody('/generate', b({ model: 'm', text: 'x' })).model).toBe('m');
    expect(parseRequestBody('/generate', b([])).json).toBeNull();
  });

  it('ignores wrongly typed optional fields instead of failing', () => {
    const body = parseRequestBody(
      '/v1/completions',
      b({ model: 'm', prompt: { x: 1 }, max_tokens: 'lots', stream: 'yes', cache_salt: 4 }),
    );
    expect(body).toMatchObject({ model: 'm', stream: false });
    expect(body.prompt).toBeUndefined();
    expect(body.maxTokens).toBeUndefined();
    expect(body.cacheSalt).toBeUndefined();
  });

  it('rewrites only the model', () => {
    const body = parseRequestBody('/v1/completions', b({ model: 'a', prompt: 'p', n: 2 }));
    expect(JSON.parse(withModel(body, 'b').toString())).toEqual({ model: 'b', prompt: 'p', n: 2 });
  });

  it('never throws anything but a BadRequestError on random bytes', () => {
    const rng = new Rng(11);
    const alphabet = '{}[]":,0123456789abcdefmodelprompt \\u\n';
    for (let i = 0; i < 3000; i++) {
      let s = '';
      const n = rng.int(0, 60);
      for (let j = 0; j < n; j++) s += alphabet[rng.int(0, alphabet.length - 1)];
      try {
        parseRequestBody(i % 2 ? '/v1/completions' : '/v1/chat/completions', Buffer.from(s));
      } catch (e) {
        expect(e).toBeInstanceOf(BadRequestError);
      }
    }
  });
});
