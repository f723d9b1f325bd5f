/**
 * Per-request JSONL (`requests.jsonl`): one line per finished request, written as it finishes. Times are
 * seconds since the run started; latencies are seconds, as in the summary.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { e2eSeconds, ntpotSeconds, tpotSeconds, ttftSeconds, type RequestRecord } from '../metrics.js';

export const REQUESTS_FILE = 'requests.jsonl';

const round = (x: number, digits = 6): number | null => {
  if (!Number.isFinite(x)) return null;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};

/** One record as the JSON object of its line. */
export function recordLine(r: RequestRecord, turn = 0): Record<string, unknown> {
  let itlSum = 0;
  let itlMax = 0;
  for (let i = 0; i < r.itlCount; i++) {
    const g = r.itl[i]!;
    itlSum += g;
    if (g > itlMax) itlMax = g;
  }
  return {
    index: r.index,
    stage: r.stage,
    warmup: r.warmup,
    scheduled_time: round(r.scheduledMs / 1000),
    start_time: round(r.sentMs / 1000),
    first_token_time: round(r.firstTokenMs / 1000),
    end_time: round(r.endMs / 1000),
    status: r.status,
    ok: r.ok,
    error: r.error,
    input_tokens: r.promptTokens,
    output_tokens: r.outputTokens,
    cached_tokens: r.cachedReported ? r.cachedTokens : null,
    time_to_first_token: round(ttftSeconds(r)),
    time_per_output_token: round(tpotSeconds(r)),
    normalized_time_per_output_token: round(ntpotSeconds(r)),
    request_latency: round(e2eSeconds(r)),
    inter_token_latency_mean: r.itlCount === 0 ? null : round(itlSum / r.itlCount / 1000),
    inter_token_latency_max: r.itlCount === 0 ? null : round(itlMax / 1000),
    group: r.group,
    session: r.session,
    turn,
  };
}

export class JsonlWriter {
  private constructor(
    readonly path: string,
    private readonly stream: WriteStream,
  ) {}

  static async open(dir: string): Promise<JsonlWriter> {
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, REQUESTS_FILE);
    return new JsonlWriter(file, createWriteStream(file, { flags: 'w' }));
  }

  write(r: RequestRecord, turn = 0): void {
    this.stream.write(JSON.stringify(recordLine(r, turn)) + '\n');
  }

  close(): Promise<void> {
    return new Promise((resolve, reject) =>
      this.stream.end((err?: Error | null) => (err ? reject(err) : resolve())),
    );
  }
}
