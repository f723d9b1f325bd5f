/**
 * ZMQ SUB sockets for KV events, in llm-d's two topologies (spec/kvcache.md §2.8):
 *
 *  - central: one socket BINDS an endpoint (`tcp://*:5557`) and every server's PUB connects to it;
 *    a message's server is the pod segment of its topic;
 *  - per endpoint: one socket per server DIALS its PUB (`tcp://<host>:<port>`), kept as a set by id
 *    (`ensure` is idempotent, a changed endpoint replaces the socket, `remove` closes it); the id is the
 *    server's identity whatever the topic says (the router's `sourceEndpoint`).
 *
 * A message must have exactly three frames and an 8-byte sequence frame, else it is counted and
 * skipped. No error stops a subscriber: a failed bind or connect, or a receive that fails, closes the
 * socket, counts the error, and a new socket is made after `retryIntervalMs` (ZMQ itself reconnects a
 * dialled socket to a server that restarts). `zeromq` is imported on first use only.
 */
import type { Subscriber } from 'zeromq';
import { silentLogger, type Logger } from '../../core/log.js';
import type { IngestCounters } from './stats.js';

/** Where a subscriber hands a well-framed message; `source` is its forced server id, or null. */
export type MessageSink = (
  topic: Uint8Array,
  seq: Uint8Array,
  payload: Uint8Array,
  source: string | null,
) => void;

export interface SubscriberOptions {
  /** ZMQ prefix filter on the topic (llm-d's `topicFilter`, default `kv@`). */
  readonly topicFilter?: string;
  /** Pause before a failed socket is made again (llm-d: 5 s). */
  readonly retryIntervalMs?: number;
  /** Messages the socket buffers before ZMQ drops (vLLM's PUB keeps 100 000). */
  readonly receiveHighWaterMark?: number;
  /**
   * A dialling socket's connection was made: `first` for the first one of this subscriber, false for
   * each one after (the server came back, perhaps as a new process). Not called for a bound socket.
   */
  readonly onConnect?: (source: string | null, first: boolean) => void;
  readonly logger?: Logger;
}

export const DEFAULT_TOPIC_FILTER = 'kv@';
export const DEFAULT_RETRY_INTERVAL_MS = 5_000;
const DEFAULT_RECEIVE_HWM = 100_000;

