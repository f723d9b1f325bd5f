/**
 * The client of vLLM's KV-event replay socket (`replay_endpoint`, a ROUTER; spec/kvcache.md §2.8): a
 * DEALER sends `[empty, start seq (8 bytes big-endian)]` and reads `[empty, seq, payload]` for every
 * buffered batch from `start` on, then the end marker (seq −1, i.e. eight 0xff bytes, and an empty
 * payload). Replies with the topic in front (`[empty, topic, seq, payload]`, as some publishers send)
 * are accepted too.
 *
 * It never hangs, with llm-d-router's limits: a whole replay gets `totalMs`; each attempt ends after
 * `idleMs` without a reply (send and receive timeouts on the socket), and is retried from the next
 * sequence after `backoffMs`, up to `maxNoProgressAttempts` attempts in a row that delivered nothing;
 * at most `maxConcurrent` replays run at once in this process (the others wait for a slot within their
 * own deadline). `close()` ends every replay at once. What the messages mean (duplicates, a lost head,
 * holes) is for the caller, whose `onMessage` may refuse one by throwing: the replay then fails.
 */
import type { Dealer } from 'zeromq';
import type { IngestCounters } from './stats.js';

export interface ReplayLimits {
  /** A whole replay, all attempts (router: 2 min). */
  readonly totalMs: number;
  /** Silence that ends an attempt (router: 2 s). */
  readonly idleMs: number;
  /** Pause between attempts (router: 100 ms). */
  readonly backoffMs: number;
  /** Replays at once in the process (router: 8). */
  readonly maxConcurrent: number;
  /** Attempts in a row that delivered nothing before the replay fails (router: 3). */
  readonly maxNoProgressAttempts: number;
  /** After a failure, how long a server is not asked again (router: 30 s); the pool applies it. */
  readonly cooldownMs: number;
}

export const DEFAULT_REPLAY_LIMITS: ReplayLimits = {
  totalMs: 120_000,
  idleMs: 2_000,
  backoffMs: 100,
  maxConcurrent: 8,
  maxNoProgressAttempts: 3,
  cooldownMs: 30_000,
};

export type ReplayFailure =
  | 'connect' // the endpoint cannot be dialled
  | 'capacity' // no slot among the concurrent replays before the deadline
  | 'timeout' // the whole replay's deadline passed
  | 'no-progress' // attempts in a row delivered nothing
  | 'malformed' // a reply that is not a replay frame
  | 'refused' // the caller refused a message (a hole in the sequence, or it stopped)
  | 'incomplete' // the stream ended without what was asked
  | 'closed'; // the client was closed

export type ReplayResult =
  | { readonly ok: true; readonly delivered: number }
  | {
      readonly ok: false;
      readonly delivered: number;
      readonly reason: ReplayFailure;
      readonly detail: string;
    };

/** One replayed batch; `topic` only when the publisher sends it. Returning a promise pauses the replay. */
export type ReplayHandler = (seq: number, payload: Uint8Array, topic: string | null) => void | Promise<void>;

const EMPTY = new Uint8Array(0);

interface Attempt {
  /** The end marker arrived. */
  readonly end: boolean;
  readonly delivered: number;
  /** The sequence after the last one delivered: where a retry starts. */
  readonly next: number;
  /** A failure that ends the replay (silence is not one: the attempt is retried). */
  readonly error: ReplayResult | null;
}
const TWO_POW_32 = 4294967296;

function seqFrame(seq: number): Uint8Array {
  const b = new Uint8Array(8);
  const v = new DataView(b.buffer);
  v.setUint32(0, Math.floor(seq / TWO_POW_32));
  v.setUint32(4, seq >>> 0);
  return b;
}

function isEndMarker(f: Uint8Array): boolean {
  for (let i = 0; i < 8; i++) if (f[i] !== 0xff) return false;
  return true;
}

/** The reply without its delimiter, as [topic | null, seq, payload]; null when it is not one. */
function replyOf(frames: readonly Uint8Array[]): [string | null, Uint8Array, Uint8Array] | null {
  let f = frames;
  if (f.length > 0 && f[0]!.length === 0 && f.length >= 3) f = f.slice(1);
  if (f.length === 2) return [null, f[0]!, f[1]!];
  if (f.length === 3) return [Buffer.from(f[0]!).toString('utf8'), f[1]!, f[2]!];
  return null;
}

/** Slots for concurrent replays, waited for in order, each wait bounded by its caller's deadline. */
class Slots {
  private used = 0;
  private readonly waiting: { grant: () => void }[] = [];

  constructor(private readonly max: number) {}

  get active(): number {
    return this.used;
  }

  acquire(deadline: number): Promise<boolean> {
    if (this.used < this.max) {
      this.used++;
      return Promise.resolve(true);
    }
    return new Promise<boolean>((resolve) => {
      const w = {
        grant: (): void => {
          clearTimeout(timer);
          this.used++;
          resolve(true);
        },
      };
      const timer = setTimeout(
        () => {
          const i = this.waiting.indexOf(w);
          if (i >= 0) this.waiting.splice(i, 1);
          resolve(false);
        },
        Math.max(0, deadline - Date.now()),
      );
      this.waiting.push(w);
    });
  }

  release(): void {
    this.used--;
    this.waiting.shift()?.grant();
  }

