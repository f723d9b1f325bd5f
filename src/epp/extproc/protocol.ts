/**
 * The Envoy ext_proc and gRPC health wire types: the protos are loaded once from the .proto files in
 * `proto/` beside this module (in src/ when run from source, copied into dist/ by the build), incoming
 * messages are checked with zod, and the few value shapes the server builds (header mutations,
 * streamed bodies, Struct metadata) have helpers here.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { z } from 'zod';

export const EXT_PROC_SERVICE = 'envoy.service.ext_proc.v3.ExternalProcessor';
export const HEALTH_SERVICE = 'grpc.health.v1.Health';

/** Envoy's per-message body limit the EPP keeps to (upstream `BodyByteLimit`). */
export const BODY_CHUNK_BYTES = 62000;

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: Number,
  defaults: false,
  oneofs: true,
};

interface Loaded {
  readonly extProc: grpc.ServiceDefinition;
  readonly health: grpc.ServiceDefinition;
  readonly pkg: grpc.GrpcObject;
}

/** The import root of our .proto files; `google/protobuf/*` comes with the loader. */
export const PROTO_DIR = fileURLToPath(new URL('./proto/', import.meta.url));

/** The files that declare the services; the loader follows their imports from `PROTO_DIR`. */
export const PROTO_ENTRY_FILES: readonly string[] = [
  'envoy/service/ext_proc/v3/external_processor.proto',
  'grpc/health/v1/health.proto',
];

let loaded: Loaded | null = null;

/** The service definitions, loaded on first use. */
export function protos(): Loaded {
  if (loaded !== null) return loaded;
  for (const f of PROTO_ENTRY_FILES) {
    // A dist/ built by plain tsc has no .proto files: say so rather than fail deep in the loader.
    if (!existsSync(join(PROTO_DIR, f)))
      throw new Error(
        `${join(PROTO_DIR, f)} is missing: build with \`npm run build\`, which copies the .proto files`,
      );
  }
  const def = protoLoader.loadSync([...PROTO_ENTRY_FILES], { ...LOADER_OPTIONS, includeDirs: [PROTO_DIR] });
  const pkg = grpc.loadPackageDefinition(def);
  const extProc = def[EXT_PROC_SERVICE] as grpc.ServiceDefinition;
  const health = def[HEALTH_SERVICE] as grpc.ServiceDefinition;
  loaded = { extProc, health, pkg };
  return loaded;
}

// ---- incoming messages (checked at the edge) ----

const Bytes = z.union([z.instanceof(Buffer), z.instanceof(Uint8Array)]).transform((b) => Buffer.from(b));

const StructValue: z.ZodType<WireValue> = z.lazy(() =>
  z
    .object({
      nullValue: z.unknown().optional(),
      numberValue: z.number().optional(),
      stringValue: z.string().optional(),
      boolValue: z.boolean().optional(),
      structValue: WireStructSchema.optional(),
      listValue: z.object({ values: z.array(StructValue).optional() }).optional(),
    })
    .passthrough(),
);

const WireStructSchema: z.ZodType<WireStruct> = z.lazy(() =>
  z.object({ fields: z.record(StructValue).optional() }).passthrough(),
);

export interface WireValue {
  nullValue?: unknown;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: WireStruct;
  listValue?: { values?: WireValue[] };
}

export interface WireStruct {
  fields?: Record<string, WireValue>;
}

const HeaderValueSchema = z.object({
  key: z.string().default(''),
  value: z.string().optional(),
  raw_value: Bytes.optional(),
});

const HeaderMapSchema = z.object({ headers: z.array(HeaderValueSchema).optional() });

const HttpHeadersSchema = z.object({
  headers: HeaderMapSchema.nullish(),
  end_of_stream: z.boolean().optional(),
});

const HttpBodySchema = z.object({ body: Bytes.optional(), end_of_stream: z.boolean().optional() });

const HttpTrailersSchema = z.object({ trailers: HeaderMapSchema.nullish() });

const MetadataSchema = z.object({ filter_metadata: z.record(WireStructSchema).optional() });

