/**
 * `EndpointPickerConfig` as llm-d reads it (upstream `apix/config/v1alpha1/endpointpickerconfig_types.go`):
 * the envelope only. Plugin parameters are validated by each plugin's own schema. Decoding is strict:
 * an unknown field anywhere is an error naming it.
 */
import { z } from 'zod';

export const API_VERSION = 'llm-d.ai/v1alpha1';
/** The GIE-era value, still accepted. */
export const LEGACY_API_VERSION = 'inference.networking.x-k8s.io/v1alpha1';

const PluginRef = z.object({ pluginRef: z.string().min(1) }).strict();

export const PluginSpecSchema = z
  .object({
    name: z.string().min(1).optional(),
    type: z.string().min(1),
    parameters: z.unknown().optional(),
  })
  .strict();

export const ProfileSchema = z
  .object({
    name: z.string().min(1),
    plugins: z
      .array(z.object({ pluginRef: z.string().min(1), weight: z.number().finite().optional() }).strict())
      .default([]),
  })
  .strict();

export const DataLayerSchema = z
  .object({
    injectDefaults: z.boolean().optional(),
    sources: z
      .array(z.object({ pluginRef: z.string().min(1), extractors: z.array(PluginRef).default([]) }).strict())
      .optional(),
    discovery: PluginRef.optional(),
    peerDiscovery: PluginRef.optional(),
    crossReplicaSyncerPluginRef: z.string().optional(),
    crossReplicaSyncInterval: z.string().optional(),
  })
  .strict();

export const EndpointPickerConfigSchema = z
  .object({
    apiVersion: z.enum([API_VERSION, LEGACY_API_VERSION]),
    kind: z.literal('EndpointPickerConfig'),
    featureGates: z.array(z.string().min(1)).optional(),
    plugins: z.array(PluginSpecSchema).default([]),
    schedulingProfiles: z.array(ProfileSchema).default([]),
    dataLayer: DataLayerSchema.optional(),
    flowControl: z.record(z.unknown()).optional(),
    requestHandler: z
      .object({ parsers: z.array(PluginRef).default([]) })
      .strict()
      .optional(),
    // Deprecated locations, still read.
    saturationDetector: PluginRef.optional(),
    parser: PluginRef.optional(),
  })
  .strict();

export type EndpointPickerConfigDoc = z.infer<typeof EndpointPickerConfigSchema>;
export type PluginSpec = z.infer<typeof PluginSpecSchema>;

/** What llm-d runs when no configuration is given (GIE PR #1827's weights: prefix 3, queue 2, kv 2). */
export const DEFAULT_CONFIG: EndpointPickerConfigDoc = {
  apiVersion: API_VERSION,
  kind: 'EndpointPickerConfig',
  plugins: [
    { type: 'queue-scorer' },
    { type: 'kv-cache-utilization-scorer' },
    { type: 'prefix-cache-scorer' },
    { type: 'metrics-data-source' },
    { type: 'core-metrics-extractor' },
  ],
  schedulingProfiles: [
    {
      name: 'default',
      plugins: [
        { pluginRef: 'queue-scorer', weight: 2 },
        { pluginRef: 'kv-cache-utilization-scorer', weight: 2 },
        { pluginRef: 'prefix-cache-scorer', weight: 3 },
      ],
    },
  ],
};

/** Feature gates llm-d registers, with their defaults. */
export const FEATURE_GATES: Readonly<Record<string, boolean>> = {
  flowControl: false,
  haPopulateNonLeaderDatastore: true,
  // Upstream no-ops, accepted so older configs load.
  dataLayer: true,
  enableLegacyMetrics: true,
};
