/**
 * `no-hit-lru-scorer`: spreads cold requests — those for which no candidate holds any of the prompt
 * (every `matchBlocks` is 0) — over the endpoints that took a cold request least recently, because a
 * cold request writes the most new KV blocks. A warm request scores 0.5 everywhere. For a cold one over
 * N candidates: the never-used endpoints first, `1 − i/(N−1)` in candidate order; then the used ones
 * by LRU rank (oldest first), `1 − (neverUsed + rank)/(N−1)`, floored at 0; a single candidate scores 1.
 *
 * As a PreRequest it moves the endpoint chosen by the primary profile (and by the `prefill` profile,
 * when one ran) to the most-recent end, for cold requests only. The LRU is kept by endpoint id, holds
 * at most `lruSize` endpoints, and forgets endpoints that leave the pool.
 */
import { z } from 'zod';
import { DataKey } from '../../framework/cycle-state.js';
import {
  PREFIX_CACHE_MATCH_INFO,
  matchBlocksOf,
  type PrefixCacheMatchInfo,
} from '../../framework/data-keys.js';
import type { Endpoint } from '../../framework/endpoint.js';
import { definePlugin, type PluginHandle, type TypedName } from '../../framework/plugin.js';
import type { DataConsumer, PreRequest } from '../../framework/requestcontrol.js';
import type { InferenceRequest } from '../../framework/request.js';
import type { ProfileRunResult, Scorer, SchedulingResult } from '../../framework/scheduling.js';

export const TYPE = 'no-hit-lru-scorer';

/** Upstream hard-codes the prefill profile's name here too. */
const PREFILL_PROFILE = 'prefill';

const Params = z
  .object({
    // Upstream never used these two: the match info comes from the CycleState, whoever produced it.
    prefixPluginType: z.string().optional(),
    prefixPluginName: z.string().default('prefix-cache-scorer'),
    lruSize: z.number().int().positive().default(1024),
    prefixMatchInfoProducerName: z.string().min(1).optional(),
  })
  .strict();

export type NoHitLruParams = z.output<typeof Params>;

export const definition = definePlugin({
  type: TYPE,
  params: Params,
  create: (name, params, handle) => new NoHitLruScorer(name, params, handle),
});

/** Whether this request was cold, from scoring to PreRequest (under the plugin's name). */
const COLD = new DataKey<boolean>('NoHitLruCold');

const CONSUMES: readonly DataKey<unknown>[] = [PREFIX_CACHE_MATCH_INFO];

export class NoHitLruScorer implements Scorer, PreRequest, DataConsumer {
  readonly typedName: TypedName;
  readonly category = 'distribution';
  readonly consumes = CONSUMES;
  private readonly lruSize: number;
  private readonly producer: string | undefined;
  /** Endpoint id → slot; Map order is LRU order, oldest first. */
  private readonly lru = new Map<string, number>();
  // LRU positions by slot, rebuilt per cold request; `gen` marks which entries are current.
  private pos = new Int32Array(16);
  private genOf = new Uint32Array(16);
  private idOf: (string | undefined)[] = [];
  private gen = 0;
  private nextPos = 0;

  constructor(name: string, params: NoHitLruParams, handle: PluginHandle) {
    this.typedName = { type: TYPE, name };
    this.lruSize = params.lruSize;
    this.producer = params.prefixMatchInfoProducerName;
    handle.endpoints.onRemove((e) => this.lru.delete(e.meta.id));
  }

  /** Endpoint ids, least recently used first. */
  lruIds(): string[] {
    return [...this.lru.keys()];
  }

  private matchInfo(req: InferenceRequest): PrefixCacheMatchInfo | undefined {
    return this.producer === undefined
      ? req.state.read(PREFIX_CACHE_MATCH_INFO)
      : req.state.readAs(PREFIX_CACHE_MATCH_INFO, this.producer);
  }

  private isCold(req: InferenceRequest, endpoints: readonly Endpoint[]): boolean {
    const info = this.matchInfo(req);
    if (info === undefined) return true;
    for (let i = 0; i < endpoints.length; i++) {
      if (matchBlocksOf(info, endpoints[i]!.slot) > 0) return false;
    }
    return true;
  }

  private indexLru(): void {
    this.gen = (this.gen + 1) >>> 0;
    this.nextPos = 0;
    this.lru.forEach(this.indexEntry);
  }

  // Bound once: `forEach` with it allocates nothing per entry, unlike `for…of` over the entries.
  private readonly indexEntry = (slot: number, id: string): void => {
    if (slot >= this.pos.length) this.grow(slot + 1);
    this.pos[slot] = this.nextPos++;
    this.genOf[slot] = this.gen;
    this.idOf[slot] = id;
  };

  private grow(min: number): void {
    const len = Math.max(min, this.pos.length * 2);
    const pos = new Int32Array(len);
    pos.set(this.pos);
    const gen = new Uint32Array(len);
    gen.set(this.genOf);
    this.pos = pos;
    this.genOf = gen;
  }

  /** The endpoint's LRU position after `indexLru`, or -1 when it never took a cold request. */
  private positionOf(e: Endpoint): number {
    const s = e.slot;
    return s < this.genOf.length && this.genOf[s] === this.gen && this.idOf[s] === e.meta.id
      ? this.pos[s]!
      : -1;
  }

  score(req: InferenceRequest, endpoints: readonly Endpoint[], out: Float64Array): void {
    const n = endpoints.length;
    const cold = this.isCold(req, endpoints);
    req.state.writeAs(COLD, this.typedName.name, cold);
    if (!cold) {
      out.fill(0.5, 0, n);
      return;
    }
    if (n <= 1) {
      if (n === 1) out[0] = 1;
      return;
    }
    this.indexLru();
    let neverUsed = 0;
    for (let i = 0; i < n; i++) if (this.positionOf(endpoints[i]!) < 0) neverUsed++;
    const denom = n - 1;
    let fresh = 0;
    for (let i = 0; i < n; i++) {
      const p = this.positionOf(endpoints[i]!);
      if (p < 0) {
        out[i] = 1 - fresh++ / denom;
      } else {
        const s = 1 - (neverUsed + p) / denom;
        out[i] = s > 0 ? s : 0;
      }
    }
  }

  preRequest(req: InferenceRequest, result: SchedulingResult): void {
    if (req.state.readAs(COLD, this.typedName.name) !== true) return;
    this.touchFirst(result.profileResults.get(result.primaryProfileName));
    if (result.primaryProfileName !== PREFILL_PROFILE) {
      this.touchFirst(result.profileResults.get(PREFILL_PROFILE));
    }
  }

  private touchFirst(result: ProfileRunResult | null | undefined): void {
    const e = result?.targetEndpoints[0];
    if (e === undefined) return;
    const id = e.meta.id;
    this.lru.delete(id);
    this.lru.set(id, e.slot);
    if (this.lru.size > this.lruSize) {
      const oldest = this.lru.keys().next();
      if (oldest.done !== true) this.lru.delete(oldest.value);
    }
  }
}
