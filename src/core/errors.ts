/**
 * The one table of llmd's errors: every error a client or operator can see has a class here with a
 * stable `code`, an HTTP status and the OpenAI/vLLM error `type`. `toErrorBody` renders the JSON a client
 * receives; nothing else in the code base decides a status. Match on `code`, not on the class.
 * The codes are listed in docs/errors.md (a test keeps the two in step).
 */

export type ErrorBodyStyle = 'openai' | 'vllm-flat';

export class LlmdError extends Error {
  readonly code: string;
  readonly status: number;
  /** The OpenAI/vLLM error type name, e.g. `BadRequestError`. */
  readonly type: string;
  /** The request field at fault, when there is one. */
  readonly param: string | null;
  /** llm-d's `x-llm-d-request-dropped-reason` value, for requests the router refused. */
  droppedReason: string | null = null;

  constructor(code: string, status: number, type: string, message: string, param: string | null = null) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.status = status;
    this.type = type;
    this.param = param;
  }
}

/** Malformed or semantically invalid request (bad JSON, schema violation, bad parameter). */
export class BadRequestError extends LlmdError {
  constructor(message: string, param: string | null = null) {
    super('LLMD_ERR_BAD_REQUEST', 400, 'BadRequestError', message, param);
  }
}

/** Prompt plus requested output does not fit the model's context. */
export class ContextLengthError extends LlmdError {
  constructor(message: string, param: string | null = null) {
    super('LLMD_ERR_CONTEXT_LENGTH', 400, 'BadRequestError', message, param);
  }
}

export class ModelNotFoundError extends LlmdError {
  constructor(model: string) {
    super(
      'LLMD_ERR_MODEL_NOT_FOUND',
      404,
      'NotFoundError',
      `The model \`${model}\` does not exist.`,
      'model',
    );
  }
}

export class RouteNotFoundError extends LlmdError {
  constructor(method: string, path: string) {
    super('LLMD_ERR_ROUTE_NOT_FOUND', 404, 'NotFoundError', `No route for ${method} ${path}.`);
  }
}

export class MethodNotAllowedError extends LlmdError {
  constructor(method: string, path: string) {
    super(
      'LLMD_ERR_METHOD_NOT_ALLOWED',
      405,
      'MethodNotAllowedError',
      `Method ${method} not allowed on ${path}.`,
    );
  }
}

export class PayloadTooLargeError extends LlmdError {
  constructor(limit: number) {
    super(
      'LLMD_ERR_PAYLOAD_TOO_LARGE',
      413,
      'PayloadTooLargeError',
      `Request body exceeds the limit of ${limit} bytes.`,
    );
  }
}

/** The engine's waiting queue is full; the client (or router) should retry elsewhere or later. */
export class QueueFullError extends LlmdError {
  constructor(limit: number) {
    super(
      'LLMD_ERR_QUEUE_FULL',
      429,
      'TooManyRequestsError',
      `Failed to enqueue request, waiting requests queue is full (limit ${limit}).`,
    );
  }
}

/** `POST /reset_prefix_cache` while requests hold KV blocks (vLLM answers 409 too). */
export class PrefixCacheBusyError extends LlmdError {
  constructor() {
    super(
      'LLMD_ERR_PREFIX_CACHE_BUSY',
      409,
      'ConflictError',
      'Prefix cache reset failed: KV blocks are still held by running requests.',
    );
  }
}

/** The process is shutting down or not ready. */
export class ServiceUnavailableError extends LlmdError {
  constructor(message: string) {
    super('LLMD_ERR_UNAVAILABLE', 503, 'ServiceUnavailableError', message);
  }
}

/** Anything unexpected: the message a client sees never carries internals. */
export class InternalError extends LlmdError {
  constructor() {
    super('LLMD_ERR_INTERNAL', 500, 'InternalServerError', 'Internal server error.');
  }
}

/** Invalid command-line flag or configuration: fails start-up, names the field. */
export class ConfigError extends LlmdError {
  constructor(message: string, param: string | null = null) {
    super('LLMD_ERR_CONFIG', 400, 'ConfigError', message, param);
  }
}

/** No endpoint can take the request: the pool is empty or nothing matched (llm-d: 503). */
export class NoEndpointsError extends LlmdError {
  constructor(message = 'No endpoints available for the request.') {
    super('LLMD_ERR_NO_ENDPOINTS', 503, 'ServiceUnavailableError', message);
    this.droppedReason = 'rejected-no-endpoints';
  }
}

/** Every endpoint was filtered out in a scheduling profile (llm-d: 429 `rejected-saturated`). */
export class SchedulingFailedError extends LlmdError {
  constructor(message: string) {
    super('LLMD_ERR_SCHEDULING_FAILED', 429, 'TooManyRequestsError', message);
    this.droppedReason = 'rejected-saturated';
  }
}

/** A sheddable request (negative priority) met a saturated pool. */
export class SheddedError extends LlmdError {
  constructor() {
    super('LLMD_ERR_SHEDDED', 429, 'TooManyRequestsError', 'System saturated, sheddable request dropped.');
  }
}

