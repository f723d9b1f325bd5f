/** A real gRPC ext_proc client over loopback, speaking the wire protocol as Envoy does. */
import * as grpc from '@grpc/grpc-js';
import {
  fromStruct,
  protos,
  toStruct,
  type Json,
  type WireStruct,
} from '../../../src/epp/extproc/protocol.js';

export interface Decoded {
  request_headers?: { response?: Common };
  response_headers?: { response?: Common };
  request_body?: { response?: Common };
  response_body?: { response?: Common };
  request_trailers?: object;
  response_trailers?: object;
  immediate_response?: {
    status?: { code?: number };
    headers?: { set_headers?: SetHeader[] };
    body?: string;
  };
  dynamic_metadata?: WireStruct;
}

interface SetHeader {
  header: { key: string; value?: string; raw_value?: Buffer };
}

interface Common {
  clear_route_cache?: boolean;
  header_mutation?: { set_headers?: SetHeader[] };
  body_mutation?: { streamed_response?: { body?: Buffer; end_of_stream?: boolean } };
}

export type Msg = Record<string, unknown>;

export function connect(port: number): grpc.Client & {
  Process(): grpc.ClientDuplexStream<Msg, Decoded>;
} {
  const Ctor = grpc.makeGenericClientConstructor(protos().extProc, 'ExternalProcessor');
  return new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as never;
}

export function headers(
  h: Record<string, string>,
  endOfStream = false,
  metadata?: Record<string, Record<string, Json>>,
): Msg {
  return {
    request_headers: {
      headers: { headers: Object.entries(h).map(([key, v]) => ({ key, raw_value: Buffer.from(v) })) },
      end_of_stream: endOfStream,
    },
    ...(metadata ? { metadata_context: meta(metadata) } : {}),
  };
}

export function meta(m: Record<string, Record<string, Json>>): Msg {
  const filter_metadata: Record<string, WireStruct> = {};
  for (const k in m) filter_metadata[k] = toStruct(m[k]!);
  return { filter_metadata };
}

export function body(
  b: Buffer | string,
  endOfStream: boolean,
  metadata?: Record<string, Record<string, Json>>,
): Msg {
  return {
    request_body: { body: Buffer.from(b), end_of_stream: endOfStream },
    ...(metadata ? { metadata_context: meta(metadata) } : {}),
  };
}

export function responseHeaders(h: Record<string, string>, endOfStream = false): Msg {
  return {
    response_headers: {
      headers: { headers: Object.entries(h).map(([key, v]) => ({ key, value: v })) },
      end_of_stream: endOfStream,
    },
  };
}

export function responseBody(b: Buffer | string, endOfStream: boolean): Msg {
  return { response_body: { body: Buffer.from(b), end_of_stream: endOfStream } };
}

export interface Exchange {
  responses: Decoded[];
  code: number;
}

/** Sends the messages, half-closes, and collects every response until the stream ends. */
export function exchange(client: ReturnType<typeof connect>, msgs: Msg[]): Promise<Exchange> {
  return new Promise((resolve) => {
    const call = client.Process();
    const responses: Decoded[] = [];
    call.on('data', (r: Decoded) => responses.push(r));
    call.on('error', (e: grpc.ServiceError) => resolve({ responses, code: e.code }));
    call.on('status', (s: grpc.StatusObject) => {
      if (s.code === grpc.status.OK) resolve({ responses, code: 0 });
    });
    for (const m of msgs) call.write(m);
    call.end();
  });
}

export function headerMap(list: SetHeader[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of list ?? []) {
    out[h.header.key] =
      h.header.raw_value && h.header.raw_value.length > 0
        ? h.header.raw_value.toString()
        : (h.header.value ?? '');
  }
  return out;
}

export function metadataOf(r: Decoded): Record<string, Json> {
  return fromStruct(r.dynamic_metadata);
}

/** The concatenated streamed bodies of one direction, and how many chunks carried them. */
export function bodiesOf(
  rs: Decoded[],
  dir: 'request_body' | 'response_body',
): { body: Buffer; chunks: Buffer[]; eos: boolean } {
  const chunks: Buffer[] = [];
  let eos = false;
  for (const r of rs) {
    const sr = r[dir]?.response?.body_mutation?.streamed_response;
    if (sr === undefined) continue;
    chunks.push(Buffer.from(sr.body ?? Buffer.alloc(0)));
    if (sr.end_of_stream) eos = true;
  }
  return { body: Buffer.concat(chunks), chunks, eos };
}
