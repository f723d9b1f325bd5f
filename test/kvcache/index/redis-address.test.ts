/**
 * llm-d's Redis address (`redisConfig.address`) as go-redis `ParseURL` reads it, behind upstream's
 * scheme fix-up: what is accepted and into which options, and what is refused, with the password
 * never shown in a message, however malformed the address.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/core/errors.js';
import { parseRedisAddress, type RedisAddress } from '../../../src/kvcache/index/redis-address.js';

function parsed(address: string): Omit<RedisAddress, 'display'> & { display: string } {
  return parseRedisAddress(address);
}

/** The ConfigError an address raises (fails the test if it parses). */
function refusal(address: string): ConfigError {
  try {
    parseRedisAddress(address);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`"${address}" parsed`);
}

describe('parseRedisAddress: accepted forms', () => {
  it.each<[string, Partial<RedisAddress>]>([
    [
      'redis://localhost:6379',
      { host: 'localhost', port: 6379, tls: false, db: 0, display: 'redis://localhost:6379/0' },
    ],
    ['redis://10.0.0.7:7000/3', { host: '10.0.0.7', port: 7000, db: 3, display: 'redis://10.0.0.7:7000/3' }],
    [
      'rediss://cache.example.com:6380/2',
      { host: 'cache.example.com', port: 6380, tls: true, verifyTls: true, db: 2 },
    ],
    ['valkey://valkey:6379', { host: 'valkey', tls: false, display: 'redis://valkey:6379/0' }],
    ['valkeys://valkey', { host: 'valkey', port: 6379, tls: true, display: 'rediss://valkey:6379/0' }],
    ['REDIS://Host:1', { host: 'Host', port: 1 }],
    // Upstream takes a bare address as redis://.
    ['redis-master:6379', { host: 'redis-master', port: 6379, tls: false, db: 0 }],
    ['10.1.2.3', { host: '10.1.2.3', port: 6379 }],
    ['[::1]:6380', { host: '::1', port: 6380, display: 'redis://[::1]:6380/0' }],
    ['redis://[fd00::5]/4', { host: 'fd00::5', port: 6379, db: 4 }],
    ['rediss://[fe80::1%25eth0]:6379', { host: 'fe80::1%eth0', tls: true }],
    // go-redis defaults: no host is localhost, no port 6379, an empty path db 0.
    ['redis://', { host: 'localhost', port: 6379, db: 0 }],
    ['redis://:6390', { host: 'localhost', port: 6390 }],
    ['redis://h/', { host: 'h', db: 0 }],
    ['redis://h//5/', { db: 5 }],
  ])('%s', (address, want) => {
    expect(parsed(address)).toMatchObject(want);
  });

  it('takes user and password, percent-decoded, and keeps them out of the display form', () => {
    const a = parsed('redis://llmd:p%40ss%2Fw%3Ard@h:6379/1');
    expect(a).toMatchObject({ username: 'llmd', password: 'p@ss/w:rd', db: 1 });
    expect(a.display).toBe('redis://h:6379/1');
    expect(parsed('redis://:only-password@h')).toMatchObject({ password: 'only-password' });
    expect(parsed('redis://:only-password@h').username).toBeUndefined();
    expect(parsed('redis://user-only@h')).toMatchObject({ username: 'user-only' });
    expect(parsed('redis://user-only@h').password).toBeUndefined();
    // The user info ends at the last '@'; the password at the first ':' after the user.
    expect(parsed('redis://a@b:c:d@h')).toMatchObject({ username: 'a@b', password: 'c:d', host: 'h' });
    expect(parsed('u:secret@h:1')).toMatchObject({ username: 'u', password: 'secret', host: 'h', port: 1 });
  });

  it('takes a unix socket with user, password, db and options', () => {
    expect(parsed('unix:///var/run/redis/redis.sock')).toEqual({
      path: '/var/run/redis/redis.sock',
      tls: false,
      verifyTls: true,
      db: 0,
      display: 'unix:///var/run/redis/redis.sock?db=0',
    });
    expect(parsed('unix://u:p%3Aw@/tmp/r%20s.sock?db=7&client_name=epp')).toEqual({
      path: '/tmp/r s.sock',
      tls: false,
      verifyTls: true,
      username: 'u',
      password: 'p:w',
      db: 7,
      clientName: 'epp',
      display: 'unix:///tmp/r s.sock?db=7',
    });
    // '@' in the path is part of the path: user info only precedes it.
    expect(parsed('unix:///run/user@1000/redis.sock').path).toBe('/run/user@1000/redis.sock');
  });

  it('reads go-redis query options by its rules', () => {
    expect(parsed('redis://h?client_name=epp-1&dial_timeout=3s')).toMatchObject({
      clientName: 'epp-1',
      connectTimeoutMs: 3000,
    });
    // A plain number is seconds; zero or less disables the timeout; Go durations otherwise.
    expect(parsed('redis://h?dial_timeout=3').connectTimeoutMs).toBe(3000);
    expect(parsed('redis://h?dial_timeout=0').connectTimeoutMs).toBe(0);
    expect(parsed('redis://h?dial_timeout=-1').connectTimeoutMs).toBe(0);
    expect(parsed('redis://h?dial_timeout=-2s').connectTimeoutMs).toBe(0);
    expect(parsed('redis://h?dial_timeout=1m1.5s').connectTimeoutMs).toBe(61_500);
    expect(parsed('redis://h?dial_timeout=1500us').connectTimeoutMs).toBe(2);
    // `db` in the query overrides the path's, on TCP too; an empty value is the default.
    expect(parsed('redis://h/3?db=1').db).toBe(1);
    expect(parsed('redis://h/3?db=').db).toBe(3);
    expect(parsed('redis://h?client_name=').clientName).toBeUndefined();
    // The last of repeated options counts.
    expect(parsed('redis://h?db=1&db=2').db).toBe(2);
    // skip_verify (TLS only) takes go-redis's booleans.
    expect(parsed('rediss://h?skip_verify=true').verifyTls).toBe(false);
    expect(parsed('rediss://h?skip_verify=1').verifyTls).toBe(false);
    expect(parsed('rediss://h?skip_verify=false').verifyTls).toBe(true);
    expect(parsed('rediss://h?skip_verify=').verifyTls).toBe(true);
    // A query value may hold '@'.
    expect(parsed('redis://h?client_name=epp@zone-a').clientName).toBe('epp@zone-a');
  });

  it('accepts go-redis pool and retry tunables, checking their type, and ignores them', () => {
    const a = parsed(
      'redis://h:1/2?protocol=3&max_retries=-1&pool_size=20&pool_fifo=true&read_timeout=5&' +
        'write_timeout=500ms&min_idle_conns=&conn_max_idle_time=-1&max_conn_age=1h&idle_check_frequency=1m',
    );
    expect(a).toEqual({ host: 'h', port: 1, tls: false, verifyTls: true, db: 2, display: 'redis://h:1/2' });
    expect(refusal('redis://h?pool_size=many').message).toMatch(/pool_size "many" is not an integer/);
    expect(refusal('redis://h?read_timeout=5x').message).toMatch(/read_timeout "5x" is not a duration/);
    expect(refusal('redis://h?pool_fifo=yes').message).toMatch(/pool_fifo must be true, false, 1 or 0/);
  });
});

