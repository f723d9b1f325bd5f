import { describe, expect, it } from 'vitest';
import {
  MAX_PREFILLER_HEADER,
  StaticAllowlist,
  hostOfTarget,
  parseTarget,
  prefillerCandidates,
  splitHostPort,
} from '../../src/sidecar/ssrf.js';

describe('x-prefiller-host-port values', () => {
  it('splits on commas, trims, and drops empty entries', () => {
    expect(prefillerCandidates('10.0.0.1:8000')).toEqual(['10.0.0.1:8000']);
    expect(prefillerCandidates(' 10.0.0.1:8000 ,10.0.0.2:8000,, ')).toEqual([
      '10.0.0.1:8000',
      '10.0.0.2:8000',
    ]);
    expect(prefillerCandidates(',,,,')).toEqual([]);
    expect(prefillerCandidates('')).toEqual([]);
    expect(prefillerCandidates(','.repeat(MAX_PREFILLER_HEADER))).toEqual([]);
    expect(prefillerCandidates('a:1,'.repeat(MAX_PREFILLER_HEADER))).toBeNull();
  });

  it("finds the host part as Go's SplitHostPort does", () => {
    expect(splitHostPort('10.0.0.1:8000')).toEqual({ host: '10.0.0.1', port: '8000' });
    expect(splitHostPort('[fd00::1]:8000')).toEqual({ host: 'fd00::1', port: '8000' });
    expect(splitHostPort('fd00::1')).toBeNull();
    expect(splitHostPort('10.0.0.1')).toBeNull();
    expect(splitHostPort('http://10.0.0.1:8000')).toBeNull();
    expect(splitHostPort('[fd00::1]')).toBeNull();
    expect(splitHostPort('[[fd00::1]]:80')).toBeNull();
    expect(hostOfTarget('10.0.0.1:80/x')).toBe('10.0.0.1');
    expect(hostOfTarget('http://10.0.0.1:8000')).toBe('http://10.0.0.1:8000');
    expect(hostOfTarget('a@10.0.0.1:80')).toBe('a@10.0.0.1');
  });

  it('accepts only host:port targets with a real host and port', () => {
    expect(parseTarget('10.0.0.1:8000')).toEqual({ hostPort: '10.0.0.1:8000', host: '10.0.0.1', port: 8000 });
    expect(parseTarget('[FD00:0:0::1]:8000')).toEqual({
      hostPort: '[fd00::1]:8000',
      host: 'fd00::1',
      port: 8000,
    });
    expect(parseTarget('Prefill-0.NS.svc.cluster.local:8000')).toEqual({
      hostPort: 'prefill-0.ns.svc.cluster.local:8000',
      host: 'prefill-0.ns.svc.cluster.local',
      port: 8000,
    });
    const bad = [
      '10.0.0.1',
      '10.0.0.1:',
      '10.0.0.1:0',
      '10.0.0.1:65536',
      '10.0.0.1:80/x',
      '10.0.0.1:80?x',
      '10.0.0.1:+80',
      '10.0.0.1:8 0',
      'http://10.0.0.1:8000',
      'https://10.0.0.1:8000',
      'file:///etc/passwd',
      'file://x:1',
      'a@10.0.0.1:80',
      'user:pw@10.0.0.1:80',
      'fd00::1:8000',
      '[fd00::1]',
      '[fd00::1]:',
      '[not-an-ip]:80',
      '[10.0.0.1]:80',
      '10.0.0.1 :80',
      ' 10.0.0.1:80',
      '10.0.0.1\t:80',
      '999.1.1.1:80',
      '2130706433:80',
      '0x7f.0.0.1:80',
      'host_name:80',
      '-lead.example:80',
      'a..b:80',
      `${'a'.repeat(64)}.example:80`,
      `${'a.'.repeat(200)}example:80`,
      '%2f:80',
      ':80',
      '',
    ];
    for (const b of bad) expect(parseTarget(b), b).toBeNull();
  });
});

describe('the static SSRF allowlist', () => {
  const list = new StaticAllowlist(['10.0.0.1', ' [fd00::1] ', 'fd00:0:0::2', 'Prefill-A.ns.svc', '', '  ']);

  it('allows its hosts on any port, comparing IPv6 canonically and names without case', () => {
    expect(list.size).toBe(4);
    expect(list.allows(hostOfTarget('10.0.0.1:8000'))).toBe(true);
    expect(list.allows(hostOfTarget('10.0.0.1:1'))).toBe(true);
    expect(list.allows(hostOfTarget('[fd00::1]:8000'))).toBe(true);
    expect(list.allows(hostOfTarget('[FD00:0::1]:8000'))).toBe(true);
    expect(list.allows(hostOfTarget('[fd00::2]:8000'))).toBe(true);
    expect(list.allows(hostOfTarget('prefill-a.NS.svc:8000'))).toBe(true);
  });

  it('refuses everything else, whatever shape it takes', () => {
    const hostile = [
      '10.0.0.2:8000',
      'http://10.0.0.1:8000',
      'file://10.0.0.1',
      'a@10.0.0.1:80',
      '10.0.0.1.evil.com:80',
      'fd00::1:8000',
      '[fd00::3]:80',
      '127.0.0.1:8000',
      'localhost:8000',
      '',
      ' ',
    ];
    for (const h of hostile) expect(list.allows(hostOfTarget(h)), h).toBe(false);
    // A bare host (no port) is not split, and is its own host: listed ones pass, and fail parsing later.
    expect(list.allows(hostOfTarget('10.0.0.1'))).toBe(true);
    expect(list.allows(hostOfTarget('fd00::1'))).toBe(true);
    expect(parseTarget('fd00::1')).toBeNull();
    expect(new StaticAllowlist([]).allows('10.0.0.1')).toBe(false);
  });
});
