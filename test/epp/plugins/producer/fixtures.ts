/** Builders shared by the producer tests: scheduling results and a handle whose endpoints can leave. */
import type { Endpoint } from '../../../../src/epp/framework/endpoint.js';
import type { PluginHandle } from '../../../../src/epp/framework/plugin.js';
import type { ProfileRunResult, SchedulingResult } from '../../../../src/epp/framework/scheduling.js';
import { testHandle } from '../../helpers.js';

function run(targets: Endpoint[]): ProfileRunResult {
  return {
    targetEndpoints: targets,
    scored: { endpoints: targets, scores: new Float64Array(targets.length) },
  };
}

/** The decision a disagg profile handler would make: `decode` primary, optionally a `prefill` profile. */
export function scheduled(decode: Endpoint | null, prefill?: Endpoint | null): SchedulingResult {
  const profileResults = new Map<string, ProfileRunResult | null>([
    ['decode', decode ? run([decode]) : null],
  ]);
  if (prefill !== undefined) profileResults.set('prefill', prefill ? run([prefill]) : null);
  return { primaryProfileName: 'decode', profileResults };
}

/** A handle over `endpoints` with `leave(ep)`: drops it from the list, then tells the listeners. */
export function handleWithRemovals(endpoints: Endpoint[]): {
  handle: PluginHandle;
  leave(ep: Endpoint): void;
  replace(old: Endpoint, replacement: Endpoint): void;
} {
  const base = testHandle(endpoints);
  const listeners: ((e: Endpoint) => void)[] = [];
  let list = endpoints;
  const source = {
    list: () => list,
    get: (id: string) => list.find((e) => e.meta.id === id),
    slotCount: () => list.reduce((m, e) => Math.max(m, e.slot + 1), 0),
    onRemove: (l: (e: Endpoint) => void) => void listeners.push(l),
  };
  return {
    handle: { ...base, endpoints: source },
    leave(ep) {
      list = list.filter((e) => e !== ep);
      for (const l of listeners) l(ep);
    },
    replace(old, replacement) {
      list = list.map((e) => (e === old ? replacement : e));
      for (const l of listeners) l(old);
    },
  };
}