describe('parseRedisAddress: refused forms', () => {
  it.each<[string, RegExp]>([
    ['', /it is empty/],
    ['   ', /it is empty/],
    ['http://h:6379', /unsupported scheme "http:\/\/"/],
    ['redis+sentinel://h', /unsupported scheme/],
    ['redis://h x', /white space/],
    ['redis://h\n', /white space/],
    ['redis://h\u0000', /control character/],
    ['redis://h:0', /port "0" is not a number from 1 to 65535/],
    ['redis://h:65536', /port "65536"/],
    ['redis://h:', /port ""/],
    ['redis://h:+1', /port "\+1"/],
    ['redis://h:1e3', /port "1e3"/],
    ['h:6379:1', /"h:6379" is not a host name/],
    ['::1', /is not a host name/],
    ['redis://-h', /"-h" is not a host name/],
    ['redis://h;ls', /"h;ls" is not a host name/],
    ['redis://h%00', /"h%00" is not a host name/],
    ['redis://h#fragment', /is not a host name/],
    ['redis://[::1', /unterminated IPv6 address/],
    ['redis://[zz]:1', /"zz" is not an IPv6 address/],
    ['redis://[1.2.3.4]', /is not an IPv6 address/],
    ['redis://[::1]x', /expected ":port" after the IPv6 address/],
    ['redis://h/abc', /database "abc" is not a non-negative integer/],
    ['redis://h/-1', /database "-1"/],
    ['redis://h/999999', /database "999999"/],
    ['redis://h/0/1', /"\/0\/1" is not a database number/],
    ['redis://h?db=x', /database "x"/],
    ['redis://h?unknown=1', /unexpected option "unknown"/],
    ['redis://h?skip_verify=true', /skip_verify needs rediss:\/\/ \(TLS\)/],
    ['rediss://h?skip_verify=yes', /skip_verify must be true, false, 1 or 0/],
    ['redis://h?dial_timeout=soon', /dial_timeout "soon" is not a duration/],
    ['redis://u:p%zz@h', /password is not valid percent-encoding/],
    ['redis://u%zz:p@h', /user name is not valid percent-encoding/],
    ['unix://', /empty unix socket path/],
    ['unix:///', /empty unix socket path/],
    ['unix://relative.sock', /empty unix socket path/],
    ['unix://tmp/redis.sock', /takes no host/],
    ['unix:///tmp/a%zz', /socket path is not valid percent-encoding/],
    ['unix:///s?db=x', /database "x"/],
    ['unix:///s?skip_verify=true', /skip_verify needs rediss:\/\//],
  ])('%j', (address, why) => {
    const err = refusal(address);
    expect(err.message).toMatch(why);
    expect(err.param).toBe('address');
  });

  it('refuses what is not a string', () => {
    for (const v of [undefined, null, 6379, {}]) {
      expect(refusal(v as unknown as string).message).toMatch(/it is not a string/);
    }
  });

  it('never shows the password in a message, however the address is malformed', () => {
    const secret = 'Sup3rS3cret';
    for (const address of [
      `redis://u:${secret}@h:99999`,
      `redis://u:${secret}@[zz]`,
      `redis://u:${secret}@h/abc`,
      `redis://u:${secret}@h?nope=1`,
      `rediss://u:${secret}@h?skip_verify=maybe`,
      `unix://u:${secret}@host/tmp/x`,
      `redis://u:${secret}%zz@h`,
      `redis://u:${secret}\u0001@h`,
      // Unencoded '/' or '?' in the password: go-redis would cut the user info there.
      `redis://u:Sup3r/S3cret@h`,
      `redis://u:Sup3r?S3cret@h`,
      `redis://u:Sup3r?a=S3cret@h`,
    ]) {
      const msg = refusal(address).message;
      expect(msg, address).not.toMatch(/Sup3r|S3cret/);
      expect(msg, address).toContain('u:***@');
    }
    expect(refusal('redis://u:Sup3r/S3cret@h').message).toMatch(/percent-encode '\/', '\?' and '#'/);
  });

  it('answers hostile input quickly, with a bounded message', () => {
    for (const address of [
      'redis://' + ':'.repeat(200_000) + 'x',
      'redis://' + 'a:'.repeat(100_000) + '@'.repeat(1000) + '/x',
      'redis://h?' + 'a=1&'.repeat(50_000),
      'redis://' + '['.repeat(100_000),
      'unix://' + '/'.repeat(100_000) + '?db=' + '9'.repeat(100_000),
    ]) {
      const t0 = performance.now();
      const err = refusal(address);
      expect(performance.now() - t0).toBeLessThan(500);
      expect(err.message.length).toBeLessThan(1000);
    }
  });
});
