/**
 * The Redis index's tracking connection: one RESP3 connection with `CLIENT TRACKING ON` that reads
 * the hashes the client-side cache holds (HKEYS) and receives Redis's invalidation pushes for them on
 * the same socket. One socket means one order: a key's invalidation arrives after every reply that
 * read the key before the change and before every reply that read it after, so applying replies and
 * invalidations as they are decoded keeps the cache coherent, with no bookkeeping of reads in flight.
 * (ioredis cannot carry this: it drops RESP3 `invalidate` pushes.)
 *
 * Whenever the connection is not up, the cache is empty and nothing fills it, so a lost invalidation
 * can never leave a stale entry; the index then reads through its main connection as before. A Redis
 * without client tracking (before 6.0, or a proxy refusing HELLO 3 or CLIENT TRACKING) is detected
 * at the handshake, logged once, and left alone.
 */
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { Logger } from '../../core/log.js';
import type { RedisAddress } from './redis-address.js';
import type { FieldCache } from './redis-field-cache.js';
import { Resp3Decoder, Resp3Error, Resp3Push, encodeCommand, type Resp3Value } from './resp3.js';

export interface RedisTrackingOptions {
  readonly address: RedisAddress;
  readonly cache: FieldCache;
  readonly connectTimeoutMs: number;
  /** A reply taking longer drops the connection (the cache with it) and reconnects. */
  readonly commandTimeoutMs: number;
  readonly maxReconnectDelayMs: number;
  readonly logger: Logger;
}

type State = 'connecting' | 'handshake' | 'ready' | 'unsupported' | 'closed';

interface Pending {
  /** Called synchronously as the reply is decoded, before anything decoded after it. */
  reply(v: Resp3Value): void;
  fail(err: Error): void;
}

/** Distinct field strings kept for sharing between keys before the pool starts over. */
const INTERN_LIMIT = 65_536;

export class RedisTracking {
  private socket: Socket | null = null;
  private decoder = new Resp3Decoder();
  private queue: Pending[] = [];
  private head = 0;
  private state: State = 'connecting';
  private attempts = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private replyTimer: NodeJS.Timeout | null = null;
  /** The same few fields repeat on every block of a prompt: one string each, shared by the entries. */
  private intern = new Map<string, string>();
  private readonly log: Logger;

  constructor(private readonly o: RedisTrackingOptions) {
    this.log = o.logger.child({ redis_connection: 'tracking' });
    this.open();
  }

  /** Connected with tracking on: reads fill the cache. */
  get ready(): boolean {
    return this.state === 'ready';
  }

