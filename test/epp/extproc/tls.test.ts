/**
 * ext_proc over TLS, with the certificate of `certPath` or, without one, a self-signed certificate as
 * upstream serves by default; and the start-up checks of the flags.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { startEpp } from '../../../src/epp/epp.js';
import { protos } from '../../../src/epp/extproc/protocol.js';
import { body, exchange, headers, type Decoded, type Msg } from './client.js';

const CERTS = join(import.meta.dirname, 'tls');

type ExtProcClient = grpc.Client & { Process(): grpc.ClientDuplexStream<Msg, Decoded> };

function client(port: number, creds: grpc.ChannelCredentials): ExtProcClient {
  const Ctor = grpc.makeGenericClientConstructor(protos().extProc, 'ExternalProcessor');
  return new Ctor(`127.0.0.1:${port}`, creds) as unknown as ExtProcClient;
}

/** One request into an empty pool: the HTTP status answered (503) if the stream got through, else the gRPC code. */
async function emptyPoolStatus(c: ExtProcClient): Promise<number | string> {
  const r = await exchange(c, [
    headers({ ':path': '/v1/completions' }),
    body(JSON.stringify({ model: 'm', prompt: 'x' }), true),
  ]);
  return r.responses[0]?.immediate_response?.status?.code ?? String(grpc.status[r.code]);
}

describe('ext_proc TLS', () => {
  it('serves ext_proc over TLS with tls.crt and tls.key from certPath', async () => {
    const e = await startEpp({
      gatewayPort: null,
      metricsPort: null,
      grpcHost: '127.0.0.1',
      grpcPort: 0,
      secureServing: true,
      certPath: CERTS,
      logLevel: 'silent',
    });
    const c = client(e.grpcPort!, grpc.credentials.createSsl(readFileSync(join(CERTS, 'tls.crt'))));
    try {
      expect(e.extProc!.certificate!.equals(readFileSync(join(CERTS, 'tls.crt')))).toBe(true);
      // An empty pool: the answer came back over TLS.
      expect(await emptyPoolStatus(c)).toBe(503);
    } finally {
      c.close();
      await e.close();
    }
  });

  it('serves ext_proc over TLS with a fresh self-signed certificate when secure serving has no certPath', async () => {
    const e = await startEpp({
      gatewayPort: null,
      metricsPort: null,
      grpcHost: '127.0.0.1',
      grpcPort: 0,
      secureServing: true,
      logLevel: 'silent',
    });
    const pem = e.extProc!.certificate!;
    const x = new X509Certificate(pem);
    expect(x.subject).toBe('O=Inference Ext');
    expect(x.verify(x.publicKey)).toBe(true);
    expect(pem.equals(readFileSync(join(CERTS, 'tls.crt')))).toBe(false);
    // A client that pins the generated certificate verifies it, by name included.
    const pinned = client(e.grpcPort!, grpc.credentials.createSsl(pem));
    // Envoy's ext_proc cluster has an empty validation context: it does not verify at all.
    const unverified = client(
      e.grpcPort!,
      grpc.credentials.createSsl(null, null, null, { rejectUnauthorized: false }),
    );
    // A client that trusts only the system roots refuses it; a plaintext client gets nowhere.
    const untrusting = client(e.grpcPort!, grpc.credentials.createSsl());
    const plaintext = client(e.grpcPort!, grpc.credentials.createInsecure());
    try {
      expect(await emptyPoolStatus(pinned)).toBe(503);
      expect(await emptyPoolStatus(unverified)).toBe(503);
      expect(await emptyPoolStatus(untrusting)).toBe('UNAVAILABLE');
      expect(await emptyPoolStatus(plaintext)).toBe('UNAVAILABLE');
    } finally {
      for (const c of [pinned, unverified, untrusting, plaintext]) c.close();
      await e.close();
    }
  });

  it('refuses a missing certificate and a health port alone', async () => {
    await expect(
      startEpp({ grpcPort: 0, secureServing: true, certPath: '/nonexistent', logLevel: 'silent' }),
    ).rejects.toThrow(/--cert-path \/nonexistent/);
    await expect(startEpp({ grpcHealthPort: 0, logLevel: 'silent' })).rejects.toThrow(
      /--grpc-health-port needs --grpc-port/,
    );
  });
});
