/**
 * The KV-cache indexer's write path, end to end: ZMQ subscribers → per-server pool (ordering,
 * sequence tracking, replay) → decoder → event application → the index. One object to start, feed
 * with endpoints, read counters from and close:
 *
 *   const ingest = new KvEventIngest({ index, tokenProcessor, bindEndpoint: 'tcp://*:5557' });
 *   await ingest.start();                       // central topology: servers' PUBs connect here
 *   await ingest.setEndpoints([{ id: '10.0.0.5:8000', endpoint: 'tcp://10.0.0.5:5557' }]); // or dial them
 *   ingest.stats();                             // plain numbers, see stats.ts for their metric names
 *   await ingest.close();                       // every socket closed, no handle left
 *
 * Both topologies can run at once. The endpoint discovery of the EPP drives `setEndpoints` (or
 * `ensure`/`remove`); a removed server's entries are cleared from the index, as the router does.
 */
import { silentLogger, type Logger } from '../../core/log.js';
import type { KvBlockIndex } from '../index/index.js';
import type { TokenProcessor } from '../keys.js';
import { EventApplier } from './apply.js';
import type { KvEventDecodeOptions, KvEventDialect } from './decode.js';
import { KvEventPool } from './pool.js';
import { ReplayClient, type ReplayLimits } from './replay.js';
import { IngestCounters, snapshotCounters, type IngestStats } from './stats.js';
import {
  DEFAULT_TOPIC_FILTER,
  SubscriberSet,
  ZmqSubscriber,
  type EventEndpoint,
  type MessageSink,
} from './subscriber.js';

export interface KvEventIngestOptions {
  readonly index: KvBlockIndex;
  readonly tokenProcessor: TokenProcessor;
  /** Central topology: the endpoint to bind (llm-d's `zmqEndpoint`, e.g. `tcp://*:5557`). */
  readonly bindEndpoint?: string | null;
  /** ZMQ topic prefix filter (llm-d's `topicFilter`). */
  readonly topicFilter?: string;
  /** llm-d's `engineType`. */
  readonly dialect?: KvEventDialect;
  /** The model of messages whose topic names none. */
  readonly defaultModel?: string;
  /** The router's exact HMA rule (see apply.ts). */
  readonly strictHma?: boolean;
  /** Replay limits, or false to never replay (gaps are then rebuilt from live events). */
  readonly replay?: Partial<ReplayLimits> | false;
  /** Central topology: a server's replay endpoint, from its id (`address:port`). */
  readonly replayEndpointFor?: (server: string) => string | null;
  readonly maxQueuedPerServer?: number;
  readonly maxServers?: number;
  /** Pause before a failed socket is made again. */
  readonly retryIntervalMs?: number;
  readonly decode?: Omit<KvEventDecodeOptions, 'dialect'>;
  readonly logger?: Logger;
}

export class KvEventIngest {
  readonly counters = new IngestCounters();
  readonly pool: KvEventPool;
  private readonly replay: ReplayClient | null;
  private readonly central: ZmqSubscriber | null;
  private readonly dialled: SubscriberSet;
  private started = false;
  private closing: Promise<void> | null = null;

  constructor(private readonly opts: KvEventIngestOptions) {
    const log = opts.logger ?? silentLogger();
    const applier = new EventApplier(opts.index, opts.tokenProcessor, this.counters, {
      strictHma: opts.strictHma === true,
    });
    this.replay = opts.replay === false ? null : new ReplayClient(opts.replay ?? {}, this.counters);
    this.pool = new KvEventPool(applier, this.counters, this.replay, {
      dialect: opts.dialect,
      decode: opts.decode,
      maxQueuedPerServer: opts.maxQueuedPerServer,
      maxServers: opts.maxServers,
      defaultModel: opts.defaultModel,
      replayEndpointFor: opts.replayEndpointFor,
    });
    const sink: MessageSink = (topic, seq, payload, source) => this.pool.push(topic, seq, payload, source);
    const subOpts = {
      topicFilter: opts.topicFilter ?? DEFAULT_TOPIC_FILTER,
      retryIntervalMs: opts.retryIntervalMs,
      onConnect: (source: string | null, first: boolean) => {
        if (source !== null) this.pool.connected(source, first);
      },
      logger: log,
    };
    this.central =
      opts.bindEndpoint === undefined || opts.bindEndpoint === null || opts.bindEndpoint === ''
        ? null
        : new ZmqSubscriber(opts.bindEndpoint, 'bind', null, sink, this.counters, subOpts);
    this.dialled = new SubscriberSet(sink, this.counters, subOpts);
  }

  /** Binds the central endpoint, if any (a failed bind is counted and retried in the background). */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await this.central?.start();
  }

  /** The central endpoint as bound (a wildcard port resolved), or null. */
  get boundEndpoint(): string | null {
    return this.central?.boundEndpoint ?? null;
  }

  /**
   * Subscribes to one server by dialling its PUB (idempotent). With a replay endpoint, what the
   * server already holds is replayed at once; a changed endpoint replaces the subscription and starts
   * the server over (its entries cleared). `model` names the model of replies without a topic before
   * any live message arrived (else the ingest's `defaultModel`).
   */
  async ensure(id: string, endpoint: string, replayEndpoint?: string | null, model?: string): Promise<void> {
    const spec: EventEndpoint = { id, endpoint, replayEndpoint: replayEndpoint ?? null };
    const had = this.dialled.get(id);
    if (had !== undefined && had.endpoint === endpoint && had.replayEndpoint === spec.replayEndpoint) return;
    if (had !== undefined) {
      await this.dialled.remove(id);
      await this.pool.removeServer(id, true);
    }
    const m = model ?? this.opts.defaultModel ?? null;
    // The server is declared before its socket dials, so its first message already finds its replay
    // endpoint. The proactive replay needs a model to key the replies under; without one, the first
    // live message (a mid-stream join) asks for it.
    this.pool.ensureServer(id, spec.replayEndpoint ?? null, m, m !== null);
    await this.dialled.ensure(spec);
  }

  /** Unsubscribes from a server and clears its entries from the index. */
  async remove(id: string): Promise<void> {
    await this.dialled.remove(id);
    await this.pool.removeServer(id, true);
  }

  /** Makes the dialled set exactly `endpoints` (the EPP's discovery calls this on every change). */
  async setEndpoints(endpoints: readonly EventEndpoint[]): Promise<void> {
    const want = new Set(endpoints.map((e) => e.id));
    await Promise.all(
      this.dialled
        .ids()
        .filter((id) => !want.has(id))
        .map((id) => this.remove(id)),
    );
    await Promise.all(endpoints.map((e) => this.ensure(e.id, e.endpoint, e.replayEndpoint ?? null)));
  }

  /** Ids of the servers dialled. */
  endpoints(): string[] {
    return this.dialled.ids();
  }

  /** Resolves when nothing is queued, being applied or replayed (tests, orderly shutdown). */
  idle(): Promise<void> {
    return this.pool.idle();
  }

  stats(): IngestStats {
    return {
      ...snapshotCounters(this.counters),
      queueDepth: this.pool.queueDepth,
      queueCapacity: this.pool.queueCapacity,
      servers: this.pool.servers,
      activeSubscribers: this.dialled.size + (this.central === null ? 0 : 1),
      replaysActive: this.pool.replaysActive,
    };
  }

  /** Closes every socket (subscribers and replay dealers) and drops queued work. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.pool.close();
      this.replay?.close();
      await Promise.all([this.central?.close(), this.dialled.close()]);
    })();
    return this.closing;
  }
}
