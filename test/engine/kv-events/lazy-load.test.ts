/**
 * A model server without KV events never loads the native `zeromq` module (it is imported inside the
 * publisher's factory). This file imports nothing else that would load it.
 */
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { startServe } from '../../../src/engine/serve.js';

function zeromqLoaded(): boolean {
  const cache = createRequire(import.meta.url).cache;
  return Object.keys(cache).some((p) => /[\\/]node_modules[\\/]zeromq[\\/]/.test(p));
}

describe('loading zeromq', () => {
  it('does not happen for a server without KV events, and happens for one with them', async () => {
    const plain = await startServe({
      model: 'Qwen/Qwen3-0.6B',
      host: '127.0.0.1',
      port: 0,
      logLevel: 'silent',
    });
    expect(plain.kvEvents).toBeNull();
    await plain.close();
    const nullPublisher = await startServe({
      model: 'Qwen/Qwen3-0.6B',
      host: '127.0.0.1',
      port: 0,
      logLevel: 'silent',
      kvEventsConfig: { enable_kv_cache_events: true, publisher: 'null' },
    });
    expect(nullPublisher.kvEvents).toBeNull();
    await nullPublisher.close();
    expect(zeromqLoaded()).toBe(false);

    const withEvents = await startServe({
      model: 'Qwen/Qwen3-0.6B',
      host: '127.0.0.1',
      port: 0,
      logLevel: 'silent',
      kvEventsConfig: { enable_kv_cache_events: true, endpoint: 'tcp://127.0.0.1:*' },
    });
    expect(withEvents.kvEvents).not.toBeNull();
    await withEvents.close();
    expect(zeromqLoaded()).toBe(true);
  });
});
