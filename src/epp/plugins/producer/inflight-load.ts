/**
 * `inflight-load-producer` (upstream `dataproducer/inflightload`): what this EPP itself has sent to
 * each endpoint and not yet seen complete — requests, and estimated tokens (input + expected output) —
 * for `active-request-scorer`, `token-load-scorer` and the utilization filter. PreRequest adds the
 * request to the chosen endpoint (and the `prefill` profile's endpoint); ResponseComplete subtracts
 * exactly what was added, remembered in the request's state, so a changed estimate or an endpoint
 * replaced in between cannot skew the counters.
 *
 * The counters are kept by endpoint id and attached to every candidate's `attributes` under
 * INFLIGHT_LOAD_ATTR at Produce, so they survive the datastore replacing an Endpoint object (or
 * handing out snapshots); an endpoint that leaves takes its counters with it.
 */
import { z } from 'zod';
import { DataKey } from '../../framework/cycle-state.js';
import {
  INFLIGHT_LOAD,
  INFLIGHT_LOAD_ATTR,
  TOKENIZED_REQUEST,
  type InflightLoad,
} from '../../framework/data-keys.js';
import type { Endpoint } from '../../framework/endpoint.js';
import { definePlugin, type PluginHandle, type TypedName } from '../../framework/plugin.js';
import type { InferenceRequest } from '../../framework/request.js';
import type {
  DataProducer,
  PreRequest,
  ResponseComplete,
  ResponseInfo,
} from '../../framework/requestcontrol.js';
import type { SchedulingResult } from '../../framework/scheduling.js';

export const TYPE = 'inflight-load-producer';

const PREFILL_PROFILE = 'prefill';
/** Without a TokenizedRequest: request bytes per input token. */
const BYTES_PER_TOKEN = 4;

export const params = z
  .object({
    /**
     * Count expected output tokens too: round(outputRatio × input), capped by the request's max tokens.
     * On by default, as token-load-scorer's estimate is defined (upstream's code defaults it off).
     */
    addEstimatedOutputTokens: z.boolean().default(true),
    outputRatio: z.number().nonnegative().finite().default(1.5),
    /** A cap on the estimated output of any request, whatever it asks for. */
    maxEstimatedOutputTokens: z.number().int().nonnegative().optional(),
  })
  .strict();

export type InflightLoadParams = z.output<typeof params>;

export const definition = definePlugin({
  type: TYPE,
  params,
  create: (name, p, handle) => new InflightLoadProducer(name, p, handle),
});

/** What one request added, to take back at completion. */
interface Added {
  readonly loads: InflightLoad[];
  readonly tokens: number;
  released: boolean;
}

export class InflightLoadProducer implements DataProducer, PreRequest, ResponseComplete {
  readonly typedName: TypedName;
  readonly produces = [INFLIGHT_LOAD];
  private readonly loads = new Map<string, InflightLoad>();
  /** By slot, the Endpoint object last given its counters: Produce skips those (5 µs per 100 otherwise). */
  private readonly attached: (Endpoint | undefined)[] = [];
  private readonly added: DataKey<Added>;

  constructor(
    name: string,
    private readonly p: InflightLoadParams,
    handle: PluginHandle,
  ) {
    this.typedName = { type: TYPE, name };
    this.added = new DataKey<Added>(`${TYPE}/${name}/added`);
    const source = handle.endpoints;
    source.onRemove((ep) => {
      const live = source.get(ep.meta.id);
      if (live !== undefined && live !== ep) return;
      this.loads.delete(ep.meta.id);
      ep.attributes.delete(INFLIGHT_LOAD_ATTR);
      if (this.attached[ep.slot] === ep) this.attached[ep.slot] = undefined;
    });
  }

  produce(req: InferenceRequest, endpoints: readonly Endpoint[]): void {
    for (let i = 0; i < endpoints.length; i++) {
      const ep = endpoints[i]!;
      if (this.attached[ep.slot] !== ep) this.loadOf(ep);
    }
    req.state.write(INFLIGHT_LOAD, true);
  }

  /** Input tokens (the TokenizedRequest's, else request bytes / 4) plus the expected output. */
  estimateTokens(req: InferenceRequest): number {
    const tokenized = req.state.read(TOKENIZED_REQUEST);
    const input =
      tokenized !== undefined ? tokenized.tokenCount : Math.floor(req.requestSizeBytes / BYTES_PER_TOKEN);
    if (!this.p.addEstimatedOutputTokens) return input;
    let output = Math.round(this.p.outputRatio * input);
    const max = req.body.maxTokens;
    if (typeof max === 'number' && max >= 0 && output > max) output = max;
    if (this.p.maxEstimatedOutputTokens !== undefined && output > this.p.maxEstimatedOutputTokens) {
      output = this.p.maxEstimatedOutputTokens;
    }
    return input + output;
  }

  preRequest(req: InferenceRequest, result: SchedulingResult): void {
    if (req.state.has(this.added)) return;
    const target = result.profileResults.get(result.primaryProfileName)?.targetEndpoints[0];
    const prefill = result.profileResults.get(PREFILL_PROFILE)?.targetEndpoints[0];
    const loads: InflightLoad[] = [];
    if (target !== undefined) loads.push(this.loadOf(target));
    if (prefill !== undefined && prefill.meta.id !== target?.meta.id) loads.push(this.loadOf(prefill));
    if (loads.length === 0) return;
    const tokens = this.estimateTokens(req);
    for (const load of loads) {
      load.requests += 1;
      load.tokens += tokens;
    }
    req.state.write(this.added, { loads, tokens, released: false });
  }

  responseComplete(req: InferenceRequest, _resp: ResponseInfo): void {
    const added = req.state.read(this.added);
    if (added === undefined || added.released) return;
    added.released = true;
    for (const load of added.loads) {
      load.requests = Math.max(0, load.requests - 1);
      load.tokens = Math.max(0, load.tokens - added.tokens);
    }
  }

  /** The live counters of an endpoint id (created on first use), attached to this Endpoint object. */
  loadOf(ep: Endpoint): InflightLoad {
    let load = this.loads.get(ep.meta.id);
    if (load === undefined) {
      load = { requests: 0, tokens: 0 };
      this.loads.set(ep.meta.id, load);
    }
    if (ep.attributes.get(INFLIGHT_LOAD_ATTR) !== load) ep.attributes.set(INFLIGHT_LOAD_ATTR, load);
    this.attached[ep.slot] = ep;
    return load;
  }
}
