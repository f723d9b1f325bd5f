/**
 * `session-affinity-scorer`: keeps a session on the endpoint that served it — 1 for that endpoint, 0
 * for the others. Two strategies:
 * - `encoded_endpoint_header` (default, stateless): the client echoes header `x-session-token`, the
 *   standard base64 of the endpoint id (`namespace/<pod>-rank-<i>`); as a ResponseReceived plugin the
 *   scorer sets that header on every response, naming the endpoint that served it.
 * - `session_id` (server-side): the client sends an opaque session id (`sessionIdConfig.sources`,
 *   default header `x-session-id`); PreRequest binds it to the chosen endpoint, and a binding unused
 *   for `evictionTtlSeconds` (0 = never) is dropped by a sweep at most every `evictionSweepSeconds`,
 *   run lazily on the request path (no timer). An unbound session, or one whose endpoint is not a
 *   candidate, gets 1 on the candidate with the fewest bound sessions; a bound session moves only when
 *   its endpoint was absent, not when other scorers outvoted it.
 * `profileName` selects which profile's endpoint is bound or advertised (default: the primary).
 */
import { z } from 'zod';
import type { Rng } from '../../../core/rng.js';
import { DataKey } from '../../framework/cycle-state.js';
import type { Endpoint } from '../../framework/endpoint.js';
import { definePlugin, type PluginHandle, type TypedName } from '../../framework/plugin.js';
import type { PreRequest, ResponseInfo, ResponseReceived } from '../../framework/requestcontrol.js';
import type { InferenceRequest } from '../../framework/request.js';
import type { Scorer, SchedulingResult } from '../../framework/scheduling.js';

export const TYPE = 'session-affinity-scorer';

export const SESSION_TOKEN_HEADER = 'x-session-token';
export const SESSION_ID_HEADER = 'x-session-id';

const Source = z
  .object({
    type: z.enum(['header', 'cookie']).default('header'),
    name: z.string().min(1),
  })
  .strict();

const Params = z
  .object({
    strategy: z.enum(['encoded_endpoint_header', 'session_id']).default('encoded_endpoint_header'),
    /** The request and response header of `encoded_endpoint_header`. */
    headerName: z.string().min(1).default(SESSION_TOKEN_HEADER),
    profileName: z.string().min(1).optional(),
    sessionIdConfig: z
      .object({
        sources: z
          .array(Source)
          .min(1)
          .default([{ type: 'header', name: SESSION_ID_HEADER }]),
      })
      .strict()
      .default({}),
    evictionTtlSeconds: z.number().nonnegative().default(300),
    evictionSweepSeconds: z.number().positive().default(10),
  })
  .strict();

export type SessionAffinityParams = z.output<typeof Params>;

export const definition = definePlugin({
  type: TYPE,
  params: Params,
  create: (name, params, handle) => new SessionAffinityScorer(name, params, handle),
});

/** `encoded_endpoint_header` with `profileName`: the endpoint to advertise, from PreRequest. */
const ADVERTISED = new DataKey<string>('SessionAffinityAdvertised');
/** `session_id`: whether the bound endpoint was a candidate when this request was scored. */
const BOUND_PRESENT = new DataKey<boolean>('SessionAffinityBoundPresent');

interface Binding {
  endpointId: string;
  lastSeen: number;
}

export class SessionAffinityScorer implements Scorer, PreRequest, ResponseReceived {
  readonly typedName: TypedName;
  readonly category = 'affinity';
  private readonly byHeader: boolean;
  private readonly header: string;
  private readonly profileName: string | undefined;
  private readonly sources: readonly { type: 'header' | 'cookie'; name: string }[];
  private readonly ttlMs: number;
  private readonly sweepMs: number;
  private readonly clock: () => number;
  private readonly rng: Rng;
  private readonly bindings = new Map<string, Binding>();
  /** Sessions bound per endpoint id. */
  private readonly bound = new Map<string, number>();
  private lastSweep: number;

  constructor(name: string, params: SessionAffinityParams, handle: PluginHandle) {
    this.typedName = { type: TYPE, name };
    this.byHeader = params.strategy === 'encoded_endpoint_header';
    this.header = params.headerName.toLowerCase();
    this.profileName = params.profileName;
    this.sources = params.sessionIdConfig.sources.map((s) => ({
      type: s.type,
      name: s.type === 'header' ? s.name.toLowerCase() : s.name,
    }));
    this.ttlMs = params.evictionTtlSeconds * 1000;
    this.sweepMs = params.evictionSweepSeconds * 1000;
    this.clock = handle.clock;
    this.rng = handle.rng;
    this.lastSweep = handle.clock();
  }

