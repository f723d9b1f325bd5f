/**
 * vLLM's `ZmqEventPublisher` (vllm/distributed/kv_events.py): a ZMQ PUB socket sending one message of
 * three frames `[topic, seq (8 bytes big-endian, from 0), msgpack batch]` per engine step with events,
 * and an optional ROUTER at `replay_endpoint` that streams the last `buffer_steps` batches from a
 * requested sequence number, then the end marker (seq −1, empty payload).
 *
 * The engine loop calls `publish` synchronously and it never throws or waits: the batch is encoded,
 * numbered, kept for replay and queued; an async pump hands the queue to the socket. When the queue is
 * full the live send is dropped and counted, but the batch keeps its sequence number and stays in the
 * replay buffer, so a subscriber sees the gap and can fetch it. `zeromq` is imported only here, on
 * first use, so a server without KV events never loads the native module.
 */
import type { Publisher, Router } from 'zeromq';
import { ConfigError } from '../../core/errors.js';
import { silentLogger, type Logger } from '../../core/log.js';
import type { KvEvent } from '../core/types.js';
import type { KvEventsConfig } from '../options.js';
import { KvEventEncoder } from './encode.js';
import { Ring } from './ring.js';

/** vLLM's `END_SEQ`: −1 as a signed 8-byte big-endian integer. */
export const END_OF_REPLAY = Buffer.alloc(8, 0xff);

const EMPTY = Buffer.alloc(0);
/** Pending live messages may take this long to leave at close; vLLM's shutdown waits similarly. */
const PUB_LINGER_MS = 500;
/** A replay client that stops reading is abandoned after this long, so the next one is served. */
const REPLAY_SEND_TIMEOUT_MS = 2_000;

/** vLLM's rule: bind if the endpoint has a wildcard (`*`), an IPv6 any (`::`), or is ipc/inproc. */
export function shouldBind(endpoint: string): boolean {
  return (
    endpoint.includes('*') ||
    endpoint.includes('::') ||
    endpoint.startsWith('ipc://') ||
    endpoint.startsWith('inproc://')
  );
}

export interface KvEventPublisherOptions {
  readonly config: KvEventsConfig;
  /** Encode events as `type`-tagged maps (vLLM ≥ PR #42892) instead of positional arrays. */
  readonly mapFormat?: boolean;
  /** Stamped on every batch; vLLM sends 0 without data parallelism. */
  readonly dataParallelRank?: number;
  readonly logger?: Logger;
}

export interface KvEventPublisherStats {
  /** Batches handed to the PUB socket. */
  readonly published: number;
  /** Batches not sent live because the queue was full; still in the replay buffer. */
  readonly dropped: number;
  /** Batches that failed to encode or to send. */
  readonly failed: number;
  /** Batches waiting for the socket. */
  readonly queued: number;
  /** The sequence number the next batch gets. */
  readonly nextSeq: number;
  readonly replayRequests: number;
}

interface Batch {
  readonly seq: number;
  readonly seqFrame: Buffer;
  readonly payload: Buffer;
}

function seqFrame(seq: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeUInt32BE(Math.floor(seq / 0x1_0000_0000), 0);
  b.writeUInt32BE(seq >>> 0, 4);
  return b;
}

