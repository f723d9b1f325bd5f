/**
 * What the simulated model answers: the output token ids of a sequence, decided when it is admitted.
 * The engine emits them one per decode step and ends the sequence with `stop` after the last one when
 * there are fewer than max_tokens (the simulated EOS), with `length` otherwise.
 *
 * - `random`: English sentences from a built-in corpus, tokenized once by the real tokenizer, so counts
 *   and text are exact. The length follows llm-d-inference-sim (see response-length.ts); the text
 *   starts at a sentence picked by an Rng seeded from the prompt and the seed, so a prompt and seed
 *   always get the same answer.
 * - `echo`: the prompt (completions) or the last message's text (chat) as given in `echoTokenIds`,
 *   cut to max_tokens and to the room left in the context. Unlike llm-d-inference-sim, which sends the
 *   whole text and only reports `length`, the cut keeps usage and finish_reason consistent.
 *
 * With stop strings or stop token ids the plan ends at the token that completes the first stop, as
 * vLLM stops generating there; the server still runs an OutputTextStream to cut the text itself.
 */
import { Rng } from '../../core/rng.js';
import type { LlmdTokenizer } from '../tokenizer/tokenizer.js';
import { CORPUS_SENTENCES } from './corpus.js';
import { OutputTextStream } from './output-text-stream.js';
import { sampleResponseLength } from './response-length.js';

export type OutputMode = 'random' | 'echo';

export interface OutputGeneratorOptions {
  readonly tokenizer: LlmdTokenizer;
  readonly mode: OutputMode;
  /** Used when a request has no seed of its own. */
  readonly seed: number;
  readonly maxModelLen: number;
  /** Replaces the built-in corpus (plain ASCII sentences keep the streaming fast path). */
  readonly corpus?: readonly string[] | undefined;
}

export interface OutputPlanRequest {
  readonly promptTokenIds: readonly number[];
  /** `max_tokens` / `max_completion_tokens`, or the room left in the context when not given. */
  readonly maxTokens?: number | undefined;
  /**
   * Whether the request gave `maxTokens` itself (the length is then drawn from the histogram) or it is
   * just the context limit (a length around 40 tokens). Default: true when `maxTokens` is set.
   */
  readonly explicitMaxTokens?: boolean | undefined;
  readonly minTokens?: number | undefined;
  readonly ignoreEos?: boolean | undefined;
  readonly seed?: number | undefined;
  /** Which of the request's `n` sequences this is; sequences of one request differ. */
  readonly sequenceIndex?: number | undefined;
  /** Echo mode: the text to repeat, tokenized without special tokens. Defaults to the prompt. */
  readonly echoTokenIds?: readonly number[] | undefined;
  readonly stop?: string | readonly string[] | null | undefined;
  readonly stopTokenIds?: readonly number[] | null | undefined;
  readonly includeStopStrInOutput?: boolean | undefined;
  readonly skipSpecialTokens?: boolean | undefined;
}

export interface OutputGenerator {
  readonly mode: OutputMode;
  /** The output token ids for one sequence. */
  plan(req: OutputPlanRequest): number[];
}

export function createOutputGenerator(options: OutputGeneratorOptions): OutputGenerator {
  return options.mode === 'echo' ? new EchoGenerator(options) : new RandomGenerator(options);
}

abstract class BaseGenerator implements OutputGenerator {
  abstract readonly mode: OutputMode;
  protected readonly tokenizer: LlmdTokenizer;
  protected readonly maxModelLen: number;

  constructor(options: OutputGeneratorOptions) {
    this.tokenizer = options.tokenizer;
    this.maxModelLen = options.maxModelLen;
  }

  plan(req: OutputPlanRequest): number[] {
    const ids = this.draft(req);
    return hasStops(req) ? this.cutAtStop(ids, req) : ids;
  }

  protected abstract draft(req: OutputPlanRequest): number[];

  protected room(req: OutputPlanRequest): number {
    return Math.max(0, this.maxModelLen - req.promptTokenIds.length);
  }

  /** Keep the tokens up to and including the one on which the output stops. */
  private cutAtStop(ids: number[], req: OutputPlanRequest): number[] {
    const stream = new OutputTextStream(this.tokenizer, {
      stop: req.stop,
      stopTokenIds: req.stopTokenIds,
      includeStopStrInOutput: req.includeStopStrInOutput,
      minTokens: req.minTokens,
      skipSpecialTokens: req.skipSpecialTokens,
      promptTokenIds: req.promptTokenIds,
    });
    for (let i = 0; i < ids.length; i++) {
      stream.push(ids[i] as number);
      if (stream.stopped) {
        ids.length = i + 1;
        return ids;
      }
    }
    return ids;
  }
}

