/**
 * Test-side ZMQ peers of the KV-event publisher: a SUB that decodes what it receives, replay clients
 * (DEALER and REQ), and the event-sourced view of a cache. Sockets bind or connect on loopback with
 * ZMQ's wildcard port (`tcp://127.0.0.1:*`), so the OS picks a free port with no probe-then-reuse race.
 */
import { Dealer, Request, Subscriber } from 'zeromq';
import {
  decodeKvEventMessage,
  type DecodedKvEvent,
  type DecodedKvEventBatch,
  type DecodedKvEventMessage,
  type KvEventDecodeOptions,
} from '../../../src/kvcache/events/decode.js';
import { Rng } from '../../../src/core/rng.js';
import type { KvEvent } from '../../../src/engine/core/types.js';
import type { KvEventsConfig } from '../../../src/engine/options.js';

/** A loopback address on a port of the OS's choosing; it contains `*`, so vLLM's rule binds it. */
export const LOOPBACK_ANY_PORT = 'tcp://127.0.0.1:*';

export function kvConfig(over: Partial<KvEventsConfig> = {}): KvEventsConfig {
  return {
    enable_kv_cache_events: true,
    publisher: 'zmq',
    endpoint: LOOPBACK_ANY_PORT,
    replay_endpoint: null,
    buffer_steps: 10_000,
    hwm: 100_000,
    max_queue_size: 100_000,
    topic: 'kv@test-pod@test-model',
    ...over,
  };
}

export function seqBytes(seq: number | bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(seq));
  return b;
}

/** A SUB socket that keeps every raw message and its decoding. */
export class Collector {
  readonly raw: Buffer[][] = [];
  readonly messages: DecodedKvEventMessage[] = [];
  readonly errors: unknown[] = [];
  readonly sub: Subscriber;
  private readonly loop: Promise<void>;

  constructor(
    endpoint: string,
    opts: { bind?: boolean; topic?: string; decode?: KvEventDecodeOptions } = {},
  ) {
    this.sub = new Subscriber({ linger: 0 });
    if (opts.bind !== true) this.sub.connect(endpoint);
    this.sub.subscribe(opts.topic ?? '');
    this.loop = this.receive(opts.decode ?? {});
  }

  /** A SUB that binds (for a publisher in connect mode); resolves once bound. */
  static async bound(topic = ''): Promise<Collector> {
    const c = new Collector(LOOPBACK_ANY_PORT, { bind: true, topic });
    await c.sub.bind(LOOPBACK_ANY_PORT);
    return c;
  }

  get endpoint(): string {
    return this.sub.lastEndpoint ?? '';
  }

  async close(): Promise<void> {
    this.sub.close();
    await this.loop;
  }

  private async receive(decode: KvEventDecodeOptions): Promise<void> {
    try {
      for await (const frames of this.sub) {
        this.raw.push(frames);
        try {
          this.messages.push(decodeKvEventMessage(frames, decode));
        } catch (err) {
          this.errors.push(err);
        }
      }
    } catch {
      // The socket was closed under a pending receive.
    }
  }
}

export interface ReplayReply {
  readonly seq: bigint;
  readonly payload: Buffer;
}

const END = 0xffff_ffff_ffff_ffffn;

/**
 * Asks a replay ROUTER from `start` through a DEALER and collects every reply up to the end marker.
 * `delimiter` sends the empty frame a REQ would (vLLM's protocol); without it the DEALER sends `[start]`.
 */
export async function replayWithDealer(
  endpoint: string,
  start: number | bigint,
  delimiter = true,
): Promise<{ replies: ReplayReply[]; frames: Buffer[][] }> {
  const dealer = new Dealer({ linger: 0, receiveTimeout: 10_000 });
  dealer.connect(endpoint);
  try {
    await dealer.send(delimiter ? [Buffer.alloc(0), seqBytes(start)] : [seqBytes(start)]);
    const replies: ReplayReply[] = [];
    const frames: Buffer[][] = [];
    for (;;) {
      const msg = await dealer.receive();
      frames.push(msg);
      const body = delimiter ? msg.slice(1) : msg;
      const seq = (body[0] as Buffer).readBigUInt64BE(0);
      if (seq === END) return { replies, frames };
      replies.push({ seq, payload: body[1] as Buffer });
    }
  } finally {
    dealer.close();
  }
}