/** `Prefer: if-available` and the chosen endpoint holds none of the prompt (RFC 7240). */
export class PreconditionFailedError extends LlmdError {
  constructor(message: string) {
    super('LLMD_ERR_PRECONDITION_FAILED', 412, 'PreconditionFailedError', message);
  }
}

/** The chosen model server could not be reached, and no other could take the request. */
export class UpstreamUnavailableError extends LlmdError {
  constructor(message: string) {
    super('LLMD_ERR_UPSTREAM_UNAVAILABLE', 503, 'ServiceUnavailableError', message);
  }
}

/** The model server did not answer in time. */
export class UpstreamTimeoutError extends LlmdError {
  constructor(message: string) {
    super('LLMD_ERR_UPSTREAM_TIMEOUT', 504, 'GatewayTimeoutError', message);
  }
}

/** P/D decode: the prompt's KV could not be pulled from the prefiller (`kv_load_failure_policy: fail`). */
export class KvTransferFailedError extends LlmdError {
  constructor(message: string) {
    super('LLMD_ERR_KV_TRANSFER_FAILED', 500, 'InternalServerError', message);
  }
}

/** A proxy could not get a usable answer from the server behind it (llm-d sidecar: type `BadGateway`). */
export class BadGatewayError extends LlmdError {
  constructor(message: string) {
    super('LLMD_ERR_BAD_GATEWAY', 502, 'BadGateway', message);
  }
}

/** The sidecar's local model server refused the connection; message and type as llm-d's sidecar sends them. */
export class DecoderNotReadyError extends LlmdError {
  constructor() {
    super(
      'LLMD_ERR_DECODER_NOT_READY',
      503,
      'ServiceUnavailable',
      'The decode node is not ready. Please check that the vLLM service is running and the port configuration is correct.',
    );
  }
}

/**
 * The Kubernetes API server refused or failed a request (discovery, the sidecar's allowlist). Never sent
 * to a client; `httpStatus` is what the API server answered (0 when it could not be reached).
 */
export class KubernetesApiError extends LlmdError {
  constructor(
    message: string,
    readonly httpStatus: number,
    readonly reason: string | null = null,
  ) {
    super('LLMD_ERR_KUBERNETES', 503, 'ServiceUnavailableError', message);
  }
}

/**
 * A prefill target outside the sidecar's SSRF allowlist. llm-d answers it in plain text, not JSON:
 * the message is that body.
 */
export class SsrfDeniedError extends LlmdError {
  constructor() {
    super(
      'LLMD_ERR_SSRF_DENIED',
      403,
      'Forbidden',
      'Forbidden: prefill target not allowed by SSRF protection',
    );
  }
}

/** Every code above, for the documentation test. */
export const ERROR_CODES = [
  'LLMD_ERR_BAD_REQUEST',
  'LLMD_ERR_CONTEXT_LENGTH',
  'LLMD_ERR_MODEL_NOT_FOUND',
  'LLMD_ERR_ROUTE_NOT_FOUND',
  'LLMD_ERR_METHOD_NOT_ALLOWED',
  'LLMD_ERR_PAYLOAD_TOO_LARGE',
  'LLMD_ERR_QUEUE_FULL',
  'LLMD_ERR_PREFIX_CACHE_BUSY',
  'LLMD_ERR_UNAVAILABLE',
  'LLMD_ERR_INTERNAL',
  'LLMD_ERR_CONFIG',
  'LLMD_ERR_NO_ENDPOINTS',
  'LLMD_ERR_SCHEDULING_FAILED',
  'LLMD_ERR_SHEDDED',
  'LLMD_ERR_PRECONDITION_FAILED',
  'LLMD_ERR_UPSTREAM_UNAVAILABLE',
  'LLMD_ERR_UPSTREAM_TIMEOUT',
  'LLMD_ERR_KV_TRANSFER_FAILED',
  'LLMD_ERR_BAD_GATEWAY',
  'LLMD_ERR_DECODER_NOT_READY',
  'LLMD_ERR_SSRF_DENIED',
  'LLMD_ERR_KUBERNETES',
] as const;

/** Any thrown value as an LlmdError; unknown errors become a bare 500 so no internals leak. */
export function asLlmdError(err: unknown): LlmdError {
  return err instanceof LlmdError ? err : new InternalError();
}

/**
 * The client-facing JSON. `openai` is vLLM's current shape `{"error":{message,type,param,code}}`
 * (code = HTTP status, as vLLM sends it); `vllm-flat` is the older `{"object":"error",...}` that the
 * llm-d sidecar still emits.
 */
export function toErrorBody(err: LlmdError, style: ErrorBodyStyle = 'openai'): string {
  if (style === 'vllm-flat') {
    return JSON.stringify({
      object: 'error',
      message: err.message,
      type: err.type,
      param: err.param ?? '',
      code: err.status,
    });
  }
  return JSON.stringify({
    error: { message: err.message, type: err.type, param: err.param, code: err.status },
  });
}
