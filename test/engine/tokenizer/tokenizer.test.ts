import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  loadTokenizer,
  TokenizerLoadError,
  type LlmdTokenizer,
} from '../../../src/engine/tokenizer/tokenizer.js';
import { TINY_TOKENIZER_JSON, writeTinyTokenizer } from './tiny-tokenizer.js';

let qwen: LlmdTokenizer;
let scratch: string;

beforeAll(async () => {
  qwen = await loadTokenizer();
  scratch = await mkdtemp(path.join(tmpdir(), 'llmd-tokenizer-test-'));
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('the embedded Qwen3 tokenizer', () => {
  it('loads once and is shared by later calls', async () => {
    expect(await loadTokenizer()).toBe(qwen);
    expect(qwen.source).toBe('embedded:qwen3');
  });

  it('exposes the vocabulary size, end-of-sequence token, limits and chat template', () => {
    expect(qwen.vocabSize).toBe(151669);
    expect(qwen.maxTokenId).toBe(151668);
    expect(qwen.eosToken).toBe('<|im_end|>');
    expect(qwen.eosTokenId).toBe(151645);
    expect(qwen.bosToken).toBeUndefined();
    expect(qwen.bosTokenId).toBeUndefined();
    expect(qwen.padToken).toBe('<|endoftext|>');
    expect(qwen.modelMaxLength).toBe(131072);
    expect(qwen.chatTemplate).toContain('<|im_start|>');
    expect(qwen.concatenative).toBe(true);
    expect(qwen.isSpecial(151645)).toBe(true);
    expect(qwen.specialTokenIds.has(151644)).toBe(true);
  });

  it('round-trips ASCII, accented and CJK text', () => {
    for (const text of [
      'Hello world, this is a test.',
      'héllo wörld',
      '日本語のテキスト',
      'emoji 😀 ok',
      '',
    ]) {
      expect(qwen.decode(qwen.encode(text))).toBe(text);
    }
  });

  it('returns a fresh array for a repeated text, so callers may keep or change it', () => {
    const first = qwen.encode('repeated prompt text');
    const copy = first.slice();
    first.push(1);
    expect(qwen.encode('repeated prompt text')).toEqual(copy);
  });

  it('adds no special tokens to plain text, as Qwen has no BOS', () => {
    const text = 'The quick brown fox';
    expect(qwen.encode(text, { addSpecialTokens: true })).toEqual(
      qwen.encode(text, { addSpecialTokens: false }),
    );
  });

  it('encodes special-token text as the special token and skips it when decoding by default', () => {
    const ids = qwen.encode('<|im_start|>user\nhi<|im_end|>', { addSpecialTokens: false });
    expect(ids[0]).toBe(151644);
    expect(ids[ids.length - 1]).toBe(151645);
    expect(qwen.decode(ids)).toBe('user\nhi');
    expect(qwen.decode(ids, { skipSpecialTokens: false })).toBe('<|im_start|>user\nhi<|im_end|>');
  });

  it('gives per-token text only where a token decodes on its own', () => {
    const [hello] = qwen.encode('Hello', { addSpecialTokens: false });
    expect(qwen.tokenText(hello as number)).toBe('Hello');
    // A four-byte character split over byte-level tokens: some piece is not valid UTF-8 alone.
    const pieces = qwen.encode('𝄞', { addSpecialTokens: false });
    expect(pieces.length).toBeGreaterThan(1);
    expect(pieces.some((id) => qwen.tokenText(id) === undefined)).toBe(true);
    expect(qwen.tokenText(-1)).toBeUndefined();
    expect(qwen.tokenText(qwen.maxTokenId + 1)).toBeUndefined();
    expect(qwen.tokenText(151645)).toBe('<|im_end|>');
  });
});

describe('a tokenizer loaded from a directory', () => {
  it('adds the BOS token for completions but not when asked not to', async () => {
    const tiny = await loadTokenizer(await writeTinyTokenizer());
    expect(tiny.encode('hi there')).toEqual([0, 7, 16]);
    expect(tiny.encode('hi there', { addSpecialTokens: false })).toEqual([7, 16]);
    expect(tiny.decode([0, 7, 16])).toBe('hi there');
    expect(tiny.bosToken).toBe('<s>');
    expect(tiny.bosTokenId).toBe(0);
    expect(tiny.eosTokenId).toBe(1);
    expect(tiny.modelMaxLength).toBeUndefined();
    expect(tiny.concatenative).toBe(false);
    expect(tiny.tokenText(16)).toBeUndefined();
    expect(tiny.chatTemplate).toContain('bos_token');
  });

  it('loads from a tokenizer.json path without a config', async () => {
    const dir = await writeTinyTokenizer({ withConfig: false });
    const tiny = await loadTokenizer(path.join(dir, 'tokenizer.json'));
    expect(tiny.encode('hi', { addSpecialTokens: false })).toEqual([7]);
    expect(tiny.chatTemplate).toBeUndefined();
    expect(tiny.eosTokenId).toBeUndefined();
  });

  it('reads chat_template.jinja when the config has no template', async () => {
    const dir = await writeTinyTokenizer({ withConfig: false });
    await writeFile(path.join(dir, 'chat_template.jinja'), '{{ messages[0].content }}');
    const tiny = await loadTokenizer(dir);
    expect(tiny.chatTemplate).toBe('{{ messages[0].content }}');
  });
});

describe('tokenizer load errors', () => {
  async function loadError(p: string): Promise<TokenizerLoadError> {
    const err: unknown = await loadTokenizer(p).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TokenizerLoadError);
    return err as TokenizerLoadError;
  }

  it('names a path that does not exist', async () => {
    const missing = path.join(scratch, 'nope');
    const err = await loadError(missing);
    expect(err.message).toContain(missing);
    expect(err.path).toBe(missing);
  });

  it('names the missing tokenizer.json of a directory', async () => {
    const dir = path.join(scratch, 'empty');
    await mkdir(dir);
    const err = await loadError(dir);
    expect(err.message).toContain(path.join(dir, 'tokenizer.json'));
    expect(err.message).toContain('not found');
  });

  it('reports malformed JSON with the file name', async () => {
    const dir = path.join(scratch, 'malformed');
    await mkdir(dir);
    await writeFile(path.join(dir, 'tokenizer.json'), '{ "model": ');
    const err = await loadError(dir);
    expect(err.message).toContain('invalid JSON');
    expect(err.message).toContain('tokenizer.json');
  });

  it('rejects JSON that is not a tokenizer', async () => {
    const dir = path.join(scratch, 'wrong-shape');
    await mkdir(dir);
    await writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify({ hello: 'world' }));
    expect((await loadError(dir)).message).toContain('not a tokenizer.json');
    await writeFile(path.join(dir, 'tokenizer.json'), '[1, 2, 3]');
    expect((await loadError(dir)).message).toContain('expected a JSON object');
  });

  it('reports a tokenizer the library cannot build', async () => {
    const dir = path.join(scratch, 'bad-model');
    await mkdir(dir);
    const broken = { ...TINY_TOKENIZER_JSON, model: { type: 'NoSuchModel' } };
    await writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(broken));
    const err = await loadError(dir);
    expect(err.message).toContain(path.join(dir, 'tokenizer.json'));
  });

  it('reports a malformed tokenizer_config.json', async () => {
    const dir = await writeTinyTokenizer({ withConfig: false });
    await writeFile(path.join(dir, 'tokenizer_config.json'), 'not json');
    const err = await loadError(dir);
    expect(err.message).toContain('tokenizer_config.json');
  });

  it('does not cache a failed load', async () => {
    const dir = path.join(scratch, 'later');
    await mkdir(dir);
    await loadError(dir);
    await writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(TINY_TOKENIZER_JSON));
    const tiny = await loadTokenizer(dir);
    expect(tiny.encode('hi', { addSpecialTokens: false })).toEqual([7]);
  });
});
