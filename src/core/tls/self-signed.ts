/**
 * Serving certificates for the components that speak TLS (the EPP's ext_proc server, the sidecar's
 * `--secure-proxy`): the `tls.crt` and `tls.key` of a `--cert-path` directory, or, as upstream does
 * when none is given, a freshly generated self-signed one. Generated in-process with `selfsigned`
 * (WebCrypto), so no `openssl` binary is needed in the image.
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { generate } from 'selfsigned';
import { ConfigError } from '../errors.js';

export interface KeyPair {
  /** PEM. */
  readonly cert: Buffer;
  /** PEM (PKCS#8). */
  readonly key: Buffer;
  /** Whether it was generated here rather than read from `--cert-path`. */
  readonly selfSigned: boolean;
}

export interface SelfSignedOptions {
  /** Subject organisation: upstream names the component ("Inference Ext", "llm-d Routing Sidecar"). */
  readonly organization: string;
  /** Upstream's certificates are valid for ten years. */
  readonly validDays?: number;
  /** Subject alternative names (DNS names and IP addresses). */
  readonly hosts?: readonly string[];
}

/** What a client on the same machine dials, so that it can verify the certificate by name too. */
const LOOPBACK_HOSTS = ['localhost', '127.0.0.1', '::1'] as const;
const TEN_YEARS_DAYS = 3650;

/**
 * Upstream generates RSA-4096, which takes seconds of start-up in JavaScript; P-256 is used instead,
 * since every TLS 1.2+ client (Envoy included) speaks ECDSA. Like upstream: serverAuth only, not a CA.
 */
export async function generateSelfSigned(o: SelfSignedOptions): Promise<KeyPair> {
  const notBeforeDate = new Date();
  const notAfterDate = new Date(notBeforeDate.getTime() + (o.validDays ?? TEN_YEARS_DAYS) * 86_400_000);
  const hosts = o.hosts ?? LOOPBACK_HOSTS;
  const pems = await generate([{ name: 'organizationName', value: o.organization }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate,
    notAfterDate,
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: hosts.map((h) => (isIP(h) !== 0 ? { type: 7, ip: h } : { type: 2, value: h })),
      },
    ],
  });
  return { cert: Buffer.from(pems.cert), key: Buffer.from(pems.private), selfSigned: true };
}

export interface ServingCertificateOptions extends SelfSignedOptions {
  /** The flag that asked for TLS, to name in errors (`--secure-serving`, `--secure-proxy`). */
  readonly flag: string;
}

/** The serving certificate: `tls.crt` and `tls.key` from `certPath`, else a fresh self-signed one. */
export async function loadServingCertificate(
  certPath: string | undefined,
  o: ServingCertificateOptions,
): Promise<KeyPair> {
  if (certPath === undefined) {
    try {
      return await generateSelfSigned(o);
    } catch (err) {
      throw new ConfigError(
        `${o.flag}: generating a self-signed certificate failed (${(err as Error).message}); ` +
          'pass --cert-path <dir with tls.crt and tls.key>',
        'certPath',
      );
    }
  }
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
