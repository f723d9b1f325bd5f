/** ext_proc over TLS with the certificate of `certPath`, and the start-up checks of the flags. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { startEpp } from '../../../src/epp/epp.js';
import { protos } from '../../../src/epp/extproc/protocol.js';
import { body, exchange, headers, type Decoded, type Msg } from './client.js';

const CERTS = join(import.meta.dirname, 'tls');

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
    const Ctor = grpc.makeGenericClientConstructor(protos().extProc, 'ExternalProcessor');
    const c = new Ctor(
      `127.0.0.1:${e.grpcPort!}`,
      grpc.credentials.createSsl(readFileSync(join(CERTS, 'tls.crt'))),
    ) as unknown as grpc.Client & { Process(): grpc.ClientDuplexStream<Msg, Decoded> };
    try {
      const r = await exchange(c, [
        headers({ ':path': '/v1/completions' }),
        body(JSON.stringify({ model: 'm', prompt: 'x' }), true),
      ]);
      // An empty pool: the answer came back over TLS.
      expect(r.responses[0]!.immediate_response!.status!.code).toBe(503);
    } finally {
      c.close();
      await e.close();
    }
  });

  it('refuses --secure-serving without --cert-path, a missing certificate, and a health port alone', async () => {
    await expect(startEpp({ grpcPort: 0, secureServing: true, logLevel: 'silent' })).rejects.toThrow(
      /--secure-serving needs --cert-path/,
    );
    await expect(
      startEpp({ grpcPort: 0, secureServing: true, certPath: '/nonexistent', logLevel: 'silent' }),
    ).rejects.toThrow(/--cert-path \/nonexistent/);
    await expect(startEpp({ grpcHealthPort: 0, logLevel: 'silent' })).rejects.toThrow(
      /--grpc-health-port needs --grpc-port/,
    );
  });
});
