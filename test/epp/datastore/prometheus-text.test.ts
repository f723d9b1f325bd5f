import { describe, expect, it } from 'vitest';
import { Rng } from '../../../src/core/rng.js';
import {
  MetricNames,
  parsePrometheusText,
  type MetricsPage,
  type Sample,
} from '../../../src/epp/datastore/prometheus-text.js';

const VLLM_PAGE = `# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="Qwen/Qwen3-0.6B",engine="0"} 3
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="Qwen/Qwen3-0.6B",engine="0"} 2
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{model_name="Qwen/Qwen3-0.6B",engine="0"} 0.25
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.001",model_name="Qwen/Qwen3-0.6B",engine="0"} 0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="Qwen/Qwen3-0.6B",engine="0"} 12
vllm:time_to_first_token_seconds_sum{model_name="Qwen/Qwen3-0.6B",engine="0"} 1.5
vllm:time_to_first_token_seconds_count{model_name="Qwen/Qwen3-0.6B",engine="0"} 12
vllm:cache_config_info{engine="0",block_size="16",num_gpu_blocks="38587"} 1
`;

function only(page: MetricsPage, name: string): Sample[] {
  return [...(page.families.get(name) ?? [])];
}

describe('parsePrometheusText', () => {
  it('extracts only the wanted names', () => {
    const page = parsePrometheusText(
      VLLM_PAGE,
      new Set(['vllm:num_requests_waiting', 'vllm:cache_config_info']),
    );
    expect([...page.families.keys()]).toEqual(['vllm:num_requests_waiting', 'vllm:cache_config_info']);
    expect(only(page, 'vllm:num_requests_waiting')).toEqual([
      { labels: { model_name: 'Qwen/Qwen3-0.6B', engine: '0' }, value: 2, timestampMs: undefined },
    ]);
    expect(only(page, 'vllm:cache_config_info')[0]!.labels).toEqual({
      engine: '0',
      block_size: '16',
      num_gpu_blocks: '38587',
    });
    expect(page.sampleCount).toBe(2);
    expect(page.lines).toBe(8);
    expect(page.badLines).toBe(0);
    expect(page.limit).toBeNull();
  });

  it('does not confuse a name with a longer one that starts with it', () => {
    const page = parsePrometheusText(VLLM_PAGE, new Set(['vllm:time_to_first_token_seconds']));
    expect(page.families.size).toBe(0);
    const page2 = parsePrometheusText(VLLM_PAGE, new Set(['vllm:time_to_first_token_seconds_count']));
    expect(only(page2, 'vllm:time_to_first_token_seconds_count')[0]!.value).toBe(12);
  });

  it('parses everything when wanted is null', () => {
    const page = parsePrometheusText(VLLM_PAGE, null);
    expect(page.sampleCount).toBe(8);
    expect(only(page, 'vllm:time_to_first_token_seconds_bucket')[1]!.labels.le).toBe('+Inf');
  });

  it('accepts a Buffer, a Uint8Array view and a compiled name set', () => {
    const names = new MetricNames(['vllm:num_requests_running']);
    const buf = Buffer.from(VLLM_PAGE);
    const view = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    for (const input of [buf, view]) {
      expect(only(parsePrometheusText(input, names), 'vllm:num_requests_running')[0]!.value).toBe(3);
    }
  });

  it('reads NaN, +Inf, -Inf, exponents and signs', () => {
    const text = ['a NaN', 'a +Inf', 'a -Inf', 'a 1e3', 'a -2.5E-1', 'a +7', 'a .5', 'a Inf', 'a nan'].join(
      '\n',
    );
    const values = only(parsePrometheusText(text, new Set(['a'])), 'a').map((s) => s.value);
    expect(values).toEqual([NaN, Infinity, -Infinity, 1000, -0.25, 7, 0.5, Infinity, NaN]);
  });

  it('computes decimals from the bytes exactly as Number() would', () => {
    const rng = new Rng(99);
    const tokens: string[] = [];
    for (let i = 0; i < 5000; i++) {
      const int = String(rng.nextU32() % 10 ** (1 + (rng.nextU32() % 9)));
      const frac =
        rng.nextU32() % 3 === 0 ? '' : `.${String(rng.nextU32()).slice(0, 1 + (rng.nextU32() % 7))}`;
      const sign = ['', '-', '+'][rng.nextU32() % 3]!;
      tokens.push(`${sign}${int}${frac}`);
    }
    tokens.push(
      '0',
      '-0',
      '5.',
      '.5',
      '123456789012345',
      '1234567890123456',
      '0.1',
      '0.30000000000000004',
      '1e-7',
    );
    const page = parsePrometheusText(tokens.map((t) => `m ${t}`).join('\n'), new Set(['m']));
    expect(page.badLines).toBe(0);
    expect(only(page, 'm').map((x) => x.value)).toEqual(tokens.map((t) => Number(t)));
    expect(Object.is(only(page, 'm')[5001]!.value, -0)).toBe(true);
  });

  it('reads optional timestamps', () => {
    const page = parsePrometheusText('m{a="1"} 5 1700000000000\nm{a="2"} 6   -12 \nm 7\n', new Set(['m']));
    expect(only(page, 'm').map((s) => s.timestampMs)).toEqual([1700000000000, -12, undefined]);
  });

  it('decodes label escapes and UTF-8', () => {
    const text = 'm{a="q\\"uote",b="back\\\\slash",c="new\\nline",d="héllo ✓",e=""} 1\n';
    expect(only(parsePrometheusText(text, new Set(['m'])), 'm')[0]!.labels).toEqual({
      a: 'q"uote',
      b: 'back\\slash',
      c: 'new\nline',
      d: 'héllo ✓',
      e: '',
    });
  });

  it('accepts whitespace, trailing commas, CRLF and a last line without newline', () => {
    const text = '  m { a = "1" , b="2", } 1\r\nm{} 2\r\nm 3';
    const page = parsePrometheusText(text, new Set(['m']));
    expect(only(page, 'm').map((s) => [s.labels, s.value])).toEqual([
      [{ a: '1', b: '2' }, 1],
      [{}, 2],
      [{}, 3],
    ]);
    expect(page.badLines).toBe(0);
  });

  it('treats a label named __proto__ as a plain label', () => {
    const s = only(parsePrometheusText('m{__proto__="x",constructor="y"} 1', new Set(['m'])), 'm')[0]!;
    expect(s.labels['__proto__']).toBe('x');
    expect(s.labels['constructor']).toBe('y');
    expect(Object.getPrototypeOf(s.labels)).toBeNull();
  });

  it('counts malformed wanted lines as bad and keeps the good ones', () => {
    const bad = [
      'm',
      'm ',
      'm{a="1"}',
      'm{a="1" 1',
      'm{a="1} 1',
      'm{a=1} 1',
      'm{="1"} 1',
      'm{1a="1"} 1',
      'm{a="1" b="2"} 1',
      'm{a="1",a="2"} 1',
      'm{a="\\x"} 1',
      'm abc',
      'm 1 2 3',
      'm 1 notatime',
      'm 1 NaN',
      'm{a="1"}} 1',
    ];
    const text = ['m 42', ...bad, 'm{ok="yes"} 43'].join('\n');
    const page = parsePrometheusText(text, new Set(['m']));
    expect(only(page, 'm').map((s) => s.value)).toEqual([42, 43]);
    expect(page.badLines).toBe(bad.length);
  });

  it('counts lines with no metric name as bad without parsing unwanted ones', () => {
    const text = '<html>\n{a="1"} 2\n9lives 1\nother_metric{this is not valid at all\nm 1\n';
    const page = parsePrometheusText(text, new Set(['m']));
    expect(page.sampleCount).toBe(1);
    // `<html>`, `{a=...}`, `9lives`; the unwanted malformed line is skipped unparsed.
    expect(page.badLines).toBe(3);
    expect(page.lines).toBe(5);
  });

  it('stops at maxBytes and drops the line cut there', () => {
    const text = 'm 1\nm 2\nm 3333\n';
    const page = parsePrometheusText(text, new Set(['m']), { maxBytes: 10 });
    expect(only(page, 'm').map((s) => s.value)).toEqual([1, 2]);
    expect(page.limit).toBe('bytes');
    expect(page.badLines).toBe(1);
    const exact = parsePrometheusText('m 1\nm 2\n', new Set(['m']), { maxBytes: 8 });
    expect(exact.limit).toBeNull();
    expect(exact.sampleCount).toBe(2);
  });

  it('applies maxBytes to strings without encoding all of a huge one', () => {
    const huge = 'm 1\n' + 'x'.repeat(20 * 1024 * 1024);
    const page = parsePrometheusText(huge, new Set(['m']), { maxBytes: 1024 });
    expect(page.sampleCount).toBe(1);
    expect(page.limit).toBe('bytes');
  });

  it('stops after maxSamples wanted samples', () => {
    const text = Array.from({ length: 100 }, (_, i) => `m{i="${i}"} ${i}`).join('\n');
    const page = parsePrometheusText(text, new Set(['m']), { maxSamples: 10 });
    expect(page.sampleCount).toBe(10);
    expect(page.limit).toBe('samples');
    expect(parsePrometheusText(text, new Set(['m']), { maxSamples: 100 }).limit).toBeNull();
  });

  it('rejects wanted lines that are too long or have too many labels, and skips long unwanted ones', () => {
    const longValue = 'v'.repeat(200);
    const manyLabels = Array.from({ length: 10 }, (_, i) => `l${i}="x"`).join(',');
    const text = [`m{a="${longValue}"} 1`, `m{${manyLabels}} 2`, `other{a="${longValue}"} 3`, 'm 4'].join(
      '\n',
    );
    const page = parsePrometheusText(text, new Set(['m']), { maxLineBytes: 100, maxLabels: 5 });
    expect(only(page, 'm').map((s) => s.value)).toEqual([4]);
    expect(page.badLines).toBe(2);
  });

  it('survives binary input, NUL bytes and invalid UTF-8', () => {
    const bytes = Buffer.from([
      0xff, 0xfe, 0x00, 0x0a, 0x6d, 0x7b, 0x61, 0x3d, 0x22, 0xc3, 0x28, 0x00, 0x22, 0x7d, 0x20, 0x31, 0x0a,
    ]);
    const page = parsePrometheusText(bytes, new Set(['m']));
    expect(page.sampleCount).toBe(1);
    expect(page.badLines).toBe(1);
    expect(typeof only(page, 'm')[0]!.labels.a).toBe('string');
  });

  it('handles empty input and comment-only pages', () => {
    expect(parsePrometheusText('', new Set(['m']))).toMatchObject({ sampleCount: 0, lines: 0, badLines: 0 });
    expect(parsePrometheusText('# HELP m x\n# TYPE m gauge\n\n\n', new Set(['m'])).lines).toBe(0);
  });

  it('parses a large page quickly enough to run every tick (sanity, not a benchmark)', () => {
    const lines: string[] = [];
    for (let h = 0; h < 40; h++) {
      for (let b = 0; b < 30; b++)
        lines.push(`vllm:hist_${h}_bucket{le="${b}",model_name="m",engine="0"} ${b * 3}`);
    }
    lines.push('vllm:num_requests_waiting{model_name="m",engine="0"} 9');
    const buf = Buffer.from(lines.join('\n'));
    const names = new MetricNames(['vllm:num_requests_waiting']);
    const page = parsePrometheusText(buf, names);
    expect(only(page, 'vllm:num_requests_waiting')[0]!.value).toBe(9);
    expect(page.lines).toBe(1201);
  });
});

