/** Per-endpoint plugin attributes: a map behind typed keys. */
import type { AttributeKey, Attributes } from '../framework/endpoint.js';

export class AttributeMap implements Attributes {
  private readonly map = new Map<string, unknown>();

  get<T>(key: AttributeKey<T>): T | undefined {
    return this.map.get(key.name) as T | undefined;
  }

  set<T>(key: AttributeKey<T>, value: T): void {
    this.map.set(key.name, value);
  }

  delete(key: AttributeKey<unknown>): void {
    this.map.delete(key.name);
  }
}
