/**
 * The decoder's end of the side channel: one connection per remote engine, handshaken once (engine id
 * and compatibility hash checked, block geometry compared), over which block reads for many requests
 * are multiplexed by transfer id. Every received block is verified against the seed the decoder derives
 * from its own copy of the prompt; a mismatch fails the transfer as corrupt.
 */
import { connect, type Socket } from 'node:net';
import { StreamingVerifier } from './payload.js';
import {
  FrameType,
  PROTOCOL_VERSION,
  StreamingFrameReader,
  controlFrame,
  parseControl,
  type FrameSink,
} from './protocol.js';

export type TransferFailure =
  'connect' | 'handshake' | 'timeout' | 'corrupt' | 'remote' | 'connection' | 'aborted';

export class TransferError extends Error {
  constructor(
    readonly kind: TransferFailure,
    message: string,
  ) {
    super(message);
  }
}

export interface LocalGeometry {
  readonly compatibilityHash: string;
  readonly blockSize: number;
  readonly blockBytes: number;
  readonly handshakeTimeoutMs: number;
}

export interface PullRequest {
  readonly host: string;
  readonly port: number;
  readonly engineId: string;
  readonly requestId: string;
  /** The remote block ids to read, in order. */
  readonly blockIds: readonly number[];
  /** The expected seed of each of them. */
  readonly seeds: readonly bigint[];
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
}

export interface PullResult {
  readonly blocks: number;
  readonly bytes: number;
  readonly seconds: number;
}

interface Pending {
  readonly seeds: Map<number, bigint>;
  received: number;
  failed: boolean;
  readonly t0: number;
  resolve(r: PullResult): void;
  reject(e: TransferError): void;
  cleanup(): void;
}

class RemoteEngine {
  readonly socket: Socket;
  readonly ready: Promise<void>;
  private readonly pending = new Map<number, Pending>();
  private nextXfer = 1;
  private closed = false;
  private readonly verifier = new StreamingVerifier();
  /** The transfer whose block is arriving now, while it still verifies. */
  private current: { xfer: number; p: Pending; blockId: number } | null = null;

