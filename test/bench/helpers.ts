import type { RequestRecord } from '../../src/bench/metrics.js';

/** A successful request: sent at `sent` ms, tokens at the given ms times (the first is the TTFT). */
export function rec(
  tokenTimes: number[],
  init: Partial<RequestRecord> & { sent?: number; end?: number } = {},
): RequestRecord {
  const sent = init.sent ?? 0;
  const gaps = tokenTimes.slice(1).map((t, i) => t - tokenTimes[i]!);
  const { sent: _s, end: _e, ...rest } = init;
  return {
    index: 0,
    stage: 0,
    warmup: false,
    scheduledMs: sent,
    sentMs: sent,
    firstTokenMs: tokenTimes[0] ?? NaN,
    endMs: init.end ?? tokenTimes[tokenTimes.length - 1] ?? sent,
    status: 200,
    ok: true,
    error: null,
    promptTokens: 100,
    outputTokens: tokenTimes.length,
    cachedTokens: 0,
    cachedReported: false,
    itl: Float32Array.from(gaps),
    itlCount: gaps.length,
    group: null,
    session: null,
    ...rest,
  };
}

/** Tags balance and nest (a small XML well-formedness check; HTML void elements allowed). */
export function wellFormed(text: string, voids: readonly string[] = []): boolean {
  const stack: string[] = [];
  const tag = /<(\/?)([a-zA-Z][\w:-]*)([^>]*?)(\/?)>/g;
  const body = text.replace(/<!DOCTYPE[^>]*>/i, '').replace(/<!--[\s\S]*?-->/g, '');
  for (const m of body.matchAll(tag)) {
    const [, close, name, , selfClose] = m;
    if (selfClose === '/' || voids.includes(name!.toLowerCase())) continue;
    if (close === '/') {
      if (stack.pop() !== name) return false;
    } else stack.push(name!);
  }
  return stack.length === 0;
}
