import { describe, expect, it } from 'vitest';
import { SseCachedTokensRewriter, rewriteCachedTokens } from '../../src/sidecar/cached-tokens.js';

const F = 'prompt_tokens_details';

describe('the cached-tokens rewrite', () => {
  it('sets the count in a JSON body, keeping everything else byte for byte', () => {
    const body =
      '{"id":"x","seed":1152921504606846976,"usage":{"prompt_tokens":100,"prompt_tokens_details":{"cached_tokens":99,"audio":0},"completion_tokens":5}}';
    const out = rewriteCachedTokens(Buffer.from(body), F, 32)!.toString();
    expect(out).toBe(body.replace('"cached_tokens":99', '"cached_tokens":32'));
  });

  it('creates the details when usage lacks them or has them null', () => {
    expect(rewriteCachedTokens(Buffer.from('{"usage":{"prompt_tokens":3}}'), F, 2)!.toString()).toBe(
      '{"usage":{"prompt_tokens":3,"prompt_tokens_details":{"cached_tokens":2}}}',
    );
    expect(
      rewriteCachedTokens(Buffer.from('{"usage":{"prompt_tokens_details":null}}'), F, 0)!.toString(),
    ).toBe('{"usage":{"prompt_tokens_details":{"cached_tokens":0}}}');
    expect(
      rewriteCachedTokens(Buffer.from('{"usage":{"input_tokens":3}}'), 'input_tokens_details', 1)!.toString(),
    ).toBe('{"usage":{"input_tokens":3,"input_tokens_details":{"cached_tokens":1}}}');
  });

  it('leaves bodies without a usage object alone', () => {
    for (const b of [
      '{"usage":null}',
      '{"a":1}',
      'not json',
      '{"usage":{"x":1}',
      '["usage"]',
      '{"note":"usage"}',
    ])
      expect(rewriteCachedTokens(Buffer.from(b), F, 1), b).toBeNull();
  });
});

describe('the SSE cached-tokens rewriter', () => {
  const usageEvent = (n: number) =>
    `data: {"id":"c","choices":[],"usage":{"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":${n}}}}\n\n`;

  it('passes events without usage through as the same buffer', () => {
    const r = new SseCachedTokensRewriter(F, 4);
    const chunk = Buffer.from('data: {"choices":[{"delta":{"content":"a"}}]}\n\n');
    expect(r.push(chunk)).toBe(chunk);
    expect(r.end().length).toBe(0);
  });

  it('rewrites complete data lines, and leaves [DONE] and other fields alone', () => {
    const r = new SseCachedTokensRewriter(F, 4);
    const input = 'event: x\ndata: {"a":1}\n\n' + usageEvent(9) + 'data: [DONE]\n\n';
    expect(r.push(Buffer.from(input)).toString()).toBe(
      'event: x\ndata: {"a":1}\n\n' + usageEvent(4) + 'data: [DONE]\n\n',
    );
  });

  it('gives the same output however the stream is split, holding back only incomplete lines', () => {
    const input =
      'data: {"a":1}\n\n' + usageEvent(9) + 'data:{"usage":{"prompt_tokens":1}}\r\n\r\n' + 'data: [DONE]\n\n';
    const expected =
      'data: {"a":1}\n\n' +
      usageEvent(4) +
      'data:{"usage":{"prompt_tokens":1,"prompt_tokens_details":{"cached_tokens":4}}}\r\n\r\n' +
      'data: [DONE]\n\n';
    const bytes = Buffer.from(input);
    for (let cut = 1; cut < bytes.length; cut += 3) {
      for (const step of [1, 7, 64]) {
        const r = new SseCachedTokensRewriter(F, 4);
        let out = '';
        out += r.push(bytes.subarray(0, cut)).toString();
        for (let i = cut; i < bytes.length; i += step) {
          const emitted = r.push(bytes.subarray(i, Math.min(bytes.length, i + step))).toString();
          // Nothing is held past a line end.
          if (emitted.length > 0) expect(emitted.endsWith('\n')).toBe(true);
          out += emitted;
        }
        out += r.end().toString();
        expect(out).toBe(expected);
      }
    }
  });

  it('rewrites a last line that has no newline, and passes on an endless line', () => {
    const r = new SseCachedTokensRewriter(F, 1);
    expect(r.push(Buffer.from('data: {"usage":{}}')).length).toBe(0);
    expect(r.end().toString()).toBe('data: {"usage":{"prompt_tokens_details":{"cached_tokens":1}}}');
    const long = new SseCachedTokensRewriter(F, 1);
    const huge = Buffer.alloc(1024 * 1024 + 10, 0x61);
    expect(long.push(huge).length).toBe(huge.length);
  });
});