describe('parsePrometheusText fuzz', () => {
  const NAMES = ['m', 'vllm:num_requests_waiting', 'x_total'];
  const ALPHABET = 'm{}="\\,\n\r\t #:_aZ09.-+eE\u00e9\u2713InfNa';

  function validLine(rng: Rng): { text: string; value: number; labels: Record<string, string> } {
    const name = NAMES[rng.nextU32() % NAMES.length]!;
    const labels: Record<string, string> = {};
    const n = rng.nextU32() % 4;
    const parts: string[] = [];
    for (let i = 0; i < n; i++) {
      const k = `l${i}`;
      const raw = Array.from(
        { length: rng.nextU32() % 6 },
        () => ['a', '"', '\\', '\n', 'é', ' '][rng.nextU32() % 6],
      ).join('');
      labels[k] = raw;
      parts.push(`${k}="${raw.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
    }
    const value = Math.round((rng.next() - 0.5) * 1e6) / 100;
    const body = parts.length > 0 ? `{${parts.join(',')}}` : '';
    return { text: `${name}${body} ${value}`, value, labels };
  }

  it('never throws on 3,000 random pages and round-trips the valid lines', () => {
    const rng = new Rng(20240601);
    const names = new MetricNames(NAMES);
    for (let iter = 0; iter < 3000; iter++) {
      const lines: string[] = [];
      const expected: { value: number; labels: Record<string, string> }[] = [];
      const count = rng.nextU32() % 30;
      for (let i = 0; i < count; i++) {
        const kind = rng.nextU32() % 4;
        if (kind === 0) {
          const l = validLine(rng);
          lines.push(l.text);
          expected.push(l);
        } else if (kind === 1) {
          // A valid line with one random byte changed: may or may not parse, must not throw.
          const t = validLine(rng).text.split('');
          t[rng.nextU32() % t.length] = ALPHABET[rng.nextU32() % ALPHABET.length]!;
          lines.push(t.join('').replace(/\n/g, ' '));
        } else if (kind === 2) {
          lines.push(
            Array.from({ length: rng.nextU32() % 80 }, () => ALPHABET[rng.nextU32() % ALPHABET.length]).join(
              '',
            ),
          );
        } else {
          lines.push(
            String.fromCharCode(...Array.from({ length: rng.nextU32() % 40 }, () => rng.nextU32() % 256)),
          );
        }
      }
      const text = lines.join(rng.nextU32() % 2 === 0 ? '\n' : '\r\n');
      const input = rng.nextU32() % 2 === 0 ? text : Buffer.from(text, 'latin1');
      const cap = rng.nextU32() % 3 === 0 ? rng.nextU32() % 200 : undefined;
      const page = parsePrometheusText(
        input,
        names,
        cap === undefined ? {} : { maxBytes: cap, maxSamples: 5 },
      );
      expect(page.sampleCount).toBeLessThanOrEqual(cap === undefined ? 10_000 : 5);
      let total = 0;
      for (const samples of page.families.values()) {
        for (const s of samples) {
          expect(typeof s.value).toBe('number');
          for (const v of Object.values(s.labels)) expect(typeof v).toBe('string');
          total++;
        }
      }
      expect(total).toBe(page.sampleCount);
      // A page of valid lines only, uncapped, must come back whole.
      if (lines.length === expected.length && cap === undefined) {
        expect(total).toBe(expected.length);
        expect(page.badLines).toBe(0);
      }
    }
  });

  it('parses exactly what a valid page holds', () => {
    const rng = new Rng(7);
    for (let iter = 0; iter < 500; iter++) {
      const ls = Array.from({ length: 1 + (rng.nextU32() % 20) }, () => validLine(rng));
      const page = parsePrometheusText(ls.map((l) => l.text).join('\n'), null);
      const got = [...page.families.values()].flat();
      expect(page.badLines).toBe(0);
      expect(got.length).toBe(ls.length);
      // Order within a family is page order; compare the multiset of (value, labels).
      const key = (x: { value: number; labels: Record<string, string> }): string =>
        JSON.stringify([x.value, Object.entries(x.labels).sort()]);
      expect(got.map(key).sort()).toEqual(ls.map(key).sort());
    }
  });
});
