/**
 * TLS for the sidecar. Serving (`--secure-proxy`): a certificate from `--cert-path` (tls.crt, tls.key),
 * else a self-signed one made with the `openssl` binary, since Node has no certificate generator; the
 * TLS socket is handed to the HTTP/1.1 server as if it were a plain connection. Dialling
 * (`--enable-tls`): the keep-alive pool speaks plain TCP only, so each TLS upstream gets a loopback
 * tunnel that the pool connects to and that wraps each connection in TLS on its way out.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer as createNetServer, isIP, type Server as NetServer, type Socket } from 'node:net';
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

/**
 * A loopback listener whose every connection is relayed over TLS to `host:port`. The pool dials the
 * tunnel; the tunnel dials out once per pooled connection, so keep-alive still holds end to end.
 */
export class TlsTunnel {
  private readonly server: NetServer;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(
    readonly host: string,
    readonly targetPort: number,
    private readonly insecure: boolean,
  ) {
    this.server = createNetServer({ noDelay: true }, (inner) => this.relay(inner));
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => {
        this.server.off('error', reject);
        this.port = (this.server.address() as { port: number }).port;
        resolve(this.port);
      });
    });
  }

  private relay(inner: Socket): void {
    const outer = tlsConnect({
      host: this.host,
      port: this.targetPort,
      // SNI takes names only.
      servername: isIP(this.host) === 0 ? this.host : undefined,
      rejectUnauthorized: !this.insecure,
      minVersion: 'TLSv1.2',
    });
    this.sockets.add(inner);
    this.sockets.add(outer);
    const done = (): void => {
      inner.destroy();
      outer.destroy();
      this.sockets.delete(inner);
      this.sockets.delete(outer);
    };
    inner.on('error', done).on('close', done);
    outer.on('error', done).on('close', done);
    outer.setNoDelay(true);
    inner.pipe(outer);
    outer.pipe(inner);
  }

  /** Stops accepting; with `destroy`, also cuts the connections it relays (else they end on their own). */
  close(destroy = true): void {
    this.server.close();
    if (!destroy) return;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }
}
