/**
 * The test side of test/fixtures/kv-events/publish.py: a Python process holding KV-event publishers
 * on real ZMQ sockets, driven by one JSON command per line. Also the events the tests publish, built
 * as prompts (seeded tokens and engine hashes) whose request keys the read path computes.
 */
import { spawn, execFileSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Rng } from '../../../src/core/rng.js';

export const PYTHON = '/usr/bin/python3';
const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '../../fixtures/kv-events/publish.py');

/** Whether Debian's Python with zmq and msgpack is there (the wire tests need it). */
export function pythonWithZmq(): boolean {
  if (!existsSync(PYTHON)) return false;
  try {
    execFileSync(PYTHON, ['-c', 'import zmq, msgpack'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export type WireEvent =
  | {
      type: 'BlockStored';
      hashes: string[];
      parent: string | null;
      tokens: number[];
      block_size: number;
      medium?: string | null;
      lora_name?: string | null;
      extra_keys?: unknown;
      group_idx?: number | null;
      kind?: string | null;
      cache_salt?: string | null;
    }
  | { type: 'BlockRemoved'; hashes: string[]; medium?: string | null; group_idx?: number | null }
  | { type: 'AllBlocksCleared' }
  | { raw: unknown };

export interface WireBatch {
  events?: WireEvent[];
  encoding?: 'array' | 'map';
  hash?: 'int' | 'int64' | 'bytes';
  dialect?: 'vllm' | 'sglang';
  rank?: number | null;
  batch_map?: boolean;
  payload_hex?: string;
}

interface Endpoints {
  endpoint: string;
  replay: string | null;
}

/** One publish.py process; every live one is closed by `closeAll` (tests' afterAll). */
export class PyPublisher {
  private static readonly live = new Set<PyPublisher>();
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly replies: ((line: string) => void)[] = [];
  private readonly exited: Promise<void>;
  private stderr = '';
  private chain: Promise<unknown> = Promise.resolve();

  private constructor() {
    this.proc = spawn(PYTHON, [SCRIPT], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.exited = new Promise((resolve) => this.proc.once('exit', () => resolve()));
    this.proc.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()));
    createInterface({ input: this.proc.stdout }).on('line', (line) => this.replies.shift()?.(line));
    void this.exited.then(() => {
      PyPublisher.live.delete(this);
      for (const r of this.replies.splice(0))
        r(JSON.stringify({ error: `publish.py exited: ${this.stderr}` }));
    });
    PyPublisher.live.add(this);
  }

  static start(): PyPublisher {
    return new PyPublisher();
  }

  static async closeAll(): Promise<void> {
    await Promise.all([...PyPublisher.live].map((p) => p.close()));
  }

  /** One command and its reply; commands are sent one at a time, in call order. */
  request<T = Record<string, unknown>>(cmd: Record<string, unknown>): Promise<T> {
    const run = async (): Promise<T> => {
      const line = await new Promise<string>((resolve) => {
        this.replies.push(resolve);
        this.proc.stdin.write(JSON.stringify(cmd) + '\n');
      });
      const reply = JSON.parse(line) as T & { error?: string };
      if (reply.error !== undefined) throw new Error(`publish.py ${String(cmd.op)}: ${reply.error}`);
      return reply;
    };
    const p = this.chain.then(run, run);
    this.chain = p.catch(() => undefined);
    return p;
  }

  open(
    pub: string,
    mode: 'bind' | 'connect',
    endpoint: string,
    replay: string | null = null,
  ): Promise<Endpoints> {
    return this.request<Endpoints>({ op: 'open', pub, mode, endpoint, replay });
  }

  /** Resolves once a subscriber's filter reached the publisher: what it sends from now on arrives. */
  async waitSubscribed(pub: string): Promise<void> {
    await this.request({ op: 'wait_subscribed', pub, timeout_ms: 10_000 });
  }

  async publish(pub: string, topic: string, batches: WireBatch[], drop: number[] = []): Promise<number[]> {
    return (await this.request<{ seqs: number[] }>({ op: 'publish', pub, topic, batches, drop })).seqs;
  }

  async raw(pub: string, frames: Uint8Array[]): Promise<void> {
    await this.request({ op: 'raw', pub, frames: frames.map((f) => Buffer.from(f).toString('hex')) });
  }

  restart(pub: string): Promise<Endpoints> {
    return this.request<Endpoints>({ op: 'restart', pub });
  }

  async replayRequests(pub: string): Promise<number[]> {
    return (await this.request<{ replay_requests: number[] }>({ op: 'stats', pub })).replay_requests;
  }

  /** Asks the process to exit, and kills it if it does not within a second. */
  async close(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.stdin.end(JSON.stringify({ op: 'exit' }) + '\n');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 1_000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** A prompt as an engine announces it: tokens, one engine hash per block, split over events. */
export class Prompt {
  readonly tokens: number[];
  readonly hashes: bigint[];

  constructor(
    rng: Rng,
    readonly blocks: number,
    readonly blockSize: number,
    /** The engine blocks of a prefix this prompt continues (its hashes come first). */
    prefix: Prompt | null = null,
    prefixBlocks = prefix?.blocks ?? 0,
  ) {
    const head = prefix === null ? [] : prefix.tokens.slice(0, prefixBlocks * blockSize);
    const headHashes = prefix === null ? [] : prefix.hashes.slice(0, prefixBlocks);
    this.tokens = [...head];
    this.hashes = [...headHashes];
    for (let i = head.length; i < blocks * blockSize; i++) this.tokens.push(rng.int(0, 151_000));
    for (let i = headHashes.length; i < blocks; i++) this.hashes.push(randomHash(rng));
  }

  /** `BlockStored` of engine blocks [from, to), chained to block from − 1. */
  stored(
    from: number,
    to: number,
    over: Partial<Extract<WireEvent, { type: 'BlockStored' }>> = {},
  ): WireEvent {
    return {
      type: 'BlockStored',
      hashes: this.hashes.slice(from, to).map(String),
      parent: from === 0 ? null : String(this.hashes[from - 1]),
      tokens: this.tokens.slice(from * this.blockSize, to * this.blockSize),
      block_size: this.blockSize,
      medium: 'GPU',
      lora_name: null,
      ...over,
    };
  }

  removed(from: number, to: number, medium = 'GPU'): WireEvent {
    return { type: 'BlockRemoved', hashes: this.hashes.slice(from, to).map(String), medium };
  }
}

/** A 64-bit engine hash; about half are ≥ 2^63 (msgpack uint64 on the wire). */
export function randomHash(rng: Rng): bigint {
  return (BigInt(rng.nextU32()) << 32n) | BigInt(rng.nextU32() | 1);
}
