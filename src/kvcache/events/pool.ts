/**
 * Per-server ordering and sequence tracking of KV-event messages (llm-d's `kvevents.Pool` plus the
 * router's replay logic in `zmq_subscriber.go`).
 *
 * Messages are sharded by server: the id a per-endpoint subscriber forces, else the pod segment of the
 * topic `kv@<address:port>@<model>` (spec/kvcache.md §2.1). Each server has its own bounded FIFO,
 * decoded and applied strictly in order; servers do not wait for one another, so a server whose index
 * calls are slow (Redis) delays only itself. With an index that answers synchronously a message is
 * applied inside `push`, without a promise or a queue hop.
 *
 * Each server's sequence numbers (from 0, +1 per batch) are tracked on the live stream:
 *  - the same number again → a duplicate, dropped;
 *  - a number below the last one → the engine restarted: the server's entries are cleared, then it
 *    is replayed from 0 when it has a replay endpoint, else rebuilt from the live events;
 *  - a gap (a number beyond the next) → replayed from the first missing one; without a replay
 *    endpoint (or after a failed replay, during the cool-down) the entries are cleared and rebuilt from
 *    live events, since missed removals would otherwise leave blocks the server no longer has;
 *  - first contact mid-stream (a first number above 0) → replayed from 0 when possible;
 *  - a dialled connection made again → cleared, then replayed from 0 when possible: the process
 *    behind it may be a new one whose numbering has already passed the old one's (its first batches
 *    went out before the socket reconnected), which the two rules above would take for a gap.
 * While a server replays, its live messages wait (bounded), then go through the same rules, so those
 * the replay covered are dropped as duplicates. A full queue drops the message and counts it; the
 * next one then shows the gap.
 */
import { decodePackedBatch, type KvEventDecodeOptions, type KvEventDialect } from './decode.js';
import type { EventApplier, ServerIndexState } from './apply.js';
import type { ReplayHandler, ReplayResult } from './replay.js';
import type { IngestCounters } from './stats.js';

export interface PoolOptions {
  readonly dialect?: KvEventDialect;
  /** Decoder limits. */
  readonly decode?: Omit<KvEventDecodeOptions, 'dialect'>;
  /** Messages waiting per server (queued, or held during a replay) before new ones are dropped. */
  readonly maxQueuedPerServer?: number;
  /** Servers tracked at once: messages naming a new server beyond this are dropped. */
  readonly maxServers?: number;
  /** The model of messages whose topic names none (a bare pod id topic, vLLM's default ""). */
  readonly defaultModel?: string;
  /** Central topology: the replay endpoint of a server known by its topic, when it has one. */
  readonly replayEndpointFor?: (server: string) => string | null;
  /** Clock for the replay cool-down (tests). */
  readonly now?: () => number;
}

/** What the pool needs of a replay client (replay.ts's `ReplayClient`; tests give a fake). */
export interface ReplaySource {
  readonly limits: { readonly cooldownMs: number };
  /** Streams the batches from `from` on into `onMessage`, in order; resolves, never rejects. */
  replay(endpoint: string, from: number, onMessage: ReplayHandler): Promise<ReplayResult>;
}

export const DEFAULT_MAX_QUEUED_PER_SERVER = 10_000;
export const DEFAULT_MAX_SERVERS = 10_000;

/** Synchronous work in one go before yielding to the event loop (sockets, timers, other servers). */
const SLICE_MS = 8;
const TWO_POW_32 = 4294967296;

interface Message {
  readonly seq: number;
  readonly model: string;
  readonly payload: Uint8Array;
}

const enum TaskKind {
  Message,
  /** Clear the server's entries and dedup counts. */
  Reset,
}

interface Task {
  readonly kind: TaskKind;
  readonly msg: Message | null;
  /** A reset also forgets the server's HMA groups (a new engine process may differ). */
  readonly forgetGroups: boolean;
}

/** A FIFO on a circular array (no `shift()` copying), growing lazily up to its bound. */
class Fifo<T> {
  private buf: (T | undefined)[] = new Array<T | undefined>(8);
  private head = 0;
  size = 0;

  push(v: T): void {
    if (this.size === this.buf.length) {
      const next = new Array<T | undefined>(this.buf.length * 2);
      for (let i = 0; i < this.size; i++) next[i] = this.buf[(this.head + i) % this.buf.length];
      this.buf = next;
      this.head = 0;
    }
    this.buf[(this.head + this.size) % this.buf.length] = v;
    this.size++;
  }

  shift(): T | undefined {
    if (this.size === 0) return undefined;
    const v = this.buf[this.head];
    this.buf[this.head] = undefined;
    this.head = (this.head + 1) % this.buf.length;
    this.size--;
    return v;
  }