  /** The endpoint id a session is bound to (`session_id`), if any. */
  boundEndpoint(sessionId: string): string | undefined {
    return this.bindings.get(sessionId)?.endpointId;
  }

  /** How many sessions are bound to an endpoint (`session_id`). */
  sessionsOn(endpointId: string): number {
    return this.bound.get(endpointId) ?? 0;
  }

  score(req: InferenceRequest, endpoints: readonly Endpoint[], out: Float64Array): void {
    const n = endpoints.length;
    out.fill(0, 0, n);
    if (this.byHeader) {
      const token = req.headers[this.header];
      if (!token) return;
      const id = Buffer.from(token, 'base64').toString('utf8');
      for (let i = 0; i < n; i++) if (endpoints[i]!.meta.id === id) out[i] = 1;
      return;
    }
    if (n === 0) return;
    const sid = this.sessionIdOf(req);
    if (sid === undefined) return;
    this.maybeSweep();
    const binding = this.bindings.get(sid);
    let target = -1;
    if (binding !== undefined) {
      for (let i = 0; i < n; i++) {
        if (endpoints[i]!.meta.id === binding.endpointId) {
          target = i;
          break;
        }
      }
      req.state.writeAs(BOUND_PRESENT, this.typedName.name, target >= 0);
    }
    out[target >= 0 ? target : this.leastBound(endpoints)] = 1;
  }

  /** The candidate with the fewest bound sessions; ties are broken at random (reservoir of one). */
  private leastBound(endpoints: readonly Endpoint[]): number {
    let best = 0;
    let min = Infinity;
    let ties = 0;
    for (let i = 0; i < endpoints.length; i++) {
      const c = this.bound.get(endpoints[i]!.meta.id) ?? 0;
      if (c < min) {
        min = c;
        best = i;
        ties = 1;
      } else if (c === min && this.rng.next() * ++ties < 1) {
        best = i;
      }
    }
    return best;
  }

  preRequest(req: InferenceRequest, result: SchedulingResult): void {
    const profile = result.profileResults.get(this.profileName ?? result.primaryProfileName);
    const chosen = profile?.targetEndpoints[0]?.meta.id;
    if (chosen === undefined) return;
    if (this.byHeader) {
      if (this.profileName !== undefined) req.state.writeAs(ADVERTISED, this.typedName.name, chosen);
      return;
    }
    const sid = this.sessionIdOf(req);
    if (sid === undefined) return;
    this.maybeSweep();
    const now = this.clock();
    const existing = this.bindings.get(sid);
    if (existing === undefined) {
      this.bindings.set(sid, { endpointId: chosen, lastSeen: now });
      this.adjust(chosen, 1);
    } else if (existing.endpointId === chosen) {
      existing.lastSeen = now;
    } else if (req.state.readAs(BOUND_PRESENT, this.typedName.name) === false) {
      // The bound endpoint was not a candidate: the session moves. When it was a candidate and other
      // scorers outvoted it, the binding stands.
      this.adjust(existing.endpointId, -1);
      existing.endpointId = chosen;
      existing.lastSeen = now;
      this.adjust(chosen, 1);
    }
  }

  responseReceived(req: InferenceRequest, resp: ResponseInfo): void {
    if (!this.byHeader) return;
    const id =
      this.profileName !== undefined
        ? req.state.readAs(ADVERTISED, this.typedName.name)
        : resp.endpoint?.meta.id;
    if (id !== undefined) resp.headers[this.header] = Buffer.from(id, 'utf8').toString('base64');
  }

  private sessionIdOf(req: InferenceRequest): string | undefined {
    for (let i = 0; i < this.sources.length; i++) {
      const s = this.sources[i]!;
      const v = s.type === 'header' ? req.headers[s.name] : cookie(req.headers['cookie'], s.name);
      if (v) return v;
    }
    return undefined;
  }

  private adjust(endpointId: string, delta: number): void {
    const c = (this.bound.get(endpointId) ?? 0) + delta;
    if (c > 0) this.bound.set(endpointId, c);
    else this.bound.delete(endpointId);
  }

  private maybeSweep(): void {
    const now = this.clock();
    if (now - this.lastSweep < this.sweepMs) return;
    this.lastSweep = now;
    if (this.ttlMs <= 0) return;
    for (const [sid, b] of this.bindings) {
      if (now - b.lastSeen > this.ttlMs) {
        this.bindings.delete(sid);
        this.adjust(b.endpointId, -1);
      }
    }
  }
}

/** One cookie's value from a `Cookie` header, or undefined. */
function cookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
