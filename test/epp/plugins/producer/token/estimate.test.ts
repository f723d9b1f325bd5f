import { describe, expect, it } from 'vitest';
import type { RequestBody, RequestKind } from '../../../../../src/epp/framework/request.js';
import {
  estimateTokens,
  packStrings,
  tokenIdPrompts,
} from '../../../../../src/epp/plugins/producer/token/estimate.js';
import { makeRequest } from '../../../helpers.js';

function body(
  kind: RequestKind,
  json: Record<string, unknown> | null,
  parsed: Partial<RequestBody> = {},
): RequestBody {
  const req = makeRequest({ json: json ?? {}, body: { kind, prompt: undefined, ...parsed } });
  return json === null ? { ...req.body, json: null } : req.body;
}

/** The bytes behind pseudo-tokens (little-endian), trailing zero padding removed. */
function text(p: Uint32Array): string {
  const b = Buffer.alloc(p.length * 4);
  p.forEach((v, i) => b.writeUInt32LE(v, 4 * i));
  return b.toString('utf8').replace(/\0+$/, '');
}

const texts = (
  kind: RequestKind,
  json: Record<string, unknown> | null,
  parsed?: Partial<RequestBody>,
): string[] => estimateTokens(body(kind, json, parsed)).prompts.map(text);

describe('packStrings', () => {
  it('zero-pads UTF-8 to a multiple of 4 and reads little-endian uint32s', () => {
    const p = packStrings(['abcde']);
    expect(Array.from(p)).toEqual([0x64636261, 0x65]);
    expect(packStrings(['abcd']).length).toBe(1);
    expect(packStrings(['ab', 'cd', 'e']).length).toBe(2);
    expect(text(packStrings(['ab', 'cd', 'e']))).toBe('abcde');
    expect(packStrings([]).length).toBe(0);
    expect(packStrings(['', '']).length).toBe(0);
  });

  it('writes text that is not ASCII exactly, however much it outgrows one byte a character', () => {
    for (const s of [
      'é',
      'Grüße',
      '世界'.repeat(1000),
      '🎉'.repeat(33),
      'a'.repeat(5) + '日本',
      '\ud800 lone',
    ]) {
      const bytes = Buffer.from(s, 'utf8');
      const p = packStrings([s]);
      expect(p.length).toBe(Math.ceil(bytes.length / 4));
      expect(Buffer.from(p.buffer, p.byteOffset, p.byteLength).subarray(0, bytes.length)).toEqual(bytes);
      expect(
        Buffer.from(p.buffer, p.byteOffset, p.byteLength)
          .subarray(bytes.length)
          .every((b) => b === 0),
      ).toBe(true);
    }
    expect(text(packStrings(['ab', '世界', 'cd']))).toBe('ab世界cd');
  });

  it('packs a 400 KB prompt into 100 000 pseudo-tokens', () => {
    const p = packStrings(['abcd'.repeat(100_000)]);
    expect(p.length).toBe(100_000);
    expect(p[99_999]).toBe(0x64636261);
  });
});

