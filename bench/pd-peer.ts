/**
 * The sending side of `bench/pd.ts`, in its own process: a KV side-channel server holding one
 * prefill's blocks, and a plain TCP server that writes the same number of bytes in the same block-sized
 * pieces — the baseline. Prints one JSON line with both ports.
 *
 * Run by the bench: `tsx bench/pd-peer.ts <blocks> <blockBytes>`.
 */
import { createServer } from 'node:net';
import { silentLogger } from '../src/core/log.js';
import { KvTransferServer } from '../src/engine/kv-transfer/server.js';

const BLOCKS = Number(process.argv[2] ?? 512);
const BLOCK_BYTES = Number(process.argv[3] ?? 1 << 20);
export const BLOCK_SIZE = 16;
export const MODEL = 'bench-model';

const prompt = Array.from({ length: BLOCKS * BLOCK_SIZE }, (_, i) => (i * 7919) % 150_000);
const blockIds = Array.from({ length: BLOCKS }, (_, i) => i + 1);

const kv = new KvTransferServer({
  host: '127.0.0.1',
  port: 0,
  engineId: 'bench-prefiller',
  compatibilityHash: 'bench',
  model: MODEL,
  blockSize: BLOCK_SIZE,
  blockBytes: BLOCK_BYTES,
  tpSize: 1,
  logger: silentLogger(),
  engine: {
    // Held for ever: every pull of the bench reads the same prefill.
    heldBlocks: (id) => (id === 'bench' ? { blockIds, promptTokenIds: prompt } : undefined),
    releaseHeld: () => true,
  },
});

// The baseline: on any byte from the client, send BLOCKS × BLOCK_BYTES as fast as the socket takes it.
const piece = Buffer.alloc(BLOCK_BYTES, 0x5a);
const plain = createServer({ noDelay: true }, (s) => {
  s.on('error', () => undefined);
  s.on('data', async () => {
    for (let i = 0; i < BLOCKS; i++) {
      if (!s.write(piece)) await new Promise<void>((r) => s.once('drain', r));
    }
  });
});

const kvPort = await kv.listen();
await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
const plainPort = (plain.address() as { port: number }).port;
console.log(JSON.stringify({ msg: 'peer is ready', kvPort, plainPort }));
