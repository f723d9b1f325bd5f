/**
 * TLS for the sidecar. Serving (`--secure-proxy`): a certificate from `--cert-path` (tls.crt, tls.key),
 * else a self-signed one (core/tls); the TLS socket is handed to the HTTP/1.1 server as if it were a
 * plain connection. Dialling (`--enable-tls`): the keep-alive pool opens its connections with
 * `tls.connect`.
 */
import { isIP, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { loadServingCertificate, type KeyPair } from '../core/tls/self-signed.js';

export type { KeyPair };

/** The serving certificate: from `certPath`, or freshly self-signed with upstream's subject. */
export function loadServerCertificate(certPath: string | undefined): Promise<KeyPair> {
  return loadServingCertificate(certPath, { organization: 'llm-d Routing Sidecar', flag: '--secure-proxy' });
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
