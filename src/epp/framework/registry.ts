/**
 * Plugin types by their upstream names. An instance, not a global: the in-tree list fills one
 * (`src/epp/plugins/registry.ts`), out-of-tree plugins are merged in, and registering a type or alias
 * twice is an error rather than a silent overwrite.
 */
import type { PluginDefinition } from './plugin.js';

export interface Resolved {
  readonly def: PluginDefinition;
  /** The deprecated alias the config used, if it used one. */
  readonly alias: string | null;
}

export class PluginRegistry {
  private readonly defs = new Map<string, PluginDefinition>();
  private readonly aliases = new Map<string, string>();

  register(def: PluginDefinition): this {
    for (const name of [def.type, ...(def.aliases ?? [])]) {
      if (this.defs.has(name) || this.aliases.has(name)) {
        throw new Error(`plugin type ${name} is registered twice`);
      }
    }
    this.defs.set(def.type, def);
    for (const a of def.aliases ?? []) this.aliases.set(a, def.type);
    return this;
  }

  merge(other: PluginRegistry): this {
    for (const def of other.defs.values()) this.register(def);
    return this;
  }

  resolve(type: string): Resolved | undefined {
    const def = this.defs.get(type);
    if (def) return { def, alias: null };
    const target = this.aliases.get(type);
    if (target === undefined) return undefined;
    return { def: this.defs.get(target)!, alias: type };
  }

  types(): string[] {
    return [...this.defs.keys()].sort();
  }
}
