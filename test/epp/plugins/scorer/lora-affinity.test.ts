import { describe, expect, it } from 'vitest';
import type { EndpointMetrics } from '../../../../src/epp/framework/endpoint.js';
import { LoraAffinityScorer, TYPE, definition } from '../../../../src/epp/plugins/scorer/lora-affinity.js';
import { create, makeEndpoint, makeRequest } from '../../helpers.js';

function score(metrics: Partial<EndpointMetrics>, model = 'adapter-a'): number {
  const out = new Float64Array(1);
  create<LoraAffinityScorer>(definition).score(
    makeRequest({ targetModel: model }),
    [makeEndpoint({ metrics })],
    out,
  );
  return out[0]!;
}

describe('lora-affinity-scorer', () => {
  const set = (...m: string[]): Set<string> => new Set(m);
  const cases: [string, Partial<EndpointMetrics>, number][] = [
    ['active → 1.0', { activeModels: set('adapter-a'), maxActiveModels: 1 }, 1],
    ['active beats waiting', { activeModels: set('adapter-a'), waitingModels: set('adapter-a') }, 1],
    ['room for one more → 0.8', { activeModels: set('b'), waitingModels: set('c'), maxActiveModels: 3 }, 0.8],
    ['room beats waiting', { waitingModels: set('adapter-a'), maxActiveModels: 2 }, 0.8],
    [
      'full but waiting → 0.6',
      { activeModels: set('b'), waitingModels: set('adapter-a'), maxActiveModels: 2 },
      0.6,
    ],
    ['full and absent → 0', { activeModels: set('b', 'c'), maxActiveModels: 2 }, 0],
    ['no adapter slots and absent → 0', { maxActiveModels: 0 }, 0],
  ];

  it.each(cases)('%s', (_title, metrics, want) => {
    expect(score(metrics)).toBe(want);
  });

  it('looks for the target model, not the incoming one', () => {
    const out = new Float64Array(1);
    const e = makeEndpoint({ metrics: { activeModels: new Set(['rewritten']), maxActiveModels: 1 } });
    create<LoraAffinityScorer>(definition).score(
      makeRequest({ model: 'asked', targetModel: 'rewritten' }),
      [e],
      out,
    );
    expect(out[0]).toBe(1);
  });

  it('is an affinity scorer and takes no parameters', () => {
    const s = create<LoraAffinityScorer>(definition);
    expect(s.typedName.type).toBe(TYPE);
    expect(s.category).toBe('affinity');
    expect(() => create(definition, { weight: 1 })).toThrow();
  });
});
