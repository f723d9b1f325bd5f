/**
 * The KV-event wiring of `llmd serve`: start-up fails naming the field when the endpoint is unusable,
 * and `kvEventsMapFormat` switches the wire encoding.
 */
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/core/errors.js';
import { parseServeOptions } from '../../../src/engine/options.js';
import { startServe } from '../../../src/engine/serve.js';
import { waitFor } from '../../helpers/wait.js';
import { Collector, LOOPBACK_ANY_PORT } from './helpers.js';

const MODEL = 'Qwen/Qwen3-0.6B';

describe('llmd serve with --kv-events-config', () => {
  it('fails start-up with a ConfigError naming the endpoint when it cannot be bound', async () => {
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '0.0.0.0', r));
    try {
      const port = (busy.address() as AddressInfo).port;
      const err = await startServe({
        model: MODEL,
        host: '127.0.0.1',
        port: 0,
        logLevel: 'silent',
        kvEventsConfig: { enable_kv_cache_events: true, endpoint: `tcp://*:${port}` },
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).param).toBe('kvEventsConfig.endpoint');
      expect((err as ConfigError).message).toMatch(/--kv-events-config: field `endpoint`: cannot bind/);
    } finally {
      await new Promise<void>((r) => busy.close(() => r()));
    }
  });

  it('sends positional events by default and maps with kvEventsMapFormat', async () => {
    expect(parseServeOptions({ model: MODEL }).kvEventsMapFormat).toBe(false);
    for (const mapFormat of [false, true]) {
      const srv = await startServe({
        model: MODEL,
        host: '127.0.0.1',
        port: 0,
        simFixedStepMs: 1,
        logLevel: 'silent',
        kvEventsMapFormat: mapFormat,
        kvEventsConfig: { enable_kv_cache_events: true, endpoint: LOOPBACK_ANY_PORT },
      });
      const sub = new Collector(srv.kvEvents!.endpoint);
      try {
        // Repeat until the subscription has reached the publisher: each request stores new blocks.
        let i = 0;
        await waitFor(
          async () => {
            if (sub.messages.length > 0) return true;
            const prompt = Array.from({ length: 40 }, (_, k) => 1000 + i * 40 + k);
            i++;
            const res = await fetch(`${srv.url}/v1/completions`, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({ model: MODEL, prompt, max_tokens: 1 }),
            });
            await res.json();
            return sub.messages.length > 0;
          },
          15_000,
          'a KV event batch',
        );
        const payload = sub.raw[0]![2]!;
        // After the batch header (0x93), ts (9 bytes) and the events array header: the first event.
        const first = payload[11]!;
        expect((first & 0xf0) === 0x80).toBe(mapFormat);
        expect(sub.messages[0]!.batch.events[0]!.type).toBe('BlockStored');
      } finally {
        await sub.close();
        await srv.close();
      }
    }
  });
});