function hasStops(req: OutputPlanRequest): boolean {
  const stop = req.stop;
  const hasStopStrings = typeof stop === 'string' ? stop.length > 0 : stop != null && stop.length > 0;
  return hasStopStrings || (req.stopTokenIds != null && req.stopTokenIds.length > 0);
}

class EchoGenerator extends BaseGenerator {
  readonly mode = 'echo' as const;

  protected draft(req: OutputPlanRequest): number[] {
    const source = req.echoTokenIds ?? req.promptTokenIds;
    let n = Math.min(source.length, this.room(req));
    if (req.maxTokens !== undefined) n = Math.min(n, Math.max(0, Math.floor(req.maxTokens)));
    return source.slice(0, n);
  }
}

class RandomGenerator extends BaseGenerator {
  readonly mode = 'random' as const;
  private readonly seed: number;
  /** Every sentence with a leading space, one after another: the text wraps around seamlessly. */
  private readonly corpus: Uint32Array;
  /** Where sentence k starts in `corpus`. */
  private readonly sentenceStarts: Uint32Array;
  /** Sentence k without the leading space, to open a response. */
  private readonly openings: readonly Uint32Array[];

  constructor(options: OutputGeneratorOptions) {
    super(options);
    this.seed = options.seed;
    const sentences = options.corpus ?? CORPUS_SENTENCES;
    if (sentences.length === 0) throw new Error('The output corpus is empty.');
    const tok = options.tokenizer;
    const parts: number[][] = [];
    const starts = new Uint32Array(sentences.length);
    let total = 0;
    for (let k = 0; k < sentences.length; k++) {
      const ids = tok.encode(' ' + (sentences[k] as string), { addSpecialTokens: false });
      starts[k] = total;
      total += ids.length;
      parts.push(ids);
    }
    this.corpus = new Uint32Array(total);
    for (let k = 0; k < parts.length; k++) this.corpus.set(parts[k] as number[], starts[k]);
    this.sentenceStarts = starts;
    this.openings = sentences.map((s) => Uint32Array.from(tok.encode(s, { addSpecialTokens: false })));
    // Warm the per-token text cache so streaming this text never decodes.
    for (let i = 0; i < total; i++) tok.tokenText(this.corpus[i] as number);
    for (const opening of this.openings) for (const id of opening) tok.tokenText(id);
  }

  protected draft(req: OutputPlanRequest): number[] {
    const rng = new Rng(sequenceSeed(req.promptTokenIds, req.seed ?? this.seed, req.sequenceIndex ?? 0));
    const explicit = req.maxTokens !== undefined && req.explicitMaxTokens !== false;
    const room =
      req.maxTokens !== undefined && !explicit ? Math.min(req.maxTokens, this.room(req)) : this.room(req);
    const n = sampleResponseLength(rng, {
      maxTokens: explicit ? req.maxTokens : undefined,
      minTokens: req.minTokens,
      ignoreEos: req.ignoreEos,
      room,
    });
    const out: number[] = [];
    if (n === 0) return out;
    const numSentences = this.sentenceStarts.length;
    const k = rng.int(0, numSentences - 1);
    const opening = this.openings[k] as Uint32Array;
    let i = 0;
    for (; i < n && i < opening.length; i++) out.push(opening[i] as number);
    const corpus = this.corpus;
    let pos = k + 1 < numSentences ? (this.sentenceStarts[k + 1] as number) : 0;
    for (; i < n; i++) {
      out.push(corpus[pos] as number);
      if (++pos === corpus.length) pos = 0;
    }
    return out;
  }
}

/** FNV-1a over the prompt ids, the seed and the sequence index: the per-sequence Rng seed. */
export function sequenceSeed(promptTokenIds: readonly number[], seed: number, sequenceIndex: number): number {
  let h = (0x811c9dc5 ^ (seed >>> 0) ^ Math.floor(seed / 4294967296)) >>> 0;
  for (let i = 0; i < promptTokenIds.length; i++) {
    const id = promptTokenIds[i] as number;
    h = Math.imul(h ^ (id & 0xffff), 0x01000193) >>> 0;
    h = Math.imul(h ^ (id >>> 16), 0x01000193) >>> 0;
  }
  return Math.imul(h ^ sequenceIndex, 0x01000193) >>> 0;
}