  /** Fails every waiter (close). */
  drop(): void {
    for (const w of this.waiting.splice(0)) w.grant();
  }
}

export class ReplayClient {
  readonly limits: ReplayLimits;
  private readonly slots: Slots;
  private readonly dealers = new Set<Dealer>();
  private readonly sleeps = new Set<() => void>();
  private closed = false;
  private running = 0;

  constructor(
    limits: Partial<ReplayLimits> = {},
    private readonly counters: IngestCounters | null = null,
  ) {
    this.limits = { ...DEFAULT_REPLAY_LIMITS, ...limits };
    this.slots = new Slots(this.limits.maxConcurrent);
  }

  /** Replays running (waiting for a slot included). */
  get active(): number {
    return this.running;
  }

  /** Streams the batches from `from` on into `onMessage`, in order; resolves, never rejects. */
  async replay(endpoint: string, from: number, onMessage: ReplayHandler): Promise<ReplayResult> {
    this.running++;
    try {
      return await this.run(endpoint, from, onMessage);
    } finally {
      this.running--;
    }
  }

  /** Ends every replay (their results say `closed`) and closes their sockets. */
  close(): void {
    this.closed = true;
    for (const d of this.dealers) d.close();
    for (const wake of this.sleeps) wake();
    this.slots.drop();
  }

  private fail(delivered: number, reason: ReplayFailure, detail: string): ReplayResult {
    if (this.counters !== null && reason !== 'closed') this.counters.zmqErrors++;
    return { ok: false, delivered, reason, detail };
  }

  private async run(endpoint: string, from: number, onMessage: ReplayHandler): Promise<ReplayResult> {
    const L = this.limits;
    const deadline = Date.now() + L.totalMs;
    if (this.closed) return this.fail(0, 'closed', 'the client is closed');
    if (!(await this.slots.acquire(deadline)))
      return this.fail(0, 'capacity', 'no replay slot before the deadline');
    try {
      const zmq = await import('zeromq');
      let next = from;
      let delivered = 0;
      let idleAttempts = 0;
      for (;;) {
        if (this.closed) return this.fail(delivered, 'closed', 'the client is closed');
        if (Date.now() >= deadline)
          return this.fail(delivered, 'timeout', `no end marker within ${L.totalMs} ms`);
        const dealer = new zmq.Dealer({ linger: 0, sendTimeout: L.idleMs, receiveTimeout: L.idleMs });
        this.dealers.add(dealer);
        let attempt: Attempt;
        try {
          try {
            dealer.connect(endpoint);
          } catch (err) {
            return this.fail(delivered, 'connect', err instanceof Error ? err.message : String(err));
          }
          attempt = await this.attempt(dealer, next, deadline, onMessage, delivered);
        } finally {
          this.dealers.delete(dealer);
          dealer.close();
        }
        delivered += attempt.delivered;
        if (attempt.error !== null) return attempt.error;
        if (attempt.end) return { ok: true, delivered };
        if (this.closed) return this.fail(delivered, 'closed', 'the client is closed');
        if (attempt.delivered > 0) {
          idleAttempts = 0;
          next = attempt.next;
        } else if (++idleAttempts >= L.maxNoProgressAttempts) {
          return this.fail(delivered, 'no-progress', `${idleAttempts} attempts without a reply`);
        }
        await this.sleep(Math.min(L.backoffMs, Math.max(0, deadline - Date.now())));
      }
    } finally {
      this.slots.release();
    }
  }

  /** One request and its replies, until the end marker, silence, the deadline or an error. */
  private async attempt(
    dealer: Dealer,
    from: number,
    deadline: number,
    onMessage: ReplayHandler,
    before: number,
  ): Promise<Attempt> {
    let delivered = 0;
    let next = from;
    const stop = (error: ReplayResult | null = null, end = false): Attempt => ({
      end,
      delivered,
      next,
      error,
    });
    try {
      await dealer.send([EMPTY, seqFrame(from)]);
    } catch {
      // No peer took the request within the idle timeout: the same as a silent peer.
      return stop();
    }
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) return stop();
      dealer.receiveTimeout = Math.max(1, Math.min(this.limits.idleMs, left));
      let frames: Uint8Array[];
      try {
        frames = await dealer.receive();
      } catch {
        // Silence (EAGAIN after the timeout) or the socket closed under us.
        return stop();
      }
      const reply = replyOf(frames);
      if (reply === null || reply[1].length !== 8) {
        return stop(this.fail(before + delivered, 'malformed', `a replay reply of ${frames.length} frames`));
      }
      const [topic, seqBytes, payload] = reply;
      if (payload.length === 0 && isEndMarker(seqBytes)) return stop(null, true);
      const v = new DataView(seqBytes.buffer, seqBytes.byteOffset, 8);
      const seq = v.getUint32(0) * TWO_POW_32 + v.getUint32(4);
      try {
        const r = onMessage(seq, payload, topic);
        if (r instanceof Promise) await r;
      } catch (err) {
        return stop(
          this.fail(before + delivered, 'refused', err instanceof Error ? err.message : String(err)),
        );
      }
      delivered++;
      next = seq + 1;
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(t);
        this.sleeps.delete(wake);
        resolve();
      };
      const t = setTimeout(wake, ms);
      this.sleeps.add(wake);
    });
  }
}
