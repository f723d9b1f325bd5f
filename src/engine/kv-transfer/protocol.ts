/**
 * The side channel between a prefiller and a decoder (the role NIXL's handshake and RDMA reads play in
 * vLLM's NixlConnector), over one TCP connection: length-prefixed frames `[type u8][length u32 BE]
 * [payload]`. Control frames carry JSON; block frames carry `[transfer id u32][block id u32]` and the
 * block's bytes.
 *
 *   decoder → prefiller   HELLO {version, engine_id, compatibility_hash}
 *   prefiller → decoder   META {engine_id, compatibility_hash, block_size, block_bytes, tp_size} | ERROR
 *   decoder → prefiller   READ {xfer_id, request_id, block_ids}
 *   prefiller → decoder   BLOCK × n, then DONE {xfer_id, blocks} | ERROR {xfer_id, code, message}
 *   decoder → prefiller   NOTIFY {request_id}   (the prefiller frees the request's held blocks)
 */

export const PROTOCOL_VERSION = 1;

export const enum FrameType {
  Hello = 1,
  Meta = 2,
  Read = 3,
  Block = 4,
  Done = 5,
  Notify = 6,
  Error = 7,
}

/** Bigger frames are a broken or hostile peer. */
export const MAX_FRAME_BYTES = 512 * 1024 * 1024;
/** Control frames are small JSON. */
export const MAX_CONTROL_BYTES = 4 * 1024 * 1024;

export const HEADER_BYTES = 5;
export const BLOCK_HEADER_BYTES = 8;

export function controlFrame(type: FrameType, value: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(value), 'utf8');
  const out = Buffer.allocUnsafe(HEADER_BYTES + json.length);
  out[0] = type;
  out.writeUInt32BE(json.length, 1);
  json.copy(out, HEADER_BYTES);
  return out;
}

/** The 13-byte head of a block frame whose payload of `bytes` follows. */
export function blockFrameHead(xferId: number, blockId: number, bytes: number): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES + BLOCK_HEADER_BYTES);
  out[0] = FrameType.Block;
  out.writeUInt32BE(BLOCK_HEADER_BYTES + bytes, 1);
  out.writeUInt32BE(xferId, HEADER_BYTES);
  out.writeUInt32BE(blockId, HEADER_BYTES + 4);
  return out;
}

export class ProtocolError extends Error {}

export interface Frame {
  readonly type: number;
  readonly payload: Buffer;
}

/**
 * Reassembles frames from socket reads. A frame that lies inside one read is handed out as a view of it,
 * with no copy; one that spans reads is copied once, when complete.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private bytes = 0;

  constructor(private readonly onFrame: (f: Frame) => void) {}

  /** Throws `ProtocolError` on a frame that cannot be valid. */
  push(data: Buffer): void {
    this.chunks.push(data);
    this.bytes += data.length;
    while (this.bytes >= HEADER_BYTES) {
      const head = this.peek(HEADER_BYTES);
      const type = head[0]!;
      const len = head.readUInt32BE(1);
      if (type < FrameType.Hello || type > FrameType.Error)
        throw new ProtocolError(`unknown frame type ${type}`);
      const limit = type === FrameType.Block ? MAX_FRAME_BYTES : MAX_CONTROL_BYTES;
      if (len > limit) throw new ProtocolError(`frame of ${len} bytes is too large`);
      if (type === FrameType.Block && len < BLOCK_HEADER_BYTES)
        throw new ProtocolError('truncated block frame');
      if (this.bytes < HEADER_BYTES + len) return;
      const frame = this.take(HEADER_BYTES + len);
      this.onFrame({ type, payload: frame.subarray(HEADER_BYTES) });
    }
  }

  private peek(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) return first;
    return Buffer.concat(this.chunks, n).subarray(0, n);
  }

  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let off = 0;
      while (off < n) {
        const c = this.chunks[0]!;
        const k = Math.min(c.length, n - off);
        c.copy(out, off, 0, k);
        off += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.bytes -= n;
    return out;
  }
}

