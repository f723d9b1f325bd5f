/**
 * TLS for the sidecar. Serving (`--secure-proxy`): a certificate from `--cert-path` (tls.crt, tls.key),
 * else a self-signed one made with the `openssl` binary, since Node has no certificate generator; the
 * TLS socket is handed to the HTTP/1.1 server as if it were a plain connection. Dialling
 * (`--enable-tls`): the keep-alive pool opens its connections with `tls.connect`.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { isIP, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { ConfigError } from '../core/errors.js';

export interface KeyPair {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** Whether it was generated here. */
  readonly selfSigned: boolean;
}

/** The serving certificate: from `certPath`, or freshly self-signed. */
export async function loadServerCertificate(certPath: string | undefined): Promise<KeyPair> {
  if (certPath !== undefined) {
    try {
      const [cert, key] = await Promise.all([
        readFile(join(certPath, 'tls.crt')),
        readFile(join(certPath, 'tls.key')),
      ]);
      return { cert, key, selfSigned: false };
    } catch (err) {
      throw new ConfigError(
        `--cert-path ${certPath}: cannot read tls.crt and tls.key (${(err as Error).message})`,
        'certPath',
      );
    }
  }
  return selfSigned();
}

/**
 * llm-d makes an RSA-4096 certificate valid for ten years, organisation "llm-d Routing Sidecar",
 * serverAuth. P-256 is used here instead: RSA-4096 key generation takes seconds of start-up, and
 * every TLS 1.2+ client speaks ECDSA.
 */
async function selfSigned(): Promise<KeyPair> {
  const dir = await mkdtemp(join(tmpdir(), 'llmd-sidecar-tls-'));
  try {
    const keyFile = join(dir, 'tls.key');
    const certFile = join(dir, 'tls.crt');
    await new Promise<void>((resolve, reject) => {
      execFile(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:prime256v1',
          '-nodes',
          '-keyout',
          keyFile,
          '-out',
          certFile,
          '-days',
          '3650',
          '-subj',
          '/O=llm-d Routing Sidecar',
          '-addext',
          'extendedKeyUsage=serverAuth',
          '-addext',
          'subjectAltName=DNS:localhost,IP:127.0.0.1',
        ],
        { timeout: 30_000 },
        (err) => (err ? reject(err) : resolve()),
      );
    }).catch((err: NodeJS.ErrnoException) => {
      throw new ConfigError(
        err.code === 'ENOENT'
          ? '--secure-proxy needs a certificate: pass --cert-path <dir with tls.crt and tls.key>, ' +
              'install openssl to have one generated, or run with --secure-proxy=false'
          : `--secure-proxy: generating a self-signed certificate with openssl failed: ${err.message}`,
        'secureProxy',
      );
    });
    const [cert, key] = await Promise.all([readFile(certFile), readFile(keyFile)]);
    return { cert, key, selfSigned: true };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A TLS listener that hands each handshaken socket to `onConnection` (the HTTP/1.1 server's). */
export function createTlsFrontend(pair: KeyPair, onConnection: (socket: Socket) => void): TlsServer {
  const server = createTlsServer({ cert: pair.cert, key: pair.key, minVersion: 'TLSv1.2' }, onConnection);
  // A failed handshake (a plain-HTTP client, a scanner) is that client's problem only.
  server.on('tlsClientError', (_err, socket) => socket.destroy());
  return server;
}

/** Dials `host:port` over TLS for a keep-alive pool (`--enable-tls`). */
export function tlsDialer(insecureSkipVerify: boolean): (host: string, port: number) => Socket {
  return (host, port) => {
    const socket = tlsConnect({
      host,
      port,
      // SNI takes names only.
      servername: isIP(host) === 0 ? host : undefined,
      rejectUnauthorized: !insecureSkipVerify,
      minVersion: 'TLSv1.2',
    });
    socket.setNoDelay(true);
    return socket;
  };
}
