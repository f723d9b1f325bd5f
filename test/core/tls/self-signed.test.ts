/** Serving certificates: read from a `--cert-path` directory, or generated without any external binary. */
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, connect } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/core/errors.js';
import { generateSelfSigned, loadServingCertificate } from '../../../src/core/tls/self-signed.js';

const CERTS = join(import.meta.dirname, '../../epp/extproc/tls');

describe('self-signed serving certificates', () => {
  it('is self-signed, for serverAuth only, valid ten years, with the subject asked for', async () => {
    const pair = await generateSelfSigned({ organization: 'Inference Ext' });
    expect(pair.selfSigned).toBe(true);
    const x = new X509Certificate(pair.cert);
    expect(x.subject).toBe('O=Inference Ext');
    expect(x.issuer).toBe(x.subject);
    expect(x.verify(x.publicKey)).toBe(true);
    expect(x.ca).toBe(false);
    expect(x.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
    expect(x.subjectAltName).toContain('DNS:localhost');
    expect(x.subjectAltName).toContain('IP Address:127.0.0.1');
    const years = (Date.parse(x.validTo) - Date.parse(x.validFrom)) / (365 * 86_400_000);
    expect(years).toBeGreaterThan(9.9);
    expect(years).toBeLessThan(10.1);
    // The key is the certificate's.
    const pub = createPublicKey(createPrivateKey(pair.key)).export({ type: 'spki', format: 'der' });
    expect(pub.equals(x.publicKey.export({ type: 'spki', format: 'der' }))).toBe(true);
    // Fresh every time.
    const other = await generateSelfSigned({ organization: 'Inference Ext' });
    expect(new X509Certificate(other.cert).serialNumber).not.toBe(x.serialNumber);
  });

  it('serves a TLS handshake that a client pinning the certificate verifies by name', async () => {
    const pair = await loadServingCertificate(undefined, { organization: 'o', flag: '--secure-x' });
    const server = createServer({ cert: pair.cert, key: pair.key, minVersion: 'TLSv1.2' }, (s) =>
      s.end('ok'),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    try {
      for (const host of ['127.0.0.1', 'localhost']) {
        const got = await new Promise<string>((resolve, reject) => {
          const c = connect({
            host,
            port,
            ca: pair.cert,
            servername: host === 'localhost' ? host : undefined,
          });
          let s = '';
          c.on('data', (b: Buffer) => (s += b.toString()));
          c.on('end', () => resolve(s));
          c.on('error', reject);
        });
        expect(got).toBe('ok');
      }
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('reads tls.crt and tls.key from certPath, and names the directory when it cannot', async () => {
    const pair = await loadServingCertificate(CERTS, { organization: 'o', flag: '--secure-x' });
    expect(pair.selfSigned).toBe(false);
    expect(pair.cert.equals(readFileSync(join(CERTS, 'tls.crt')))).toBe(true);
    expect(pair.key.equals(readFileSync(join(CERTS, 'tls.key')))).toBe(true);
    const missing = loadServingCertificate('/nonexistent', { organization: 'o', flag: '--secure-x' });
    await expect(missing).rejects.toThrow(ConfigError);
    await expect(missing).rejects.toThrow(/--cert-path \/nonexistent: cannot read tls.crt and tls.key/);
  });
});