/** One REQ round trip: a REQ gets exactly one reply (the first of the stream). */
export async function replayWithReq(endpoint: string, start: number | bigint): Promise<Buffer[]> {
  const req = new Request({ linger: 0, receiveTimeout: 10_000 });
  req.connect(endpoint);
  try {
    await req.send(seqBytes(start));
    return await req.receive();
  } finally {
    req.close();
  }
}

/** The multiset of cached block hashes that a stream of batches describes, applied in order. */
export function rebuildCache(batches: readonly DecodedKvEventBatch[]): {
  cached: Map<bigint, number>;
  anomalies: string[];
} {
  const cached = new Map<bigint, number>();
  const anomalies: string[] = [];
  for (const b of batches) {
    for (const e of b.events) {
      if (e.type === 'AllBlocksCleared') {
        cached.clear();
      } else if (e.type === 'BlockStored') {
        for (const h of e.blockHashes) cached.set(h, (cached.get(h) ?? 0) + 1);
      } else {
        for (const h of e.blockHashes) {
          const n = (cached.get(h) ?? 0) - 1;
          if (n < 0) anomalies.push(`removed ${h}, which was not stored`);
          if (n <= 0) cached.delete(h);
          else cached.set(h, n);
        }
      }
    }
  }
  return { cached, anomalies };
}

/** A map of counts in a form `toEqual` compares and prints well. */
export function sortedCounts(m: ReadonlyMap<bigint, number>): [string, number][] {
  return [...m].map(([h, n]): [string, number] => [h.toString(16), n]).sort((a, b) => (a[0] < b[0] ? -1 : 1));
}

/** What a decoder should see for one of the engine's events, in vLLM's layout. */
export function expectedDecoded(e: KvEvent): DecodedKvEvent {
  switch (e.type) {
    case 'BlockStored':
      return {
        type: 'BlockStored',
        blockHashes: e.blockHashes,
        parentBlockHash: e.parentBlockHash,
        tokenIds: e.tokenIds,
        blockSize: e.blockSize,
        loraId: null,
        medium: 'GPU',
        loraName: e.loraName,
        extraKeys: null,
        groupIdx: 0,
        kvCacheSpecKind: null,
        kvCacheSpecSlidingWindow: null,
        cacheSalt: null,
      };
    case 'BlockRemoved':
      return { type: 'BlockRemoved', blockHashes: e.blockHashes, medium: 'GPU', groupIdx: 0 };
    case 'AllBlocksCleared':
      return { type: 'AllBlocksCleared' };
  }
}

function randomHash(rng: Rng): bigint {
  const widths = [7n, 8n, 16n, 32n, 53n, 63n, 64n];
  const bits = widths[rng.int(0, widths.length - 1)]!;
  let h = 0n;
  for (let i = 0n; i < bits; i += 16n) h = (h << 16n) | BigInt(rng.int(0, 0xffff));
  return BigInt.asUintN(Number(bits), h);
}

/** A random batch of the engine's events, the shapes a real step produces. */
export function randomEvents(rng: Rng, n: number): KvEvent[] {
  const out: KvEvent[] = [];
  for (let i = 0; i < n; i++) {
    const kind = rng.int(0, 9);
    if (kind < 5) {
      const blocks = rng.int(1, 6);
      const blockSize = [1, 4, 16][rng.int(0, 2)]!;
      out.push({
        type: 'BlockStored',
        blockHashes: Array.from({ length: blocks }, () => randomHash(rng)),
        parentBlockHash: rng.int(0, 1) === 0 ? null : randomHash(rng),
        tokenIds: Array.from({ length: blocks * blockSize }, () => rng.int(0, 151_935)),
        blockSize,
        loraName: rng.int(0, 3) === 0 ? `lora-${'x'.repeat(rng.int(0, 40))}-é` : null,
        medium: 'GPU',
        extraKeys: null,
      });
    } else if (kind < 9) {
      out.push({
        type: 'BlockRemoved',
        blockHashes: Array.from({ length: rng.int(1, 3) }, () => randomHash(rng)),
        medium: 'GPU',
      });
    } else {
      out.push({ type: 'AllBlocksCleared' });
    }
  }
  return out;
}
