/**
 * Which pods a command follows, from the flags every pool-aware command shares (`llmd epp`,
 * `llmd kv-indexer`): `--pool-name` (with `--pool-group`) or `--endpoint-selector` with
 * `--endpoint-target-ports`, checked once here so both commands refuse the same things the same way.
 */
import { ConfigError } from '../errors.js';
import type { PoolSource } from './pool-pods.js';
import { poolVersion } from './resources.js';
import { parseLabelSelector } from './selector.js';

export interface PoolFlags {
  readonly poolName?: string;
  readonly poolGroup: string;
  readonly endpointSelector?: string;
  readonly endpointTargetPorts?: readonly number[];
}

/** The pods to follow; null when neither `--pool-name` nor `--endpoint-selector` is given. */
export function poolSourceOf(f: PoolFlags): PoolSource | null {
  const ports = f.endpointTargetPorts ?? [];
  if (f.poolName !== undefined && f.endpointSelector !== undefined)
    throw new ConfigError('--pool-name and --endpoint-selector are mutually exclusive', 'endpointSelector');
  if (f.endpointSelector === undefined) {
    if (ports.length > 0)
      throw new ConfigError(
        '--endpoint-target-ports is only used with --endpoint-selector',
        'endpointTargetPorts',
      );
  } else {
    if (ports.length === 0)
      throw new ConfigError('--endpoint-selector needs --endpoint-target-ports', 'endpointTargetPorts');
    if (ports.length > 8) throw new ConfigError('at most 8 target ports', 'endpointTargetPorts');
    if (new Set(ports).size !== ports.length)
      throw new ConfigError('target ports must be unique', 'endpointTargetPorts');
  }
  if (f.poolName !== undefined) {
    // An unknown group fails here, at start-up.
    poolVersion(f.poolGroup);
    return { kind: 'pool', name: f.poolName, group: f.poolGroup };
  }
  if (f.endpointSelector !== undefined) {
    return { kind: 'selector', selector: parseLabelSelector(f.endpointSelector), targetPorts: ports };
  }
  return null;
}

/** `--pool-namespace`, else the pod's namespace from env `NAMESPACE` (as upstream), else `default`. */
export function poolNamespaceOf(flag: string | undefined): string {
  const env = process.env.NAMESPACE;
  return flag ?? (env !== undefined && env !== '' ? env : 'default');
}