  clear(): void {
    this.buf = new Array<T | undefined>(8);
    this.head = 0;
    this.size = 0;
  }
}

/** How often a server with lost writes checks whether the index answers again. */
const RESYNC_RETRY_MS = 250;
const RESET: Task = { kind: TaskKind.Reset, msg: null, forgetGroups: false };
const RESTART: Task = { kind: TaskKind.Reset, msg: null, forgetGroups: true };

class ServerStream {
  readonly queue = new Fifo<Task>();
  draining = false;
  /** Last sequence seen on the live stream; -1 before the first. */
  lastLive = -1;
  /** Last sequence queued for the index (live or replayed); -1 when nothing is. */
  lastApplied = -1;
  /** The model of the last live message (replies without a topic get it). */
  model: string;
  replayEndpoint: string | null;
  replaying = false;
  /** A resync of lost writes is scheduled. */
  resyncTimer: NodeJS.Timeout | null = null;
  /** The replay now running was started from this sequence. */
  replayFrom = 0;
  /** It delivered a message already (a later hole is an error; a first one is a lost head). */
  replayStarted = false;
  /** Its messages are no longer wanted (the engine restarted, the server went, the pool closed). */
  replayAbandoned = false;
  /** Once the abandoned replay ends, one from 0 is started (a reconnect came during it). */
  replayAgain = false;
  /** A replay of this server completed. */
  replayedOnce = false;
  /** The model replies without a topic belong to is known (declared, or from a live message). */
  modelKnown = false;
  /** Live messages held during the replay. */
  held: Message[] = [];
  /** No replay is asked of this server before this time (after a failure). */
  coolUntil = 0;
  removed = false;
  /** Replay backpressure: resolved when the queue has room. */
  spaceWaiters: (() => void)[] = [];
  /** Resolved when the queue is empty and nothing is being applied. */
  drainWaiters: (() => void)[] = [];

  constructor(
    readonly id: string,
    readonly state: ServerIndexState,
    model: string,
    replayEndpoint: string | null,
  ) {
    this.model = model;
    this.replayEndpoint = replayEndpoint;
  }
}