  /**
   * Reads each key's field names into the cache, tracked, filling it only while `keep()` holds when
   * a reply arrives. Resolves once every reply arrived (or at once when not ready); fails when the
   * connection drops meanwhile.
   */
  warm(names: readonly string[], keep: () => boolean = () => true): Promise<void> {
    if (this.state !== 'ready' || names.length === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const frames: Buffer[] = [];
      const cache = this.o.cache;
      let left = names.length;
      let failed = false;
      const fail = (err: Error): void => {
        if (failed) return;
        failed = true;
        reject(err);
      };
      for (const name of names) {
        frames.push(encodeCommand(['HKEYS', name]));
        this.queue.push({
          reply: (v) => {
            // A key of another type holds no entry (what lookup() makes of WRONGTYPE).
            if (!keep()) {
              // Read before a write of ours that has changed it since.
            } else if (Array.isArray(v)) cache.set(name, this.fieldsOf(v));
            else if (v instanceof Resp3Error && v.code === 'WRONGTYPE') cache.set(name, []);
            if (--left === 0 && !failed) resolve();
          },
          fail,
        });
      }
      this.send(Buffer.concat(frames));
    });
  }

  /** Stops reconnecting and drops the connection. Idempotent. */
  close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.socket?.destroy();
    this.socket = null;
    this.dropped(new Error('the tracking connection is closed'));
  }

  private fieldsOf(v: readonly Resp3Value[]): string[] {
    const out: string[] = [];
    for (const f of v) {
      if (typeof f !== 'string') continue;
      let s = this.intern.get(f);
      if (s === undefined) {
        if (this.intern.size >= INTERN_LIMIT) this.intern = new Map();
        this.intern.set(f, f);
        s = f;
      }
      out.push(s);
    }
    return out;
  }

  private open(): void {
    const a = this.o.address;
    this.state = 'connecting';
    this.decoder = new Resp3Decoder();
    const sock: Socket =
      a.path !== undefined
        ? netConnect({ path: a.path })
        : a.tls
          ? tlsConnect({
              host: a.host!,
              port: a.port!,
              ...(isIP(a.host!) === 0 ? { servername: a.host! } : {}),
              rejectUnauthorized: a.verifyTls,
            })
          : netConnect({ host: a.host!, port: a.port! });
    this.socket = sock;
    sock.setNoDelay(true);
    sock.setTimeout(this.o.connectTimeoutMs, () => sock.destroy(new Error('connect timed out')));
    sock.once(a.tls && a.path === undefined ? 'secureConnect' : 'connect', () => {
      sock.setTimeout(0);
      this.handshake();
    });
    sock.on('data', (chunk: Buffer) => this.onData(sock, chunk));
    sock.on('error', (err) => this.log.debug({ err: err.message }, 'tracking connection error'));
    sock.on('close', () => {
      if (this.socket !== sock) return;
      this.socket = null;
      this.dropped(new Error('the tracking connection dropped'));
      this.scheduleReconnect();
    });
  }

  /** HELLO 3 (with AUTH and SETNAME as the main connection has them), SELECT, CLIENT TRACKING ON. */
  private handshake(): void {
    const a = this.o.address;
    this.state = 'handshake';
    const hello: string[] = ['HELLO', '3'];
    if (a.password !== undefined) hello.push('AUTH', a.username ?? 'default', a.password);
    if (a.clientName !== undefined) hello.push('SETNAME', a.clientName);
    const steps: { args: string[]; unsupported: boolean }[] = [{ args: hello, unsupported: true }];
    if (a.db !== 0) steps.push({ args: ['SELECT', String(a.db)], unsupported: false });
    steps.push({ args: ['CLIENT', 'TRACKING', 'ON'], unsupported: true });
    let left = steps.length;
    let ok = true;
    const frames: Buffer[] = [];
    for (const step of steps) {
      frames.push(encodeCommand(step.args));
      this.queue.push({
        reply: (v) => {
          if (v instanceof Resp3Error && ok) {
            ok = false;
            // No RESP3 or no tracking (or not for this user): this Redis cannot keep a client cache
            // coherent. Anything else (a wrong password, a loading dataset) may pass: try again later.
            const permanent =
              step.unsupported &&
              (v.code === 'NOPROTO' ||
                v.code === 'NOPERM' ||
                (v.code === 'ERR' && /unknown/i.test(v.message)));
            if (permanent) {
              this.log.warn(
                { err: v.message, command: step.args[0] },
                'redis has no client tracking: the index reads without a client cache',
              );
            } else {
              this.logFailure({ err: v.message, command: step.args[0] }, 'tracking handshake failed');
            }
            if (permanent) this.state = 'unsupported';
            this.socket?.destroy();
            return;
          }
          if (--left === 0 && ok && this.state === 'handshake') {
            this.state = 'ready';
            this.attempts = 0;
            this.o.cache.flush();
            this.log.debug('tracking connection ready: client cache on');
          }
        },
        fail: () => {},
      });
    }
    this.send(Buffer.concat(frames));
  }

  /** A failure is a warning the first time; while reconnecting keeps failing the same way, debug. */
  private logFailure(fields: Record<string, unknown>, msg: string): void {
    if (this.attempts === 0) this.log.warn(fields, msg);
    else this.log.debug(fields, msg);
  }

  private send(frame: Buffer): void {
    const sock = this.socket;
    if (sock === null) return;
    sock.write(frame);
    if (this.replyTimer === null) this.armReplyTimer();
  }

  private armReplyTimer(): void {
    this.replyTimer = setTimeout(() => {
      this.replyTimer = null;
      this.logFailure(
        { timeout_ms: this.o.commandTimeoutMs },
        'tracking connection not answering: reconnecting',
      );
      this.socket?.destroy();
    }, this.o.commandTimeoutMs);
    this.replyTimer.unref();
  }

  private onData(sock: Socket, chunk: Buffer): void {
    if (this.socket !== sock) return;
    let values: Resp3Value[];
    try {
      values = this.decoder.feed(chunk);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'tracking connection: bad reply stream');
      sock.destroy();
      return;
    }
    for (const v of values) {
      if (v instanceof Resp3Push) {
        this.onPush(v);
        continue;
      }
      const p = this.queue[this.head];
      if (p === undefined) {
        this.log.warn('tracking connection: a reply no command asked for');
        sock.destroy();
        return;
      }
      this.queue[this.head++] = undefined as unknown as Pending;
      p.reply(v);
      if (sock.destroyed) return;
    }
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
      if (this.replyTimer !== null) clearTimeout(this.replyTimer);
      this.replyTimer = null;
    } else if (values.length > 0) {
      // Progress: the next reply gets a full timeout of its own.
      if (this.replyTimer !== null) clearTimeout(this.replyTimer);
      this.armReplyTimer();
    }
  }

  private onPush(p: Resp3Push): void {
    if (p.items[0] !== 'invalidate') return;
    const keys = p.items[1];
    if (keys === null || keys === undefined) {
      this.o.cache.invalidate(null);
      return;
    }
    if (!Array.isArray(keys)) return;
    const names: string[] = [];
    for (const k of keys) if (typeof k === 'string') names.push(k);
    this.o.cache.invalidate(names);
  }

  /** The connection is gone: nothing read on it may stay cached, nothing asked of it will answer. */
  private dropped(err: Error): void {
    if (this.state !== 'unsupported' && this.state !== 'closed') this.state = 'connecting';
    this.o.cache.flush();
    if (this.replyTimer !== null) clearTimeout(this.replyTimer);
    this.replyTimer = null;
    const pending = this.queue.slice(this.head);
    this.queue = [];
    this.head = 0;
    for (const p of pending) p.fail(err);
  }

  private scheduleReconnect(): void {
    if (this.state === 'closed' || this.state === 'unsupported' || this.reconnectTimer !== null) return;
    const delay = Math.min(50 * 2 ** Math.min(this.attempts++, 10), this.o.maxReconnectDelayMs);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.state !== 'closed' && this.state !== 'unsupported') this.open();
    }, delay);
    this.reconnectTimer.unref();
  }
}
