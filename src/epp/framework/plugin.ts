/**
 * The base of every EPP plugin and what a plugin factory is given. Contracts only: nothing in
 * `src/epp/framework/` imports a plugin, a transport or a Kubernetes client.
 */
import type { z } from 'zod';
import type { Logger } from '../../core/log.js';
import type { Rng } from '../../core/rng.js';
import type { EndpointSource } from './endpoint.js';

/** A plugin's identity: its upstream type name (`queue-scorer`) and its name in the config. */
export interface TypedName {
  readonly type: string;
  readonly name: string;
}

export interface Plugin {
  readonly typedName: TypedName;
  /**
   * Called once after every plugin of the configuration exists, so that references to other plugins
   * by name can be resolved and checked; throw a `ConfigError` naming the plugin and field.
   */
  init?(): void;
  /**
   * Called once before traffic, for plugins that open sockets or connect to services; a rejection
   * fails the start with its message.
   */
  open?(): Promise<void>;
  /** Called on shutdown: stop timers, close sockets. */
  close?(): void | Promise<void>;
}

/** What a factory may use. */
export interface PluginHandle {
  readonly logger: Logger;
  /** Seeded: every random choice a plugin makes goes through it. */
  readonly rng: Rng;
  /** Monotonic milliseconds. */
  readonly clock: () => number;
  readonly endpoints: EndpointSource;
  /** Another plugin of the same configuration, by name; undefined until every plugin is created. */
  plugin(name: string): Plugin | undefined;
  /** Every plugin of the configuration (after creation). */
  plugins(): readonly Plugin[];
}

export type Stability = 'stable' | 'alpha';

/** One plugin type as the registry knows it. */
export interface PluginDefinition<P = unknown> {
  /** The upstream type name. */
  readonly type: string;
  /** Deprecated type names that still resolve to this definition. */
  readonly aliases?: readonly string[];
  /** Set when the type itself is deprecated: the warning the loader logs once. */
  readonly deprecated?: string;
  readonly stability?: Stability;
  /** A strict schema: unknown fields are rejected with an error naming the plugin and the field. */
  readonly params: z.ZodType<P, z.ZodTypeDef, unknown>;
  create(name: string, params: P, handle: PluginHandle): Plugin;
}

/**
 * Declares a plugin type with its params schema inferred: `definePlugin({ type, params, create })`.
 * The result is assignable to `PluginDefinition` for the registry.
 */
export function definePlugin<S extends z.ZodTypeAny>(def: {
  type: string;
  aliases?: readonly string[];
  deprecated?: string;
  stability?: Stability;
  params: S;
  create(name: string, params: z.output<S>, handle: PluginHandle): Plugin;
}): PluginDefinition {
  return def as unknown as PluginDefinition;
}
