/**
 * The in-memory KV-block index against the shared contract (its bounds are in memory-lru.test.ts).
 */
import { MemoryIndex } from '../../../src/kvcache/index/memory.js';
import { describeIndexContract } from './contract.js';

describeIndexContract('MemoryIndex', async () => new MemoryIndex({}));