function reason(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** One SUB socket that binds or dials one endpoint, remade after any failure until closed. */
export class ZmqSubscriber {
  private socket: Subscriber | null = null;
  private closed = false;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private bound: string | null = null;
  private readonly filter: string;
  private readonly retryMs: number;
  private readonly hwm: number;
  private readonly log: Logger;
  private readonly onConnect: ((source: string | null, first: boolean) => void) | null;
  private connectedBefore = false;

  constructor(
    readonly endpoint: string,
    readonly mode: 'bind' | 'connect',
    /** The server id forced on every message (per-endpoint topology), or null (central). */
    readonly source: string | null,
    private readonly sink: MessageSink,
    private readonly counters: IngestCounters,
    opts: SubscriberOptions = {},
  ) {
    this.filter = opts.topicFilter ?? DEFAULT_TOPIC_FILTER;
    this.retryMs = opts.retryIntervalMs ?? DEFAULT_RETRY_INTERVAL_MS;
    this.hwm = opts.receiveHighWaterMark ?? DEFAULT_RECEIVE_HWM;
    this.log = opts.logger ?? silentLogger();
    this.onConnect = opts.onConnect ?? null;
  }

  /** The address as bound (a wildcard port resolved); null while not bound or when dialling. */
  get boundEndpoint(): string | null {
    return this.bound;
  }

  /** Starts the receive loop; resolves once the first bind or connect was tried (failed ones retry). */
  start(): Promise<void> {
    if (this.loop !== null) return Promise.resolve();
    return new Promise<void>((firstTried) => {
      this.loop = this.run(firstTried);
    });
  }

  /** Closes the socket and stops retrying; resolves when the loop has ended. */
  async close(): Promise<void> {
    this.closed = true;
    this.wake?.();
    this.socket?.close();
    await this.loop;
  }

  private async run(firstTried: () => void): Promise<void> {
    let first = true;
    try {
      const zmq = await import('zeromq');
      while (!this.closed) {
        const sock = new zmq.Subscriber({ linger: 0, receiveHighWaterMark: this.hwm });
        this.socket = sock;
        let ready = false;
        try {
          if (this.mode === 'bind') {
            await sock.bind(this.endpoint);
            this.bound = sock.lastEndpoint ?? null;
          } else {
            if (this.onConnect !== null) sock.events.on('connect', this.connected);
            sock.connect(this.endpoint);
          }
          sock.subscribe(this.filter);
          ready = true;
        } catch (err) {
          if (!this.closed) {
            this.counters.zmqErrors++;
            this.log.warn(
              { err: reason(err), endpoint: this.endpoint },
              `KV events: cannot ${this.mode} the subscriber socket; retrying`,
            );
          }
        }
        if (first) {
          first = false;
          firstTried();
        }
        if (ready) await this.receive(sock);
        this.bound = null;
        this.socket = null;
        sock.close();
        if (this.closed) break;
        await this.sleep(this.retryMs);
        if (!this.closed) this.counters.reconnections++;
      }
    } catch (err) {
      // Only the import can land here (no native module): nothing to retry.
      this.counters.zmqErrors++;
      this.log.error({ err: reason(err) }, 'KV events: zeromq is not available');
    } finally {
      if (first) firstTried();
    }
  }

  private readonly connected = (): void => {
    if (this.closed) return;
    const first = !this.connectedBefore;
    this.connectedBefore = true;
    this.onConnect!(this.source, first);
  };

  private async receive(sock: Subscriber): Promise<void> {
    try {
      for await (const frames of sock) {
        this.counters.messagesReceived++;
        if (frames.length !== 3 || frames[1]!.length !== 8) {
          this.counters.messagesMalformed++;
          continue;
        }
        this.sink(frames[0]!, frames[1]!, frames[2]!, this.source);
      }
    } catch (err) {
      if (!this.closed) {
        this.counters.zmqErrors++;
        this.log.warn(
          { err: reason(err), endpoint: this.endpoint },
          'KV events: receive failed; remaking the socket',
        );
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(done, ms);
      function done(): void {
        clearTimeout(t);
        resolve();
      }
      this.wake = done;
    }).then(() => {
      this.wake = null;
    });
  }
}

/** A server to dial: its identity (`address:port` of its HTTP endpoint), PUB and optional replay ROUTER. */
export interface EventEndpoint {
  readonly id: string;
  readonly endpoint: string;
  readonly replayEndpoint?: string | null;
}

/** The per-endpoint topology: one dialling subscriber per server id. */
export class SubscriberSet {
  private readonly subs = new Map<string, { spec: EventEndpoint; sub: ZmqSubscriber }>();
  private closed = false;

  constructor(
    private readonly sink: MessageSink,
    private readonly counters: IngestCounters,
    private readonly opts: SubscriberOptions = {},
  ) {}

  get size(): number {
    return this.subs.size;
  }

  ids(): string[] {
    return [...this.subs.keys()];
  }

  get(id: string): EventEndpoint | undefined {
    return this.subs.get(id)?.spec;
  }

  /**
   * Subscribes to a server: nothing when it already is at these endpoints; a new socket (the old one
   * closed) when they changed.
   */
  async ensure(spec: EventEndpoint): Promise<void> {
    if (this.closed) return;
    const norm: EventEndpoint = {
      id: spec.id,
      endpoint: spec.endpoint,
      replayEndpoint: spec.replayEndpoint ?? null,
    };
    const had = this.subs.get(spec.id);
    if (
      had !== undefined &&
      had.spec.endpoint === norm.endpoint &&
      had.spec.replayEndpoint === norm.replayEndpoint
    ) {
      return;
    }
    const sub = new ZmqSubscriber(norm.endpoint, 'connect', norm.id, this.sink, this.counters, this.opts);
    this.subs.set(spec.id, { spec: norm, sub });
    if (had !== undefined) await had.sub.close();
    await sub.start();
  }

  /** Closes a server's socket; false when there was none. */
  async remove(id: string): Promise<boolean> {
    const had = this.subs.get(id);
    if (had === undefined) return false;
    this.subs.delete(id);
    await had.sub.close();
    return true;
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.subs.values()];
    this.subs.clear();
    await Promise.all(all.map((s) => s.sub.close()));
  }
}
