/**
 * The sidecar's options, checked once at start-up. Names and defaults follow llm-d's routing sidecar
 * (`pkg/sidecar/proxy/options.go`); a violation is a ConfigError that names the flag.
 */
import { z } from 'zod';
import { ConfigError } from '../core/errors.js';
import { ALPHA_POOL_GROUP, DEFAULT_POOL_GROUP } from '../core/kubernetes/resources.js';
import { LOG_LEVELS } from '../core/log.js';
import { CONNECTOR_NAMES } from './connectors/connector.js';
import { DEFAULT_SGLANG_BOOTSTRAP_PORT } from './connectors/sglang.js';

/** Stages that can talk TLS; `encoder` is accepted for llm-d's flag values, and has no stage here. */
export const TLS_STAGES = ['prefiller', 'decoder', 'encoder'] as const;
export type TlsStage = (typeof TLS_STAGES)[number];

export const FAILURE_POLICIES = ['fallback', 'fail'] as const;

const port = z.number().int().min(0).max(65535);
const stageList = z.array(z.enum(TLS_STAGES)).default([]);

export const SidecarOptionsSchema = z
  .object({
    /** Listen address (upstream listens on every interface). */
    host: z.string().min(1).default('0.0.0.0'),
    /** 0 picks a free port (each data-parallel listener its own). */
    port: port.default(8000),
    /** Where the local model server listens; upstream dials `localhost`. */
    modelServerHost: z.string().min(1).default('127.0.0.1'),
    /** llm-d's router sidecar default; its predecessors used 8001. */
    modelServerPort: port.min(1).default(8200),
    /** `lmcache` is the old name of `shared-storage`. */
    connector: z
      .enum([...CONNECTOR_NAMES, 'lmcache'])
      .transform((c) => (c === 'lmcache' ? 'shared-storage' : c))
      .default('nixlv2'),
    enableSsrfProtection: z.boolean().default(false),
    /** `namespace/name` or `name`: with SSRF protection, the pool whose pods are the allowlist. */
    inferencePool: z
      .string()
      .regex(/^([^/\s]+\/)?[^/\s]+$/, 'expected namespace/name or name')
      .optional(),
    /** The InferencePool API group: `inference.networking.k8s.io` (v1) or `.x-k8s.io` (v1alpha2). */
    poolGroup: z
      .string()
      .refine((g) => g === DEFAULT_POOL_GROUP || g === ALPHA_POOL_GROUP, {
        message: `expected ${DEFAULT_POOL_GROUP} or ${ALPHA_POOL_GROUP}`,
      })
      .default(DEFAULT_POOL_GROUP),
    /** A kubeconfig file; otherwise KUBECONFIG, ~/.kube/config or the in-cluster service account. */
    kubeconfig: z.string().min(1).optional(),
    /** The static SSRF allowlist: IP addresses and host names. */
    allowedPrefillHosts: z.array(z.string()).default([]),
    /** Serve HTTPS. Off by default here, unlike upstream: see the flag's help. */
    secureProxy: z.boolean().default(false),
    /** Directory with `tls.crt` and `tls.key`. */
    certPath: z.string().min(1).optional(),
    enableTls: stageList,
    tlsInsecureSkipVerify: stageList,
    enablePrefillerSampling: z.boolean().default(false),
    dataParallelSize: z.number().int().min(1).max(256).default(1),
    prefillMaxRetries: z.number().int().min(0).max(100).default(0),
    prefillRetryBackoffMs: z.number().min(0).default(200),
    /** The whole prefill stage, retries included, is bounded by this. */
    prefillTimeoutMs: z.number().positive().default(60_000),
    /** fallback: decode locally with the client's body; fail: the client gets the prefill's error. */
    prefillFailurePolicy: z.enum(FAILURE_POLICIES).default('fallback'),
    sglangBootstrapPort: port.min(1).default(DEFAULT_SGLANG_BOOTSTRAP_PORT),
    /** Seed of the prefiller sampling and of SGLang's bootstrap rooms. */
    seed: z.number().int().default(0),
    maxRequestBodyBytes: z
      .number()
      .int()
      .positive()
      .default(64 * 1024 * 1024),
    connectTimeoutMs: z.number().positive().default(2_000),
    logLevel: z.enum(LOG_LEVELS).default('info'),
  })
  .strict()
  .superRefine((o, ctx) => {
    const last = o.dataParallelSize - 1;
    if (o.port > 0 && o.port + last > 65535)
      ctx.addIssue({ code: 'custom', path: ['port'], message: `port range ${o.port}+${last} exceeds 65535` });
    if (o.modelServerPort + last > 65535)
      ctx.addIssue({
        code: 'custom',
        path: ['modelServerPort'],
        message: `port range ${o.modelServerPort}+${last} exceeds 65535`,
      });
    if (o.prefillMaxRetries > 0 && o.prefillRetryBackoffMs <= 0)
      ctx.addIssue({
        code: 'custom',
        path: ['prefillRetryBackoffMs'],
        message: 'must be positive when --prefill-max-retries > 0',
      });
  });

export type SidecarOptionsInput = z.input<typeof SidecarOptionsSchema>;
export type SidecarOptions = z.output<typeof SidecarOptionsSchema>;

/** Option field → the flag a user wrote, for error messages. */
export const FLAG_OF: Readonly<Record<keyof SidecarOptions, string>> = {
  host: '--host',
  port: '--port',
  modelServerHost: '--model-server-host',
  modelServerPort: '--model-server-port',
  connector: '--kv-connector',
  enableSsrfProtection: '--enable-ssrf-protection',
  inferencePool: '--inference-pool',
  poolGroup: '--pool-group',
  kubeconfig: '--kubeconfig',
  allowedPrefillHosts: '--allowed-prefill-hosts',
  secureProxy: '--secure-proxy',
  certPath: '--cert-path',
  enableTls: '--enable-tls',
  tlsInsecureSkipVerify: '--tls-insecure-skip-verify',
  enablePrefillerSampling: '--enable-prefiller-sampling',
  dataParallelSize: '--data-parallel-size',
  prefillMaxRetries: '--prefill-max-retries',
  prefillRetryBackoffMs: '--prefill-retry-backoff',
  prefillTimeoutMs: '--prefill-timeout',
  prefillFailurePolicy: '--prefill-failure-policy',
  sglangBootstrapPort: '--sglang-bootstrap-port',
  seed: '--seed',
  maxRequestBodyBytes: '--max-request-body-size-mb',
  connectTimeoutMs: 'connectTimeoutMs',
  logLevel: '--log-level',
};

export function parseSidecarOptions(input: SidecarOptionsInput): SidecarOptions {
  const parsed = SidecarOptionsSchema.safeParse(input);
  if (!parsed.success) {
    const i = parsed.error.issues[0]!;
    const field = String(i.path[0] ?? '');
    const flag = FLAG_OF[field as keyof SidecarOptions] ?? field;
    throw new ConfigError(`${flag}: ${i.message}`, field);
  }
  return parsed.data;
}