export const ProcessingRequestSchema = z.object({
  request: z
    .enum([
      'request_headers',
      'response_headers',
      'request_body',
      'response_body',
      'request_trailers',
      'response_trailers',
    ])
    .optional(),
  request_headers: HttpHeadersSchema.nullish(),
  response_headers: HttpHeadersSchema.nullish(),
  request_body: HttpBodySchema.nullish(),
  response_body: HttpBodySchema.nullish(),
  request_trailers: HttpTrailersSchema.nullish(),
  response_trailers: HttpTrailersSchema.nullish(),
  metadata_context: MetadataSchema.nullish(),
});

export type ProcessingRequest = z.output<typeof ProcessingRequestSchema>;
export type HttpHeaders = z.output<typeof HttpHeadersSchema>;
export type HttpBody = z.output<typeof HttpBodySchema>;
export type Metadata = z.output<typeof MetadataSchema>;

// ---- outgoing messages ----

export interface HeaderValueOption {
  header: { key: string; raw_value: Buffer };
  append_action: number;
}

export interface HeaderMutation {
  set_headers?: HeaderValueOption[];
  remove_headers?: string[];
}

export interface CommonResponse {
  status?: number;
  header_mutation?: HeaderMutation;
  body_mutation?: { streamed_response: { body: Buffer; end_of_stream: boolean } };
  clear_route_cache?: boolean;
}

export interface ProcessingResponse {
  request_headers?: { response: CommonResponse };
  response_headers?: { response: CommonResponse };
  request_body?: { response: CommonResponse };
  response_body?: { response: CommonResponse };
  request_trailers?: Record<string, never>;
  response_trailers?: Record<string, never>;
  immediate_response?: {
    status: { code: number };
    headers?: HeaderMutation;
    body?: string;
    details?: string;
  };
  dynamic_metadata?: WireStruct;
}

/** `OVERWRITE_IF_EXISTS_OR_ADD`: the EPP's values replace the proxy's. */
const OVERWRITE = 2;

export function setHeader(key: string, value: string): HeaderValueOption {
  return { header: { key, raw_value: Buffer.from(value) }, append_action: OVERWRITE };
}

/** Header values by lower-cased name; `raw_value` wins over `value`; repeated names joined by `, `. */
export function headersOf(h: HttpHeaders | null | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  const list = h?.headers?.headers;
  if (!list) return out;
  for (const hv of list) {
    const k = hv.key.toLowerCase();
    const v =
      hv.raw_value !== undefined && hv.raw_value.length > 0
        ? hv.raw_value.toString('utf8')
        : (hv.value ?? '');
    out[k] = out[k] === undefined ? v : `${out[k]}, ${v}`;
  }
  return out;
}

/** `body` as streamed body mutations of at most {@link BODY_CHUNK_BYTES}; an empty body is one empty chunk. */
export function bodyChunks(body: Buffer, endOfStream: boolean): { body: Buffer; end_of_stream: boolean }[] {
  if (body.length <= BODY_CHUNK_BYTES) return [{ body, end_of_stream: endOfStream }];
  const out: { body: Buffer; end_of_stream: boolean }[] = [];
  for (let off = 0; off < body.length; off += BODY_CHUNK_BYTES) {
    const end = Math.min(off + BODY_CHUNK_BYTES, body.length);
    out.push({ body: body.subarray(off, end), end_of_stream: endOfStream && end === body.length });
  }
  return out;
}

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export function toStruct(obj: Record<string, Json>): WireStruct {
  const fields: Record<string, WireValue> = {};
  for (const k in obj) fields[k] = toValue(obj[k]!);
  return { fields };
}

function toValue(v: Json): WireValue {
  if (v === null) return { nullValue: 0 };
  if (typeof v === 'boolean') return { boolValue: v };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  return { structValue: toStruct(v) };
}

export function fromStruct(s: WireStruct | undefined | null): Record<string, Json> {
  const out: Record<string, Json> = {};
  if (!s?.fields) return out;
  for (const k in s.fields) out[k] = fromValue(s.fields[k]!);
  return out;
}

export function fromValue(v: WireValue): Json {
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.numberValue !== undefined) return v.numberValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.structValue !== undefined) return fromStruct(v.structValue);
  if (v.listValue !== undefined) return (v.listValue.values ?? []).map(fromValue);
  return null;
}
