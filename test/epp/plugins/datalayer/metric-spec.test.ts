import { describe, expect, it } from 'vitest';
import { parsePrometheusText } from '../../../../src/epp/datastore/prometheus-text.js';
import {
  largestSample,
  latestSample,
  matches,
  parseMetricSpec,
} from '../../../../src/epp/plugins/datalayer/metric-spec.js';

describe('parseMetricSpec', () => {
  it('reads a bare name, and an empty spec as disabled', () => {
    expect(parseMetricSpec('vllm:num_requests_waiting')).toMatchObject({
      name: 'vllm:num_requests_waiting',
      matchers: [],
    });
    expect(parseMetricSpec('  ')).toBeNull();
    expect(parseMetricSpec('')).toBeNull();
  });

  it('reads matchers with and without quotes, and every operator', () => {
    const s = parseMetricSpec(`m{a=x, b="y z", c!="w", d=~"v.*", e!~'q', f="es\\"c"}`)!;
    expect(s.name).toBe('m');
    expect(s.matchers.map((m) => [m.label, m.op, m.value])).toEqual([
      ['a', '=', 'x'],
      ['b', '=', 'y z'],
      ['c', '!=', 'w'],
      ['d', '=~', 'v.*'],
      ['e', '!~', 'q'],
      ['f', '=', 'es"c'],
    ]);
    expect(parseMetricSpec('m{}')!.matchers).toEqual([]);
    expect(parseMetricSpec('m{a=b,}')!.matchers).toHaveLength(1);
  });

  it.each([
    ['9m', /not a metric name/],
    ['m{a=b', /not closed/],
    ['m{a=b}x', /not closed/],
    ['m{a}', /expected =/],
    ['m{a==b}', /bad value/],
    ['m{a="b}', /unterminated/],
    ['m{a=b c=d}', /expected ,/],
    ['m{a=~"("}', /not a valid regular expression/],
    ['m{1=b}', /expected a label name/],
  ])('rejects %j', (text, message) => {
    expect(() => parseMetricSpec(text)).toThrow(message);
  });
});

describe('selecting samples', () => {
  const page = parsePrometheusText(
    [
      'm{t="a",k="1"} 1 100',
      'm{t="a",k="2"} 2 300',
      'm{t="b",k="3"} 3 200',
      'n{t="a"} 1',
      'n{t="a"} 2',
      'n{t="b"} 3',
      'lora{running="x"} 5',
      'lora{running="y"} 9',
      'lora{running="z"} 7',
    ].join('\n'),
    null,
  );

  it('takes the latest timestamp among matching series', () => {
    expect(latestSample(page, parseMetricSpec('m')!)!.value).toBe(2);
    expect(latestSample(page, parseMetricSpec('m{t="b"}')!)!.value).toBe(3);
    expect(latestSample(page, parseMetricSpec('m{t="c"}')!)).toBeNull();
    expect(latestSample(page, parseMetricSpec('absent')!)).toBeNull();
  });

  it('takes the last series when there are no timestamps', () => {
    expect(latestSample(page, parseMetricSpec('n{t="a"}')!)!.value).toBe(2);
    expect(latestSample(page, parseMetricSpec('n{t!="a"}')!)!.value).toBe(3);
  });

  it('takes the largest value for LoRA info', () => {
    expect(largestSample(page, parseMetricSpec('lora')!)!.labels.running).toBe('y');
    expect(largestSample(page, parseMetricSpec('lora{running=~"x|z"}')!)!.labels.running).toBe('z');
  });

  it('matches a missing label as the empty string, as PromQL does', () => {
    const sample = { labels: { a: '1' }, value: 0, timestampMs: undefined };
    expect(matches(parseMetricSpec('m{b=""}')!, sample)).toBe(true);
    expect(matches(parseMetricSpec('m{b!=""}')!, sample)).toBe(false);
    expect(matches(parseMetricSpec('m{a=~"1|2"}')!, sample)).toBe(true);
    expect(matches(parseMetricSpec('m{a=~"1|"}')!, { ...sample, labels: { a: '12' } })).toBe(false);
  });
});
