/**
 * The built `llmd epp` (dist/cli.js) serving Envoy's ext_proc on `--grpc-port 0`: the .proto files it
 * loads are the ones the build copied into dist/, in plaintext and with a self-signed certificate.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import { PROTO_ENTRY_FILES, protos } from '../../src/epp/extproc/protocol.js';
import { body, exchange, headers, type Decoded, type Msg } from '../epp/extproc/client.js';
import { killAll, startEppProcess } from '../helpers/processes.js';

const DIST_PROTO = fileURLToPath(new URL('../../dist/epp/extproc/proto/', import.meta.url));

type ExtProcClient = grpc.Client & { Process(): grpc.ClientDuplexStream<Msg, Decoded> };
type HealthClient = grpc.Client & {
  Check(req: { service: string }, cb: (err: Error | null, res: { status: number }) => void): void;
};

afterAll(() => killAll());

async function serve(extra: string[]): Promise<{ grpcPort: number; healthPort: number }> {
  const p = await startEppProcess([
    '--grpc-host',
    '127.0.0.1',
    '--grpc-port',
    '0',
    '--grpc-health-port',
    '0',
    '--log-level',
    'info',
    ...extra,
  ]);
  return { grpcPort: p.ready.grpc_port as number, healthPort: p.ready.grpc_health_port as number };
}

async function answers(port: number, creds: grpc.ChannelCredentials): Promise<number | undefined> {
  const Ctor = grpc.makeGenericClientConstructor(protos().extProc, 'ExternalProcessor');
  const c = new Ctor(`127.0.0.1:${port}`, creds) as unknown as ExtProcClient;
  try {
    const r = await exchange(c, [
      headers({ ':path': '/v1/completions' }),
      body(JSON.stringify({ model: 'm', prompt: 'x' }), true),
    ]);
    return r.responses[0]?.immediate_response?.status?.code;
  } finally {
    c.close();
  }
}

async function readiness(port: number): Promise<number> {
  const Ctor = grpc.makeGenericClientConstructor(protos().health, 'Health');
  const h = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as HealthClient;
  try {
    return await new Promise<number>((resolve, reject) =>
      h.Check({ service: 'readiness' }, (err, res) => (err ? reject(err) : resolve(res.status))),
    );
  } finally {
    h.close();
  }
}

describe('llmd epp from dist/ with --grpc-port', () => {
  it('ships the .proto files in dist/', () => {
    for (const f of PROTO_ENTRY_FILES) expect(existsSync(join(DIST_PROTO, f)), f).toBe(true);
    expect(existsSync(join(DIST_PROTO, 'envoy/config/core/v3/base.proto'))).toBe(true);
  });

  it('serves ext_proc and gRPC health in plaintext', async () => {
    const { grpcPort, healthPort } = await serve(['--secure-serving', 'false']);
    // An empty pool: the request was decoded and answered.
    expect(await answers(grpcPort, grpc.credentials.createInsecure())).toBe(503);
    expect(await readiness(healthPort)).toBe(1);
  });

  it('serves ext_proc over TLS with a self-signed certificate when no --cert-path is given', async () => {
    const { grpcPort, healthPort } = await serve(['--secure-serving', 'true']);
    // As Envoy's ext_proc cluster does: TLS without verifying the certificate.
    const tls = grpc.credentials.createSsl(null, null, null, { rejectUnauthorized: false });
    expect(await answers(grpcPort, tls)).toBe(503);
    expect(await readiness(healthPort)).toBe(1);
  });
});