describe('estimate: what each API contributes', () => {
  it('completions: the prompt text', () => {
    expect(texts('completions', { prompt: 'Hello there' })).toEqual(['Hello there']);
    expect(texts('completions', {}, { prompt: 'parsed wins' })).toEqual(['parsed wins']);
    expect(texts('completions-render', { prompt: 'render' })).toEqual(['render']);
  });

  it('completions: one prompt per string of a list', () => {
    expect(texts('completions', { prompt: ['one', 'two', 'three'] })).toEqual(['one', 'two', 'three']);
    expect(texts('completions', { prompt: ['only'] })).toEqual(['only']);
  });

  it('completions: token ids pass through', () => {
    const t = estimateTokens(body('completions', { prompt: [1, 2, 3] }));
    expect(t.prompts.map((p) => Array.from(p))).toEqual([[1, 2, 3]]);
    const multi = estimateTokens(body('completions', { prompt: [[1, 2], [3], [4294967295]] }));
    expect(multi.prompts.map((p) => Array.from(p))).toEqual([[1, 2], [3], [4294967295]]);
    expect(multi.tokenCount).toBe(4);
  });

  it('chat: JSON of the tools, then each message’s role and content text', () => {
    const tools = [{ type: 'function', function: { name: 'f', parameters: {} } }];
    const messages = [
      { role: 'system', content: 'Be brief.' },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'look ' },
          { type: 'image_url', image_url: { url: 'http://x/y.png' } },
          { type: 'text', text: 'here' },
        ],
      },
      { role: 'assistant', content: null },
    ];
    expect(texts('chat-completions', { messages, tools })).toEqual([
      JSON.stringify(tools) + 'systemBe brief.' + 'userlook here' + 'assistant',
    ]);
    expect(texts('chat-completions', {}, { messages, tools })).toEqual(
      texts('chat-completions', { messages, tools }),
    );
    expect(texts('chat-completions', { messages, tools: [] })).toEqual([
      'systemBe brief.userlook hereassistant',
    ]);
    expect(texts('chat-completions-render', { messages: [{ role: 'user', content: 'x' }] })).toEqual([
      'userx',
    ]);
  });

  it('responses: JSON of [{instructions}, {tools}, {input}], the first two only when present', () => {
    const tools = [{ type: 'function', name: 'f' }];
    expect(texts('responses', { instructions: 'Be kind', tools, input: 'hi' })).toEqual([
      JSON.stringify([{ instructions: 'Be kind' }, { tools }, { input: 'hi' }]),
    ]);
    expect(texts('responses', {}, { input: [{ role: 'user', content: 'hi' }] })).toEqual([
      JSON.stringify([{ input: [{ role: 'user', content: 'hi' }] }]),
    ]);
    expect(texts('responses', {})).toEqual(['[{"input":null}]']);
  });

  it('conversations: JSON of the items', () => {
    const items = [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hi' }] }];
    expect(texts('conversations', { items })).toEqual([JSON.stringify(items)]);
    expect(texts('conversations', {}, { input: items })).toEqual([JSON.stringify(items)]);
    expect(texts('conversations', {})).toEqual([]);
  });

  it('embeddings: JSON of the input; token ids pass through', () => {
    expect(texts('embeddings', { input: 'embed me' })).toEqual(['"embed me"']);
    expect(texts('embeddings', { input: ['a', 'b'] })).toEqual(['["a","b"]']);
    expect(estimateTokens(body('embeddings', { input: [5, 6] })).prompts.map((p) => Array.from(p))).toEqual([
      [5, 6],
    ]);
    expect(texts('embeddings', {})).toEqual([]);
  });

  it('other requests have no prompt', () => {
    expect(estimateTokens(body('other', { prompt: 'ignored' }))).toEqual({
      tokenCount: 0,
      prompts: [],
      backend: 'estimate',
    });
  });

  it('counts tokens over all prompts and names the backend', () => {
    const t = estimateTokens(body('completions', { prompt: ['abcd', 'abcde'] }));
    expect(t).toMatchObject({ tokenCount: 3, backend: 'estimate' });
  });
});

describe('estimate: malformed bodies never throw', () => {
  const cases: [RequestKind, Record<string, unknown> | null][] = [
    ['completions', null],
    ['completions', {}],
    ['completions', { prompt: null }],
    ['completions', { prompt: 42 }],
    ['completions', { prompt: { text: 'x' } }],
    ['completions', { prompt: [1, 'a'] }],
    ['completions', { prompt: [-1, 2] }],
    ['completions', { prompt: [1.5] }],
    ['completions', { prompt: [] }],
    ['completions', { prompt: '' }],
    ['chat-completions', null],
    ['chat-completions', { messages: 'hello' }],
    [
      'chat-completions',
      { messages: [null, 3, 'x', { content: 'no role' }, { role: 7, content: { a: 1 } }] },
    ],
    ['chat-completions', { messages: [{ role: 'user', content: [null, 1, { type: 'text', text: 5 }] }] }],
    ['chat-completions', { messages: [], tools: { not: 'an array' } }],
    ['responses', null],
    ['responses', { input: 5, tools: 'x', instructions: 0 }],
    ['conversations', { items: 'x' }],
    ['embeddings', { input: {} }],
    ['embeddings', { input: [] }],
  ];
  for (const [kind, json] of cases) {
    it(`${kind} ${JSON.stringify(json)}`, () => {
      const t = estimateTokens(body(kind, json));
      expect(t.tokenCount).toBe(t.prompts.reduce((n, p) => n + p.length, 0));
      expect(t.prompts.every((p) => p instanceof Uint32Array && p.length > 0)).toBe(true);
    });
  }

  it('reads what it can of a malformed body', () => {
    expect(texts('completions', { prompt: 42 })).toEqual(['42']);
    expect(texts('completions', { prompt: [1, 'a'] })).toEqual(['[1,"a"]']);
    expect(texts('chat-completions', { messages: [null, { content: 'no role' }, { role: 'user' }] })).toEqual(
      ['no roleuser'],
    );
  });
});

describe('tokenIdPrompts', () => {
  it('accepts flat and nested arrays of uint32s only', () => {
    expect(tokenIdPrompts([1, 2])?.map((p) => Array.from(p))).toEqual([[1, 2]]);
    expect(tokenIdPrompts([[1], [2, 3]])?.map((p) => Array.from(p))).toEqual([[1], [2, 3]]);
    for (const v of [[], [[]], [1, [2]], [2 ** 32], ['1'], 'abc', null, [[1], 'a']]) {
      expect(tokenIdPrompts(v), JSON.stringify(v)).toBeNull();
    }
  });
});