export class KvEventPool {
  private readonly streams = new Map<string, ServerStream>();
  private readonly topics = new Map<string, { pod: string; model: string; parsed: boolean }>();
  private readonly decodeOpts: KvEventDecodeOptions;
  private readonly maxQueued: number;
  private readonly maxServers: number;
  private readonly defaultModel: string;
  private readonly replayEndpointFor: (server: string) => string | null;
  private readonly now: () => number;
  private depth = 0;
  private closed = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly applier: EventApplier,
    private readonly counters: IngestCounters,
    private readonly replay: ReplaySource | null,
    opts: PoolOptions = {},
  ) {
    this.decodeOpts = { ...opts.decode, dialect: opts.dialect ?? 'vllm' };
    this.maxQueued = opts.maxQueuedPerServer ?? DEFAULT_MAX_QUEUED_PER_SERVER;
    this.maxServers = opts.maxServers ?? DEFAULT_MAX_SERVERS;
    this.defaultModel = opts.defaultModel ?? '';
    this.replayEndpointFor = opts.replayEndpointFor ?? (() => null);
    this.now = opts.now ?? Date.now;
  }

  /** Messages waiting, all servers. */
  get queueDepth(): number {
    return this.depth;
  }

  get queueCapacity(): number {
    return this.maxQueued;
  }

  get servers(): number {
    return this.streams.size;
  }

  get replaysActive(): number {
    let n = 0;
    for (const s of this.streams.values()) if (s.replaying) n++;
    return n;
  }

  /** The sequence tracking of a server, for tests and debugging. */
  serverState(
    id: string,
  ): { lastLive: number; lastApplied: number; replaying: boolean; queued: number } | null {
    const s = this.streams.get(id);
    if (s === undefined) return null;
    return { lastLive: s.lastLive, lastApplied: s.lastApplied, replaying: s.replaying, queued: s.queue.size };
  }

  /**
   * Declares a server before its first message (per-endpoint topology), with its replay endpoint;
   * `proactiveReplay` fetches what it already holds at once (the router's replay on connect). A known
   * server gets the new replay endpoint.
   */
  ensureServer(
    id: string,
    replayEndpoint: string | null,
    model: string | null,
    proactiveReplay: boolean,
  ): void {
    if (this.closed) return;
    const s = this.streams.get(id);
    if (s !== undefined && !s.removed) {
      s.replayEndpoint = replayEndpoint;
      if (model !== null) {
        s.model = model;
        s.modelKnown = true;
      }
      return;
    }
    const created = this.create(id, model ?? this.defaultModel, replayEndpoint);
    if (created === null) return;
    created.modelKnown = model !== null;
    if (proactiveReplay && this.canReplay(created)) this.startReplay(created, 0);
  }

  /**
   * A dialled server's connection was made. The first one needs nothing when the replay on connect
   * runs or ran, or events already flow; else that replay found no server, and is asked now. Any later one may lead to a new process whose first batches went out
   * before the socket reconnected, so that its numbering has already passed the old one's: neither
   * the restart rule nor the gap rule can tell, so the server starts over, from 0 when it can replay.
   */
  connected(id: string, first: boolean): void {
    if (this.closed) return;
    const s = this.streams.get(id);
    if (s === undefined || s.removed) return;
    if (first) {
      if (s.replaying || s.replayedOnce || s.lastApplied >= 0) return;
      // The replay on connect found no server yet: now there is one.
      s.coolUntil = 0;
    } else this.restarted(s);
    if (!s.modelKnown || !this.canReplay(s)) return;
    if (s.replaying) s.replayAgain = true;
    else this.startReplay(s, 0);
  }

  /**
   * Forgets a server: its queued work is dropped, any replay abandoned, and its entries are cleared
   * from the index (unless `clear` is false). Resolves once that is done.
   */
  removeServer(id: string, clear = true): Promise<void> {
    const s = this.streams.get(id);
    if (s === undefined || s.removed) return Promise.resolve();
    s.removed = true;
    s.replayAbandoned = s.replaying;
    s.held = [];
    this.depth -= s.queue.size;
    s.queue.clear();
    this.wakeSpace(s);
    const done = new Promise<void>((resolve) => s.drainWaiters.push(resolve));
    if (clear) this.enqueue(s, RESTART);
    else if (!s.draining) this.drained(s);
    return done;
  }

  /**
   * One live message from a subscriber: the three frames, already checked for count and sequence
   * length; `source` is the server id a per-endpoint subscriber forces (else the topic's pod).
   */
  push(topic: Uint8Array, seqFrame: Uint8Array, payload: Uint8Array, source: string | null): void {
    if (this.closed) return;
    const t = this.topicOf(topic);
    const id = source ?? t.pod;
    let s = this.streams.get(id);
    if (s === undefined || s.removed) {
      if (s !== undefined) return;
      const created = this.create(id, t.model, this.replayEndpointFor(id));
      if (created === null) return;
      s = created;
    }
    const v = new DataView(seqFrame.buffer, seqFrame.byteOffset, 8);
    const seq = v.getUint32(0) * TWO_POW_32 + v.getUint32(4);
    if (s.lastLive >= 0 && seq < s.lastLive) {
      this.restarted(s);
    } else if (s.lastLive >= 0 && seq === s.lastLive) {
      this.counters.duplicates++;
      return;
    }
    s.lastLive = seq;
    s.model = t.model;
    s.modelKnown = true;
    this.admit(s, { seq, model: t.model, payload });
  }

  /** Resolves when no server has work queued, being applied or being replayed. */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stops: queued work is dropped and replays abandoned (their sockets are the client's to close). */
  close(): void {
    this.closed = true;
    for (const s of this.streams.values()) {
      s.replayAbandoned = s.replaying;
      if (s.resyncTimer !== null) clearTimeout(s.resyncTimer);
      s.resyncTimer = null;
      s.held = [];
      s.queue.clear();
      this.wakeSpace(s);
      const w = s.drainWaiters;
      s.drainWaiters = [];
      for (const f of w) f();
    }
    this.depth = 0;
    this.notifyIdle();
  }

  // ---- servers and topics ----

  private create(id: string, model: string, replayEndpoint: string | null): ServerStream | null {
    if (this.streams.size >= this.maxServers) {
      this.counters.serversRejected++;
      this.counters.messagesDropped++;
      return null;
    }
    const s = new ServerStream(id, this.applier.server(id), model, replayEndpoint);
    this.streams.set(id, s);
    return s;
  }

  /** The pod and model of a topic; parsed once per distinct topic. */
  private topicOf(frame: Uint8Array): { pod: string; model: string } {
    const topic = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength).toString('utf8');
    let t = this.topics.get(topic);
    if (t === undefined) {
      const parts = topic.split('@');
      t =
        parts.length === 3
          ? { pod: parts[1]!, model: parts[2] === '' ? this.defaultModel : parts[2]!, parsed: true }
          : { pod: topic, model: this.defaultModel, parsed: false };
      // Topics are one per server and model; a bound keeps a hostile publisher from growing the map.
      if (this.topics.size >= 4 * this.maxServers) this.topics.clear();
      this.topics.set(topic, t);
    }
    if (!t.parsed) this.counters.topicsUnparsed++;
    return t;
  }

  // ---- sequence rules ----

  /** A live message past the duplicate and restart checks. */
  private admit(s: ServerStream, m: Message): void {
    if (s.replaying) {
      this.hold(s, m);
      return;
    }
    const last = s.lastApplied;
    if (last >= 0 && m.seq <= last) {
      this.counters.duplicates++;
      return;
    }
    if (last >= 0 && m.seq > last + 1) {
      this.counters.gaps++;
      this.counters.missedSequences += m.seq - last - 1;
      if (this.canReplay(s)) {
        this.startReplay(s, last + 1);
        this.hold(s, m);
        return;
      }
      // Missed removals would leave blocks the server no longer holds: start over from here.
      this.rebuild(s);
    } else if (last < 0 && m.seq > 0 && this.canReplay(s)) {
      this.startReplay(s, 0);
      this.hold(s, m);
      return;
    }
    if (s.state.lost && this.applier.indexAvailable() && this.resync(s)) {
      this.hold(s, m);
      return;
    }
    if (s.queue.size >= this.maxQueued) {
      // Not applied: lastApplied stays, so the next message shows the hole.
      this.counters.messagesDropped++;
      return;
    }
    s.lastApplied = m.seq;
    this.enqueue(s, { kind: TaskKind.Message, msg: m, forgetGroups: false });
  }

  /**
   * Writes were lost while the index was unreachable (and a restarted Redis may have lost all): the
   * server starts over in the index, from the oldest batch its replay buffer still has (true: a
   * replay started), or cleared and rebuilt from what follows (false).
   */
  private resync(s: ServerStream): boolean {
    s.state.lost = false;
    if (this.canReplay(s)) {
      this.counters.resets++;
      s.lastApplied = -1;
      this.enqueue(s, RESET);
      this.startReplay(s, 0);
      return true;
    }
    this.rebuild(s);
    return false;
  }

  /** A server that lost writes and then went quiet is resynced once the index answers again. */
  private scheduleResync(s: ServerStream): void {
    if (s.resyncTimer !== null || this.closed || s.removed) return;
    s.resyncTimer = setTimeout(() => {
      s.resyncTimer = null;
      if (this.closed || s.removed || !s.state.lost) return;
      if (s.replaying || s.draining || !this.applier.indexAvailable()) {
        this.scheduleResync(s);
        return;
      }
      this.resync(s);
    }, RESYNC_RETRY_MS);
    s.resyncTimer.unref();
  }

  /** The engine restarted (its numbering went back): what it held is gone. */
  private restarted(s: ServerStream): void {
    this.counters.resets++;
    if (s.replaying) s.replayAbandoned = true;
    s.held = [];
    s.lastLive = -1;
    s.lastApplied = -1;
    s.coolUntil = 0;
    this.enqueue(s, RESTART);
  }

  /** Clears what the index holds of the server; what follows rebuilds it. */
  private rebuild(s: ServerStream): void {
    this.counters.resets++;
    s.lastApplied = -1;
    this.enqueue(s, RESET);
  }

  private hold(s: ServerStream, m: Message): void {
    if (s.held.length >= this.maxQueued) {
      this.counters.messagesDropped++;
      return;
    }
    s.held.push(m);
  }

  private canReplay(s: ServerStream): boolean {
    return this.replay !== null && s.replayEndpoint !== null && this.now() >= s.coolUntil;
  }

  // ---- replay ----

  private startReplay(s: ServerStream, from: number): void {
    s.replaying = true;
    s.replayFrom = from;
    s.replayStarted = false;
    s.replayAbandoned = false;
    this.counters.replaysStarted++;
    void this.replay!.replay(s.replayEndpoint!, from, (seq, payload, topic) =>
      this.replayed(s, seq, payload, topic),
    ).then((r) => this.replayDone(s, r));
  }

  /** One replayed batch, in order; throwing refuses it and fails the replay. */
  private replayed(
    s: ServerStream,
    seq: number,
    payload: Uint8Array,
    topic: string | null,
  ): void | Promise<void> {
    if (s.replayAbandoned || s.removed || this.closed) throw new Error('the replay is no longer wanted');
    const last = s.lastApplied;
    if (last >= 0 && seq <= last) {
      this.counters.duplicates++;
      return;
    }
    const expected = last >= 0 ? last + 1 : s.replayFrom;
    if (seq !== expected) {
      if (s.replayStarted || seq < expected) throw new Error(`replay skipped from ${expected} to ${seq}`);
      // The publisher's buffer no longer reaches back to what was asked: what the index holds may miss
      // removals, so it is rebuilt from the oldest batch the buffer has.
      this.counters.missedSequences += seq - expected;
      if (last >= 0) this.rebuild(s);
    }
    s.replayStarted = true;
    const model = topic === null || topic === '' ? s.model : this.topicOf(Buffer.from(topic, 'utf8')).model;
    s.lastApplied = seq;
    this.counters.replayedMessages++;
    this.enqueue(s, { kind: TaskKind.Message, msg: { seq, model, payload }, forgetGroups: false });
    if (s.queue.size >= this.maxQueued) return new Promise<void>((resolve) => s.spaceWaiters.push(resolve));
    return undefined;
  }

  private replayDone(s: ServerStream, r: ReplayResult): void {
    s.replaying = false;
    if (this.closed || s.removed) {
      this.notifyIdle();
      return;
    }
    const abandoned = s.replayAbandoned;
    s.replayAbandoned = false;
    if (abandoned && s.replayAgain) {
      s.replayAgain = false;
      this.startReplay(s, 0);
      return;
    }
    if (!abandoned) {
      // Nothing at all from a replay asked to fill a hole: the publisher cannot fill it.
      const ok = r.ok && (s.replayStarted || s.replayFrom === 0);
      if (ok) {
        this.counters.replaysCompleted++;
        s.replayedOnce = true;
      } else {
        this.counters.replaysFailed++;
        s.coolUntil = this.now() + this.replay!.limits.cooldownMs;
        // The index may miss what the replay was to bring: start over from the live stream.
        if (s.lastApplied >= 0) this.rebuild(s);
      }
    }
    const held = s.held;
    s.held = [];
    for (const m of held) this.admit(s, m);
    this.notifyIdle();
  }

  // ---- processing ----

  private enqueue(s: ServerStream, t: Task): void {
    s.queue.push(t);
    this.depth++;
    if (!s.draining) this.drain(s);
  }

  /**
   * Applies a server's queue in order: synchronously while the index answers synchronously, resuming
   * when a promise settles otherwise, and yielding to the event loop after a time slice.
   */
  private drain(s: ServerStream): void {
    s.draining = true;
    const start = performance.now();
    let n = 0;
    for (;;) {
      if (this.closed) break;
      const t = s.queue.shift();
      if (t === undefined) break;
      this.depth--;
      if (s.spaceWaiters.length > 0 && s.queue.size < this.maxQueued >>> 1) this.wakeSpace(s);
      const step = this.process(s, t);
      if (step !== undefined) {
        void step.then(
          () => this.drain(s),
          () => this.drain(s),
        );
        return;
      }
      if ((++n & 63) === 0 && performance.now() - start > SLICE_MS) {
        setImmediate(() => this.drain(s));
        return;
      }
    }
    s.draining = false;
    this.drained(s);
  }

  /** A server's queue ran dry: wake who waits for that, and forget it if it was removed. */
  private drained(s: ServerStream): void {
    this.wakeSpace(s);
    if (s.state.lost) this.scheduleResync(s);
    if (s.removed && this.streams.get(s.id) === s) this.streams.delete(s.id);
    if (s.drainWaiters.length > 0) {
      const w = s.drainWaiters;
      s.drainWaiters = [];
      for (const f of w) f();
    }
    this.notifyIdle();
  }

  private process(s: ServerStream, t: Task): Promise<void> | undefined {
    if (t.kind === TaskKind.Message) {
      const m = t.msg!;
      this.counters.batches++;
      let batch;
      try {
        batch = decodePackedBatch(m.payload, this.decodeOpts);
      } catch {
        // A batch that is not one loses its events; a replay would bring the same bytes.
        this.counters.batchesMalformed++;
        return undefined;
      }
      this.counters.eventsMalformed += batch.skipped.length;
      return this.applier.applyBatch(s.state, m.model, batch.events);
    }
    return this.applier.reset(s.state, t.forgetGroups);
  }

  private wakeSpace(s: ServerStream): void {
    if (s.spaceWaiters.length === 0) return;
    const w = s.spaceWaiters;
    s.spaceWaiters = [];
    for (const f of w) f();
  }

  private isIdle(): boolean {
    if (this.closed) return true;
    for (const s of this.streams.values()) if (s.draining || s.replaying || s.queue.size > 0) return false;
    return true;
  }

  private notifyIdle(): void {
    if (this.idleWaiters.length === 0 || !this.isIdle()) return;
    const waiting = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiting) w();
  }
}
