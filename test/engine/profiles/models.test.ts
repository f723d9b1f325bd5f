import { describe, expect, it } from 'vitest';
import {
  DEFAULT_MODEL_PROFILE,
  findModelProfile,
  GPT_OSS_120B,
  kvBytesPerToken,
  LLAMA_3_1_70B,
  LLAMA_3_1_8B,
  MODEL_PROFILES,
  modelWeightsBytes,
  QWEN3_0_6B,
  QWEN3_32B,
  QWEN3_8B,
  resolveModelProfile,
} from '../../../src/engine/profiles/models.js';

describe('findModelProfile', () => {
  it('finds a profile by its Hugging Face id in any case', () => {
    expect(findModelProfile('Qwen/Qwen3-32B')).toBe(QWEN3_32B);
    expect(findModelProfile('qwen/qwen3-32b')).toBe(QWEN3_32B);
    expect(findModelProfile('meta-llama/Llama-3.1-8B-Instruct')).toBe(LLAMA_3_1_8B);
    expect(findModelProfile('openai/gpt-oss-120b')).toBe(GPT_OSS_120B);
  });

  it('finds a profile by its bare name and by its aliases', () => {
    expect(findModelProfile('qwen3-32b')).toBe(QWEN3_32B);
    expect(findModelProfile('Qwen3-0.6B')).toBe(QWEN3_0_6B);
    expect(findModelProfile('gpt-oss-120b')).toBe(GPT_OSS_120B);
    expect(findModelProfile('llama-3.1-70b')).toBe(LLAMA_3_1_70B);
    expect(findModelProfile('meta-llama/Meta-Llama-3.1-8B-Instruct')).toBe(LLAMA_3_1_8B);
    expect(findModelProfile('  Qwen/Qwen3-8B ')).toBe(QWEN3_8B);
  });

  it('matches a local path or another organisation by the last path segment', () => {
    expect(findModelProfile('/models/Qwen3-32B')).toBe(QWEN3_32B);
    expect(findModelProfile('RedHatAI/Llama-3.1-8B-Instruct')).toBe(LLAMA_3_1_8B);
  });

  it('returns undefined for an unknown name, which resolves to the Qwen3-8B-like default', () => {
    expect(findModelProfile('random')).toBeUndefined();
    expect(resolveModelProfile('random')).toBe(DEFAULT_MODEL_PROFILE);
    expect(DEFAULT_MODEL_PROFILE).toBe(QWEN3_8B);
    expect(resolveModelProfile('Qwen/Qwen3-32B')).toBe(QWEN3_32B);
  });

  it('gives every name and alias to exactly one profile', () => {
    const seen = new Map<string, string>();
    for (const p of MODEL_PROFILES) {
      for (const key of [p.name, ...p.aliases]) {
        expect(seen.get(key.toLowerCase()), key).toBeUndefined();
        seen.set(key.toLowerCase(), p.name);
        expect(findModelProfile(key)).toBe(p);
      }
    }
  });
});

describe('model profiles', () => {
  it('hold self-consistent architectures', () => {
    for (const p of MODEL_PROFILES) {
      expect(p.numAttentionHeads % p.numKvHeads, p.name).toBe(0);
      expect(p.activeParams, p.name).toBeLessThanOrEqual(p.totalParams);
      expect(p.maxModelLen, p.name).toBeGreaterThan(0);
      expect(p.kvDtypeBytes, p.name).toBe(2);
    }
  });

  it('use the context lengths vLLM defaults to', () => {
    expect(QWEN3_8B.maxModelLen).toBe(40960);
    expect(QWEN3_32B.maxModelLen).toBe(40960);
    expect(LLAMA_3_1_8B.maxModelLen).toBe(131072);
    expect(LLAMA_3_1_70B.maxModelLen).toBe(131072);
    expect(GPT_OSS_120B.maxModelLen).toBe(131072);
  });

  it('weigh dense bf16 models at two bytes per parameter', () => {
    expect(modelWeightsBytes(QWEN3_32B)).toBeCloseTo(65.52e9, -7);
    expect(modelWeightsBytes(LLAMA_3_1_70B)).toBeCloseTo(141.1e9, -8);
  });

  it('weigh gpt-oss-120b with MXFP4 experts at about 65 GB, its checkpoint size', () => {
    const moe = GPT_OSS_120B.moe!;
    expect(moe.expertBytesPerParam).toBeCloseTo(0.53125, 6);
    const gb = modelWeightsBytes(GPT_OSS_120B) / 1e9;
    expect(gb).toBeGreaterThan(63);
    expect(gb).toBeLessThan(67);
    // Active = attention + unembedding + 4 of 128 experts (model card: 5.1B).
    expect(GPT_OSS_120B.activeParams).toBeCloseTo(0.96e9 + 0.58e9 + (moe.expertParams * 4) / 128, -8);
  });

  it('size the KV of one token as K and V over every layer and KV head', () => {
    expect(kvBytesPerToken(QWEN3_32B)).toBe(262_144);
    expect(kvBytesPerToken(QWEN3_8B)).toBe(147_456);
    expect(kvBytesPerToken(GPT_OSS_120B)).toBe(73_728);
  });
});