function reason(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class KvEventPublisher {
  /** Opens the sockets; a bad or busy address fails with a `ConfigError` naming the field. */
  static async create(opts: KvEventPublisherOptions): Promise<KvEventPublisher> {
    const cfg = opts.config;
    const zmq = await import('zeromq');
    const pub = new zmq.Publisher({ sendHighWaterMark: cfg.hwm, linger: PUB_LINGER_MS });
    const bind = shouldBind(cfg.endpoint);
    try {
      if (bind) await pub.bind(cfg.endpoint);
      else pub.connect(cfg.endpoint);
    } catch (err) {
      pub.close();
      throw new ConfigError(
        `--kv-events-config: field \`endpoint\`: cannot ${bind ? 'bind' : 'connect'} ${cfg.endpoint}: ${reason(err)}`,
        'kvEventsConfig.endpoint',
      );
    }
    let router: Router | null = null;
    if (cfg.replay_endpoint) {
      // `mandatory`: at the peer's high-water mark a send waits (up to the timeout) instead of silently
      // dropping the middle of a replay; a vanished peer fails the send instead of swallowing it.
      router = new zmq.Router({ mandatory: true, sendTimeout: REPLAY_SEND_TIMEOUT_MS, linger: 0 });
      try {
        await router.bind(cfg.replay_endpoint);
      } catch (err) {
        router.close();
        pub.close();
        throw new ConfigError(
          `--kv-events-config: field \`replay_endpoint\`: cannot bind ${cfg.replay_endpoint}: ${reason(err)}`,
          'kvEventsConfig.replay_endpoint',
        );
      }
    }
    return new KvEventPublisher(opts, pub, router);
  }

  private readonly log: Logger;
  private readonly encoder: KvEventEncoder;
  private readonly topic: Buffer;
  private readonly queue: Ring<Batch>;
  private readonly buffer: Ring<Batch> | null;
  private seq = 0;
  private published = 0;
  private dropped = 0;
  private failed = 0;
  private replayRequests = 0;
  private pumping = false;
  private draining: Promise<void> = Promise.resolve();
  private closed = false;
  private closing: Promise<void> | null = null;
  private readonly replayLoop: Promise<void> | null;

  private constructor(
    opts: KvEventPublisherOptions,
    private readonly pub: Publisher,
    private readonly router: Router | null,
  ) {
    const cfg = opts.config;
    this.log = opts.logger ?? silentLogger();
    this.encoder = new KvEventEncoder({
      mapFormat: opts.mapFormat === true,
      dataParallelRank: opts.dataParallelRank ?? 0,
    });
    this.topic = Buffer.from(cfg.topic, 'utf8');
    this.queue = new Ring<Batch>(cfg.max_queue_size);
    this.buffer = router === null ? null : new Ring<Batch>(cfg.buffer_steps);
    this.replayLoop = router === null ? null : this.serveReplay(router);
  }

  /** The PUB address as bound (a wildcard port resolved), or as configured when connecting. */
  get endpoint(): string {
    return this.pub.lastEndpoint ?? '';
  }

  /** The ROUTER address as bound, or null without replay. */
  get replayEndpoint(): string | null {
    return this.router === null ? null : (this.router.lastEndpoint ?? null);
  }

  get stats(): KvEventPublisherStats {
    return {
      published: this.published,
      dropped: this.dropped,
      failed: this.failed,
      queued: this.queue.size,
      nextSeq: this.seq,
      replayRequests: this.replayRequests,
    };
  }

  /** One engine step's events as one batch; `ts` in unix seconds. Never throws, never waits. */
  publish(events: readonly KvEvent[], ts: number = Date.now() / 1000): void {
    if (this.closed || events.length === 0) return;
    try {
      const payload = this.encoder.encode(ts, events);
      const seq = this.seq++;
      const batch: Batch = { seq, seqFrame: seqFrame(seq), payload };
      this.buffer?.push(batch);
      if (this.queue.full) {
        this.dropped++;
        this.log.debug(
          { seq, dropped: this.dropped },
          'KV event queue full: batch dropped from the live stream',
        );
        return;
      }
      this.queue.push(batch);
      if (!this.pumping) {
        this.pumping = true;
        this.draining = this.drain();
      }
    } catch (err) {
      // An unencodable event (a hash outside 64 bits) is a bug upstream; the engine loop goes on.
      this.failed++;
      this.log.debug({ err }, 'KV event batch not published');
    }
  }

  /** Sends what is queued, then closes both sockets. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      await this.draining;
      this.pub.close();
      this.router?.close();
      await this.replayLoop;
    })();
    return this.closing;
  }

  private async drain(): Promise<void> {
    try {
      for (let b = this.queue.shift(); b !== undefined; b = this.queue.shift()) {
        try {
          // A PUB socket never blocks (it drops at a subscriber's high-water mark), so this resolves at once.
          await this.pub.send([this.topic, b.seqFrame, b.payload]);
          this.published++;
        } catch (err) {
          this.failed++;
          this.log.debug({ err, seq: b.seq }, 'KV event batch not sent');
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  private async serveReplay(router: Router): Promise<void> {
    try {
      for await (const frames of router) await this.answerReplay(router, frames);
    } catch (err) {
      if (!this.closed) this.log.debug({ err }, 'KV event replay socket failed');
    }
  }

  /**
   * `[identity, "", start]` from a REQ (or a DEALER that sends the delimiter) is answered with
   * `[identity, "", seq, payload]` per buffered batch from `start`, then `[identity, "", END, ""]`; a
   * DEALER that sends `[start]` alone gets the same frames without the delimiter.
   */
  private async answerReplay(router: Router, frames: Buffer[]): Promise<void> {
    this.replayRequests++;
    const identity = frames[0] as Buffer;
    let delimited: boolean;
    let start: Buffer;
    if (frames.length === 3 && (frames[1] as Buffer).length === 0) {
      delimited = true;
      start = frames[2] as Buffer;
    } else if (frames.length === 2) {
      delimited = false;
      start = frames[1] as Buffer;
    } else {
      this.log.debug({ frames: frames.length }, 'invalid KV event replay request');
      return;
    }
    if (start.length > 8) {
      this.log.debug({ bytes: start.length }, 'invalid KV event replay start sequence');
      return;
    }
    // Big-endian of whatever length was sent, as Python's int.from_bytes reads it.
    let from = 0n;
    for (const byte of start) from = (from << 8n) | BigInt(byte);
    const batches = this.buffer?.sliceFrom((b) => BigInt(b.seq) >= from) ?? [];
    const head = delimited ? [identity, EMPTY] : [identity];
    try {
      for (const b of batches) await router.send([...head, b.seqFrame, b.payload]);
      await router.send([...head, END_OF_REPLAY, EMPTY]);
    } catch (err) {
      this.log.debug({ err }, 'KV event replay abandoned');
    }
  }
}
