import { describe, expect, it } from 'vitest';
import {
  A100_80G,
  B200,
  findHardwareProfile,
  H100,
  H200,
  HARDWARE_PROFILES,
  hardwareNames,
  L40S,
} from '../../../src/engine/profiles/hardware.js';

describe('findHardwareProfile', () => {
  it('finds accelerators by name and alias in any case', () => {
    expect(findHardwareProfile('H100')).toBe(H100);
    expect(findHardwareProfile('h100')).toBe(H100);
    expect(findHardwareProfile('H100-80G')).toBe(H100);
    expect(findHardwareProfile('h200')).toBe(H200);
    expect(findHardwareProfile('a100')).toBe(A100_80G);
    expect(findHardwareProfile('A100-80G')).toBe(A100_80G);
    expect(findHardwareProfile('l40s')).toBe(L40S);
    expect(findHardwareProfile('b200')).toBe(B200);
  });

  it('returns undefined for an unknown accelerator', () => {
    expect(findHardwareProfile('TPU-v5e')).toBeUndefined();
    expect(findHardwareProfile('')).toBeUndefined();
  });

  it('lists the canonical names', () => {
    expect(hardwareNames()).toEqual(['H100', 'H200', 'A100-80G', 'L40S', 'B200']);
  });

  it('gives every name and alias to exactly one accelerator', () => {
    const keys = HARDWARE_PROFILES.flatMap((h) => [h.name, ...h.aliases].map((k) => k.toLowerCase()));
    expect(new Set(keys).size).toBe(keys.length);
  });
});

describe('hardware profiles', () => {
  it('carry the datasheet peaks', () => {
    expect(H100.peakFlopsPerSecond).toBe(989e12);
    expect(H100.memoryBandwidthBytesPerSecond).toBe(3.35e12);
    expect(H100.memoryBytes).toBe(80e9);
    expect(H200.memoryBytes).toBe(141e9);
    expect(H200.memoryBandwidthBytesPerSecond).toBe(4.8e12);
    expect(A100_80G.peakFlopsPerSecond).toBe(312e12);
    expect(A100_80G.memoryBandwidthBytesPerSecond).toBe(2.039e12);
    expect(L40S.peakFlopsPerSecond).toBe(362e12);
    expect(L40S.memoryBandwidthBytesPerSecond).toBe(864e9);
    expect(L40S.memoryBytes).toBe(48e9);
  });

  it('connect L40S over PCIe and the SXM parts over NVLink', () => {
    expect(L40S.interconnect.name).toMatch(/PCIe/);
    expect(L40S.interconnect.bandwidthBytesPerSecond).toBeLessThan(
      H100.interconnect.bandwidthBytesPerSecond / 10,
    );
    for (const h of [H100, H200, A100_80G, B200]) expect(h.interconnect.name).toMatch(/NVLink/);
  });

  it('hold efficiencies between zero and one', () => {
    for (const h of HARDWARE_PROFILES) {
      expect(h.calibration.mfu, h.name).toBeGreaterThan(0);
      expect(h.calibration.mfu, h.name).toBeLessThanOrEqual(1);
      expect(h.calibration.mbu, h.name).toBeGreaterThan(0);
      expect(h.calibration.mbu, h.name).toBeLessThanOrEqual(1);
      expect(h.calibration.stepOverheadSeconds, h.name).toBeGreaterThanOrEqual(0);
    }
  });
});
