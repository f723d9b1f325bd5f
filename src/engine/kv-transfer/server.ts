/**
 * The prefiller's end of the side channel (vLLM: the NIXL handshake listener on
 * `VLLM_NIXL_SIDE_CHANNEL_PORT` plus the memory a decoder reads): it answers a decoder's handshake,
 * streams the blocks of a finished prefill that the engine holds, and frees them when the decoder says
 * it has them. A peer that sends anything malformed is disconnected; nothing it sends can throw here.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from '../../core/log.js';
import { TEMPLATE_BYTES, blockSeeds, patternTemplate } from './payload.js';
import {
  FrameReader,
  FrameType,
  PROTOCOL_VERSION,
  ProtocolError,
  blockFrameHead,
  controlFrame,
  parseControl,
  type Frame,
} from './protocol.js';

export interface HeldBlocksSource {
  heldBlocks(
    requestId: string,
  ): { readonly blockIds: readonly number[]; readonly promptTokenIds: readonly number[] } | undefined;
  releaseHeld(requestId: string): boolean;
}

export interface KvTransferServerOptions {
  readonly host: string;
  readonly port: number;
  readonly engineId: string;
  readonly compatibilityHash: string;
  readonly model: string;
  readonly blockSize: number;
  readonly blockBytes: number;
  readonly tpSize: number;
  readonly engine: HeldBlocksSource;
  readonly logger: Logger;
  /** Simulation of a faulty link: every block sent has one byte flipped. */
  readonly corruptPayloads?: boolean;
  /** Called when a transfer of `bytes` for `blocks` blocks was sent. */
  readonly onSent?: (blocks: number, bytes: number, seconds: number) => void;
}

interface ReadRequest {
  xfer_id: number;
  request_id: string;
  block_ids: number[];
}

function isRead(v: unknown): v is ReadRequest {
  const r = v as Partial<ReadRequest> | null;
  return (
    r !== null &&
    typeof r === 'object' &&
    Number.isInteger(r.xfer_id) &&
    typeof r.request_id === 'string' &&
    Array.isArray(r.block_ids) &&
    r.block_ids.length <= 1_000_000 &&
    r.block_ids.every((b) => Number.isInteger(b) && b >= 0)
  );
}

export class KvTransferServer {
  private readonly net: Server;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly o: KvTransferServerOptions) {
    this.net = createServer({ noDelay: true }, (s) => this.onConnection(s));
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.net.once('error', reject);
      this.net.listen(this.o.port, this.o.host, () => {
        this.net.off('error', reject);
        resolve((this.net.address() as { port: number }).port);
      });
    });
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.net.close(() => resolve()));
  }

  private onConnection(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let handshaken = false;
    // READs are served one after another, in order, on a connection.
    let queue: Promise<void> = Promise.resolve();
    const reader = new FrameReader((f: Frame) => {
      if (f.type === FrameType.Hello) {
        handshaken = this.hello(socket, parseControl(f.payload));
      } else if (!handshaken) {
        throw new ProtocolError('frame before handshake');
      } else if (f.type === FrameType.Read) {
        const r = parseControl(f.payload);
        if (!isRead(r)) throw new ProtocolError('malformed READ');
        queue = queue.then(() => this.read(socket, r));
      } else if (f.type === FrameType.Notify) {
        const n = parseControl(f.payload) as { request_id?: unknown } | null;
        if (n !== null && typeof n === 'object' && typeof n.request_id === 'string') {
          this.o.engine.releaseHeld(n.request_id);
        }
      } else {
        throw new ProtocolError(`unexpected frame ${f.type}`);
      }
    });
    socket.on('data', (d: Buffer) => {
      try {
        reader.push(d);
      } catch (err) {
        this.o.logger.debug(
          { err: (err as Error).message, peer: socket.remoteAddress },
          'kv transfer peer dropped',
        );
        socket.destroy();
      }
    });
  }

  private hello(socket: Socket, v: unknown): boolean {
    const h = v as { version?: unknown; engine_id?: unknown; compatibility_hash?: unknown } | null;
    const o = this.o;
    let problem: string | null = null;
    if (h === null || typeof h !== 'object') problem = 'malformed handshake';
    else if (h.version !== PROTOCOL_VERSION)
      problem = `protocol version ${String(h.version)} is not ${PROTOCOL_VERSION}`;
    else if (h.engine_id !== o.engineId) problem = `this is engine ${o.engineId}, not ${String(h.engine_id)}`;
    else if (h.compatibility_hash !== o.compatibilityHash)
      problem = 'incompatible engines (compatibility hash differs)';
    if (problem !== null) {
      socket.end(controlFrame(FrameType.Error, { code: 'handshake', message: problem }));
      return false;
    }
    socket.write(
      controlFrame(FrameType.Meta, {
        engine_id: o.engineId,
        compatibility_hash: o.compatibilityHash,
        block_size: o.blockSize,
        block_bytes: o.blockBytes,
        tp_size: o.tpSize,
      }),
    );
    return true;
  }

  private async read(socket: Socket, r: ReadRequest): Promise<void> {
    const o = this.o;
    const fail = (code: string, message: string): void => {
      if (!socket.destroyed)
        socket.write(controlFrame(FrameType.Error, { xfer_id: r.xfer_id, code, message }));
    };
    const held = o.engine.heldBlocks(r.request_id);
    if (held === undefined) return fail('unknown_request', `no blocks held for request ${r.request_id}`);
    const index = new Map<number, number>();
    held.blockIds.forEach((id, i) => index.set(id, i));
    const positions: number[] = [];
    for (const id of r.block_ids) {
      const i = index.get(id);
      if (i === undefined) return fail('bad_block', `block ${id} is not held for request ${r.request_id}`);
      positions.push(i);
    }
    const seeds = blockSeeds(o.model, held.promptTokenIds, o.blockSize);
    const t0 = performance.now();
    const body = o.blockBytes - 8;
    // A payload is its seed and then a template repeated: each block's bytes are written from one small
    // template, never built in full (the socket keeps the template until it is sent, so one per block).
    const templateBytes = Math.min(TEMPLATE_BYTES, Math.ceil(body / 64) * 64);
    for (let k = 0; k < positions.length; k++) {
      if (socket.destroyed) return;
      const seed = seeds[positions[k]!]!;
      const template = patternTemplate(seed, Buffer.allocUnsafe(templateBytes));
      const seedBytes = Buffer.allocUnsafe(8);
      seedBytes.writeBigUInt64BE(seed, 0);
      socket.cork();
      socket.write(blockFrameHead(r.xfer_id, r.block_ids[k]!, o.blockBytes));
      let ok = socket.write(seedBytes);
      for (let left = body; left > 0; left -= templateBytes) {
        let piece = left >= templateBytes ? template : template.subarray(0, left);
        if (o.corruptPayloads && left <= templateBytes) {
          piece = Buffer.from(piece);
          piece[piece.length - 1]! ^= 0xff;
        }
        ok = socket.write(piece);
      }
      socket.uncork();
      if (!ok) await drained(socket);
    }
    if (socket.destroyed) return;
    socket.write(controlFrame(FrameType.Done, { xfer_id: r.xfer_id, blocks: positions.length }));
    o.onSent?.(positions.length, positions.length * o.blockBytes, (performance.now() - t0) / 1000);
  }
}

/** Resolves when the socket can take more, or is gone; leaves no listener behind either way. */
function drained(socket: Socket): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}