export function parseControl(payload: Buffer): unknown {
  try {
    return JSON.parse(payload.toString('utf8'));
  } catch {
    throw new ProtocolError('control frame is not JSON');
  }
}

/** Where `StreamingFrameReader` delivers what it reads. */
export interface FrameSink {
  control(type: number, payload: Buffer): void;
  blockStart(xferId: number, blockId: number, bytes: number): void;
  /** A piece of the current block's payload, as a view of the socket read (no copy). */
  blockData(piece: Buffer): void;
  blockEnd(): void;
}

const enum ReadState {
  Head,
  BlockHead,
  BlockData,
  Control,
}

/**
 * The decoder's reader: control frames are assembled, block payloads are handed out in pieces as they
 * arrive, so megabyte blocks are neither buffered nor copied on the way to verification.
 */
export class StreamingFrameReader {
  private state = ReadState.Head;
  private readonly head = Buffer.allocUnsafe(HEADER_BYTES + BLOCK_HEADER_BYTES);
  private headFill = 0;
  private type = 0;
  private remaining = 0;
  private control: Buffer | null = null;
  private controlFill = 0;

  constructor(private readonly sink: FrameSink) {}

  /** Throws `ProtocolError` on a frame that cannot be valid. */
  push(data: Buffer): void {
    let i = 0;
    const n = data.length;
    while (i < n) {
      switch (this.state) {
        case ReadState.Head: {
          const take = Math.min(HEADER_BYTES - this.headFill, n - i);
          data.copy(this.head, this.headFill, i, i + take);
          this.headFill += take;
          i += take;
          if (this.headFill < HEADER_BYTES) break;
          this.type = this.head[0]!;
          const len = this.head.readUInt32BE(1);
          if (this.type < FrameType.Hello || this.type > FrameType.Error) {
            throw new ProtocolError(`unknown frame type ${this.type}`);
          }
          if (this.type === FrameType.Block) {
            if (len > MAX_FRAME_BYTES) throw new ProtocolError(`frame of ${len} bytes is too large`);
            if (len < BLOCK_HEADER_BYTES) throw new ProtocolError('truncated block frame');
            this.remaining = len - BLOCK_HEADER_BYTES;
            this.state = ReadState.BlockHead;
          } else {
            if (len > MAX_CONTROL_BYTES) throw new ProtocolError(`frame of ${len} bytes is too large`);
            this.control = Buffer.allocUnsafe(len);
            this.controlFill = 0;
            this.state = ReadState.Control;
            if (len === 0) this.finishControl();
          }
          break;
        }
        case ReadState.BlockHead: {
          const take = Math.min(HEADER_BYTES + BLOCK_HEADER_BYTES - this.headFill, n - i);
          data.copy(this.head, this.headFill, i, i + take);
          this.headFill += take;
          i += take;
          if (this.headFill < HEADER_BYTES + BLOCK_HEADER_BYTES) break;
          this.sink.blockStart(
            this.head.readUInt32BE(HEADER_BYTES),
            this.head.readUInt32BE(HEADER_BYTES + 4),
            this.remaining,
          );
          this.headFill = 0;
          if (this.remaining === 0) {
            this.sink.blockEnd();
            this.state = ReadState.Head;
          } else {
            this.state = ReadState.BlockData;
          }
          break;
        }
        case ReadState.BlockData: {
          const take = Math.min(this.remaining, n - i);
          this.sink.blockData(take === n && i === 0 ? data : data.subarray(i, i + take));
          i += take;
          this.remaining -= take;
          if (this.remaining === 0) {
            this.sink.blockEnd();
            this.state = ReadState.Head;
          }
          break;
        }
        case ReadState.Control: {
          const c = this.control!;
          const take = Math.min(c.length - this.controlFill, n - i);
          data.copy(c, this.controlFill, i, i + take);
          this.controlFill += take;
          i += take;
          if (this.controlFill === c.length) this.finishControl();
          break;
        }
      }
    }
  }

  private finishControl(): void {
    const c = this.control!;
    this.control = null;
    this.headFill = 0;
    this.state = ReadState.Head;
    this.sink.control(this.type, c);
  }
}
