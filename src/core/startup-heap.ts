/**
 * Collects the garbage start-up leaves behind, once, before a server takes traffic.
 *
 * Loading a tokenizer parses a multi-megabyte JSON document whose temporaries survive into the old
 * generation; left alone, they are collected by the first full GC, which then falls in the middle of
 * serving and costs tens of milliseconds of marking in steps of several milliseconds each. vLLM does
 * the same for the same reason (`gc.collect()` then `gc.freeze()` once the engine is up).
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Runs a full, synchronous garbage collection. */
export function collectStartupGarbage(): void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (typeof exposed === 'function') {
    exposed();
    return;
  }
  // `gc` is installed in contexts created while the flag is set; the flag is cleared again at once so
  // no later context (or the user's) sees it.
  setFlagsFromString('--expose-gc');
  try {
    (runInNewContext('gc') as () => void)();
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
}
