/**
 * Per-request state shared by the plugins of one request: producers write, scorers and deciders read.
 * Keys are typed, so `read(KEY)` returns the key's type without a cast; the map is created on first
 * write.
 */

/** A typed key. `defaultProducer` names the producer type the loader adds when a consumer needs it. */
export class DataKey<T> {
  declare private readonly _type: T;
  constructor(
    readonly name: string,
    readonly defaultProducer?: string,
  ) {}
}

export class CycleState {
  private map: Map<string, unknown> | null = null;

  read<T>(key: DataKey<T>): T | undefined {
    return this.map?.get(key.name) as T | undefined;
  }

  /** Under a name other than the key's own (several producers of one key type, e.g. by plugin name). */
  readAs<T>(key: DataKey<T>, name: string): T | undefined {
    return this.map?.get(key.name + '/' + name) as T | undefined;
  }

  write<T>(key: DataKey<T>, value: T): void {
    (this.map ??= new Map()).set(key.name, value);
  }

  writeAs<T>(key: DataKey<T>, name: string, value: T): void {
    (this.map ??= new Map()).set(key.name + '/' + name, value);
  }

  has(key: DataKey<unknown>): boolean {
    return this.map?.has(key.name) ?? false;
  }
}