  constructor(
    readonly key: string,
    host: string,
    port: number,
    engineId: string,
    private readonly local: LocalGeometry,
    private readonly onGone: (r: RemoteEngine) => void,
  ) {
    this.socket = connect({ host, port, noDelay: true });
    let settleHandshake: ((err: TransferError | null) => void) | null = null;
    this.ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          finish(
            new TransferError('handshake', `no handshake from ${key} within ${local.handshakeTimeoutMs} ms`),
          ),
        local.handshakeTimeoutMs,
      );
      const finish = (err: TransferError | null): void => {
        if (settleHandshake === null) return;
        settleHandshake = null;
        clearTimeout(timer);
        if (err === null) resolve();
        else {
          reject(err);
          this.close(err);
        }
      };
      settleHandshake = finish;
    });
    // A rejection nobody awaits yet must not crash the process.
    this.ready.catch(() => undefined);
    this.socket.once('connect', () => {
      this.socket.write(
        controlFrame(FrameType.Hello, {
          version: PROTOCOL_VERSION,
          engine_id: engineId,
          compatibility_hash: local.compatibilityHash,
        }),
      );
    });
    const sink: FrameSink = {
      control: (type, payload) => this.onControl(type, payload, settleHandshake),
      blockStart: (xfer, blockId, bytes) => this.blockStart(xfer, blockId, bytes),
      blockData: (piece) => {
        if (this.current !== null) this.verifier.feed(piece);
      },
      blockEnd: () => this.blockEnd(),
    };
    const reader = new StreamingFrameReader(sink);
    this.socket.on('data', (d: Buffer) => {
      try {
        reader.push(d);
      } catch (err) {
        this.close(new TransferError('connection', (err as Error).message));
      }
    });
    this.socket.on('error', (err: NodeJS.ErrnoException) => {
      const kind: TransferFailure = settleHandshake !== null ? 'connect' : 'connection';
      const e = new TransferError(kind, `${key}: ${err.code ?? err.message}`);
      settleHandshake?.(e);
      this.close(e);
    });
    this.socket.on('close', () => {
      const e = new TransferError('connection', `${key} closed the connection`);
      settleHandshake?.(e);
      this.close(e);
    });
  }

  private blockStart(xfer: number, blockId: number, bytes: number): void {
    this.current = null;
    const p = this.pending.get(xfer);
    if (p === undefined || p.failed) return;
    const seed = p.seeds.get(blockId);
    if (seed === undefined || bytes !== this.local.blockBytes) {
      this.settle(
        xfer,
        new TransferError('corrupt', `block ${blockId} was not asked for, or has the wrong size`),
      );
      return;
    }
    this.verifier.begin(seed, bytes);
    this.current = { xfer, p, blockId };
  }

  private blockEnd(): void {
    const c = this.current;
    this.current = null;
    if (c === null || c.p.failed) return;
    if (this.verifier.end()) c.p.received++;
    else this.settle(c.xfer, new TransferError('corrupt', `block ${c.blockId} failed verification`));
  }

  private onControl(
    type: number,
    payload: Buffer,
    handshake: ((err: TransferError | null) => void) | null,
  ): void {
    const f = { type, payload };
    if (f.type === FrameType.Meta) {
      const m = parseControl(f.payload) as { block_size?: unknown; block_bytes?: unknown } | null;
      if (m === null || typeof m !== 'object')
        return handshake?.(new TransferError('handshake', 'malformed META'));
      if (m.block_size !== this.local.blockSize || m.block_bytes !== this.local.blockBytes) {
        return handshake?.(
          new TransferError(
            'handshake',
            `block geometry differs: remote ${String(m.block_size)} tokens/${String(m.block_bytes)} B, local ${this.local.blockSize}/${this.local.blockBytes}`,
          ),
        );
      }
      return handshake?.(null);
    }
    if (f.type === FrameType.Done) {
      const d = parseControl(f.payload) as { xfer_id?: unknown } | null;
      const xfer = typeof d?.xfer_id === 'number' ? d.xfer_id : -1;
      const p = this.pending.get(xfer);
      if (p === undefined) return;
      if (p.failed) {
        this.pending.delete(xfer);
        return;
      }
      if (p.received !== p.seeds.size) {
        this.settle(xfer, new TransferError('corrupt', `${p.received} of ${p.seeds.size} blocks arrived`));
        return;
      }
      this.settle(xfer, null);
      return;
    }
    if (f.type === FrameType.Error) {
      const e = parseControl(f.payload) as { xfer_id?: unknown; code?: unknown; message?: unknown } | null;
      const msg = `${String(e?.code ?? 'error')}: ${String(e?.message ?? '')}`;
      if (typeof e?.xfer_id === 'number') this.settle(e.xfer_id, new TransferError('remote', msg));
      else {
        const err = new TransferError(e?.code === 'handshake' ? 'handshake' : 'remote', msg);
        handshake?.(err);
        this.close(err);
      }
    }
  }

  private settle(xfer: number, err: TransferError | null): void {
    const p = this.pending.get(xfer);
    if (p === undefined) return;
    // A failed transfer's remaining blocks may still arrive: keep ignoring them under this id.
    if (err === null) this.pending.delete(xfer);
    p.cleanup();
    if (err !== null) p.reject(err);
    else {
      const bytes = p.received * this.local.blockBytes;
      p.resolve({ blocks: p.received, bytes, seconds: (performance.now() - p.t0) / 1000 });
    }
  }

  read(req: PullRequest): Promise<PullResult> {
    return new Promise<PullResult>((resolve, reject) => {
      if (this.closed) return reject(new TransferError('connection', `${this.key} is gone`));
      const xfer = this.nextXfer++;
      const seeds = new Map<number, bigint>();
      req.blockIds.forEach((id, i) => seeds.set(id, req.seeds[i]!));
      const timer = setTimeout(
        () =>
          this.settle(
            xfer,
            new TransferError('timeout', `transfer from ${this.key} exceeded ${req.timeoutMs} ms`),
          ),
        req.timeoutMs,
      );
      const onAbort = (): void =>
        this.settle(xfer, new TransferError('aborted', 'the request was cancelled'));
      req.signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.set(xfer, {
        seeds,
        received: 0,
        failed: false,
        t0: performance.now(),
        resolve,
        reject,
        cleanup: () => {
          clearTimeout(timer);
          req.signal?.removeEventListener('abort', onAbort);
          const p = this.pending.get(xfer);
          if (p !== undefined) p.failed = true;
        },
      });
      this.socket.write(
        controlFrame(FrameType.Read, { xfer_id: xfer, request_id: req.requestId, block_ids: req.blockIds }),
      );
    });
  }

  notify(requestId: string): void {
    if (!this.closed && !this.socket.destroyed)
      this.socket.write(controlFrame(FrameType.Notify, { request_id: requestId }));
  }

  close(err: TransferError): void {
    if (this.closed) return;
    this.closed = true;
    this.onGone(this);
    for (const [xfer, p] of this.pending) {
      this.pending.delete(xfer);
      if (!p.failed) {
        p.cleanup();
        p.reject(err);
      }
    }
    this.socket.destroy();
  }
}

export class KvTransferClient {
  private readonly remotes = new Map<string, RemoteEngine>();

  constructor(private readonly local: LocalGeometry) {}

  private remote(host: string, port: number, engineId: string): RemoteEngine {
    const key = `${host}:${port}/${engineId}`;
    let r = this.remotes.get(key);
    if (r === undefined) {
      r = new RemoteEngine(key, host, port, engineId, this.local, (gone) => {
        if (this.remotes.get(gone.key) === gone) this.remotes.delete(gone.key);
      });
      this.remotes.set(key, r);
    }
    return r;
  }

  async pull(req: PullRequest): Promise<PullResult> {
    const r = this.remote(req.host, req.port, req.engineId);
    await r.ready;
    if (req.signal?.aborted) throw new TransferError('aborted', 'the request was cancelled');
    return r.read(req);
  }

  /** Tells the prefiller it may free the request's blocks; best effort. */
  notify(host: string, port: number, engineId: string, requestId: string): void {
    const r = this.remotes.get(`${host}:${port}/${engineId}`);
    if (r !== undefined) {
      r.notify(requestId);
      return;
    }
    const fresh = this.remote(host, port, engineId);
    fresh.ready.then(
      () => fresh.notify(requestId),
      () => undefined,
    );
  }

  close(): void {
    for (const r of [...this.remotes.values()]) r.close(new TransferError('connection', 'closing'));
    this.remotes.clear();
  }
}
