/**
 * A tiny Llama-style tokenizer (SentencePiece-like Metaspace BPE that adds a BOS token), written to a
 * temporary directory. It exercises the paths the embedded byte-level Qwen3 tokenizer does not: added
 * BOS, a decoder that is not concatenative, a tokenizer_config.json with AddedToken objects.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const TINY_VOCAB: Readonly<Record<string, number>> = {
  '<s>': 0,
  '</s>': 1,
  '<unk>': 2,
  '▁': 3,
  h: 4,
  i: 5,
  '▁h': 6,
  '▁hi': 7,
  t: 8,
  e: 9,
  r: 10,
  '▁t': 11,
  he: 12,
  '▁the': 13,
  re: 14,
  ere: 15,
  '▁there': 16,
  th: 17,
  '▁th': 18,
  the: 19,
};

const metaspace = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: true };

export const TINY_TOKENIZER_JSON = {
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens: [
    {
      id: 0,
      content: '<s>',
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    },
    {
      id: 1,
      content: '</s>',
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    },
  ],
  normalizer: null,
  pre_tokenizer: metaspace,
  post_processor: {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [],
    special_tokens: { '<s>': { id: '<s>', ids: [0], tokens: ['<s>'] } },
  },
  decoder: metaspace,
  model: {
    type: 'BPE',
    dropout: null,
    unk_token: '<unk>',
    continuing_subword_prefix: null,
    end_of_word_suffix: null,
    fuse_unk: false,
    byte_fallback: false,
    vocab: TINY_VOCAB,
    merges: ['▁ h', '▁h i', '▁ t', 'h e', 'r e', 'e re', '▁t he', '▁the re', 't h', '▁ th', 'th e'],
  },
};

export const TINY_TOKENIZER_CONFIG = {
  bos_token: { __type: 'AddedToken', content: '<s>', special: true },
  eos_token: '</s>',
  unk_token: '<unk>',
  clean_up_tokenization_spaces: false,
  model_max_length: 1e30,
  chat_template: '{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}',
};

/** Write the tiny tokenizer into a fresh temporary directory and return the directory. */
export async function writeTinyTokenizer(options: { withConfig?: boolean } = {}): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'llmd-tiny-tokenizer-'));
  await writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(TINY_TOKENIZER_JSON));
  if (options.withConfig ?? true) {
    await writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify(TINY_TOKENIZER_CONFIG));
  }
  return dir;
}
