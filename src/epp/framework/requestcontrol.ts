/**
 * Request-control extension points around the scheduling cycle (upstream
 * `framework/interface/requestcontrol`): DataProducers fill the CycleState before scheduling (ordered
 * by the data they produce and consume, each under a timeout), PreRequest runs after the decision
 * (headers for the upstream request, index updates), and the response hooks see the response as it
 * comes back.
 */
import type { DataKey } from './cycle-state.js';
import type { Endpoint } from './endpoint.js';
import type { Plugin } from './plugin.js';
import type { InferenceRequest } from './request.js';
import type { SchedulingResult } from './scheduling.js';

/** Data a plugin reads from the CycleState; the loader makes sure someone produces it. */
export interface DataConsumer extends Plugin {
  readonly consumes: readonly DataKey<unknown>[];
  /**
   * Parameters for a producer the loader creates on this consumer's behalf (legacy parameters of the
   * consumer that now belong to the producer).
   */
  producerParams?(key: DataKey<unknown>): Record<string, unknown> | undefined;
}

export interface DataProducer extends Plugin {
  readonly produces: readonly DataKey<unknown>[];
  readonly consumes?: readonly DataKey<unknown>[];
  /** Default 400 ms, as upstream. */
  readonly produceTimeoutMs?: number;
  produce(req: InferenceRequest, endpoints: readonly Endpoint[]): void | Promise<void>;
}

export interface PreRequest extends Plugin {
  preRequest(req: InferenceRequest, result: SchedulingResult): void;
}

export interface Usage {
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly cachedTokens: number;
}

/** The response as the hooks see it. */
export interface ResponseInfo {
  readonly status: number;
  /** Lower-cased; ResponseReceived plugins may add headers for the client (e.g. `x-session-token`). */
  readonly headers: Record<string, string>;
  /** The endpoint that served the request. */
  readonly endpoint: Endpoint | null;
  readonly streaming: boolean;
  usage: Usage | null;
  /** Set at completion: the client went away or the upstream failed mid-response. */
  aborted: boolean;
}

export interface ResponseReceived extends Plugin {
  responseReceived(req: InferenceRequest, resp: ResponseInfo): void;
}

export interface ResponseStreaming extends Plugin {
  responseStreaming(req: InferenceRequest, resp: ResponseInfo, chunk: Buffer): void;
}

export interface ResponseComplete extends Plugin {
  /** Exactly once per scheduled request, also when it was aborted. */
  responseComplete(req: InferenceRequest, resp: ResponseInfo): void;
}

export function isDataProducer(p: Plugin): p is DataProducer {
  return typeof (p as Partial<DataProducer>).produce === 'function';
}
export function isDataConsumer(p: Plugin): p is DataConsumer {
  return Array.isArray((p as Partial<DataConsumer>).consumes);
}
export function isPreRequest(p: Plugin): p is PreRequest {
  return typeof (p as Partial<PreRequest>).preRequest === 'function';
}
export function isResponseReceived(p: Plugin): p is ResponseReceived {
  return typeof (p as Partial<ResponseReceived>).responseReceived === 'function';
}
export function isResponseStreaming(p: Plugin): p is ResponseStreaming {
  return typeof (p as Partial<ResponseStreaming>).responseStreaming === 'function';
}
export function isResponseComplete(p: Plugin): p is ResponseComplete {
  return typeof (p as Partial<ResponseComplete>).responseComplete === 'function';
}
