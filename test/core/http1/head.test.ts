import { describe, expect, it } from 'vitest';
import { Rng } from '../../../src/core/rng.js';
import {
  HeadError,
  keepAlive,
  parseRequestHead,
  parseResponseHead,
  requestFraming,
  responseFraming,
} from '../../../src/core/http1/head.js';

const req = (...lines: string[]) => parseRequestHead(lines.join('\r\n'));

describe('HTTP/1.1 request heads', () => {
  it('parses the request line and lower-cases header names, trimming values', () => {
    const h = req(
      'POST /v1/completions?x=1 HTTP/1.1',
      'Host: a',
      'Content-Type:  application/json ',
      'X-A: 1',
      'x-a: 2',
    );
    expect(h.method).toBe('POST');
    expect(h.target).toBe('/v1/completions?x=1');
    expect(h.version).toBe(11);
    expect({ ...h.headers }).toEqual({ host: 'a', 'content-type': 'application/json', 'x-a': '1, 2' });
    expect(req('GET / HTTP/1.0').version).toBe(10);
  });

  it.each([
    ['a malformed request line', ['GET /x']],
    ['an extra space', ['GET  /x HTTP/1.1']],
    ['a lower-case method', ['get / HTTP/1.1']],
    ['an unknown version', ['GET / HTTP/2.0']],
    ['obsolete folding', ['GET / HTTP/1.1', 'a: 1', ' continued']],
    ['space before the colon', ['GET / HTTP/1.1', 'a : 1']],
    ['a header without a colon', ['GET / HTTP/1.1', 'nocolon']],
    ['a bare LF', ['GET / HTTP/1.1', 'a: 1\nb: 2']],
    ['a bare CR', ['GET / HTTP/1.1', 'a: 1\rb: 2']],
    ['a NUL in a value', ['GET / HTTP/1.1', 'a: x\0y']],
    ['conflicting content-length', ['POST / HTTP/1.1', 'content-length: 1', 'content-length: 2']],
  ])('rejects %s', (_what, lines) => {
    expect(() => req(...lines)).toThrow(HeadError);
  });

  it('answers 505 to other HTTP versions and 431 to too many fields', () => {
    try {
      req('GET / HTTP/3.0');
    } catch (e) {
      expect((e as HeadError).status).toBe(505);
    }
    const many = Array.from({ length: 101 }, (_, i) => `h${i}: v`);
    try {
      req('GET / HTTP/1.1', ...many);
      expect.unreachable();
    } catch (e) {
      expect((e as HeadError).status).toBe(431);
    }
  });

  it('decides the body framing, refusing what would allow smuggling', () => {
    const f = (h: Record<string, string>) => requestFraming(h);
    expect(f({})).toEqual({ kind: 'none' });
    expect(f({ 'content-length': '12' })).toEqual({ kind: 'length', length: 12 });
    expect(f({ 'content-length': '0' })).toEqual({ kind: 'none' });
    expect(f({ 'transfer-encoding': 'chunked' })).toEqual({ kind: 'chunked' });
    expect(f({ 'transfer-encoding': 'gzip, chunked' })).toEqual({ kind: 'chunked' });
    expect(() => f({ 'transfer-encoding': 'chunked', 'content-length': '3' })).toThrow(HeadError);
    expect(() => f({ 'transfer-encoding': 'gzip' })).toThrow(HeadError);
    expect(() => f({ 'transfer-encoding': 'chunked, chunked' })).toThrow(HeadError);
    expect(() => f({ 'content-length': '-1' })).toThrow(HeadError);
    expect(() => f({ 'content-length': '1e3' })).toThrow(HeadError);
  });

  it('keeps HTTP/1.1 connections alive unless told to close, HTTP/1.0 ones only when asked', () => {
    expect(keepAlive(11, {})).toBe(true);
    expect(keepAlive(11, { connection: 'Close' })).toBe(false);
    expect(keepAlive(10, {})).toBe(false);
    expect(keepAlive(10, { connection: 'keep-alive' })).toBe(true);
  });
});

describe('HTTP/1.1 response heads', () => {
  it('parses the status line, keeps set-cookie apart', () => {
    const h = parseResponseHead('HTTP/1.1 200 OK\r\nContent-Length: 3\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2');
    expect(h.status).toBe(200);
    expect(h.reason).toBe('OK');
    expect(h.setCookie).toEqual(['a=1', 'b=2']);
    expect(parseResponseHead('HTTP/1.1 204\r\nx: y').status).toBe(204);
    for (const bad of ['HTTP/1.1 2000 OK', 'HTTP/1.1 abc', 'HTTX/1.1 200 OK', 'HTTP/1.1 200OK']) {
      expect(() => parseResponseHead(bad)).toThrow(HeadError);
    }
  });

  it('decides the response framing from method, status and headers', () => {
    expect(responseFraming('HEAD', 200, { 'content-length': '10' })).toEqual({ kind: 'none' });
    expect(responseFraming('GET', 204, {})).toEqual({ kind: 'none' });
    expect(responseFraming('GET', 304, { 'content-length': '10' })).toEqual({ kind: 'none' });
    expect(responseFraming('GET', 200, { 'content-length': '10' })).toEqual({ kind: 'length', length: 10 });
    expect(responseFraming('GET', 200, { 'transfer-encoding': 'chunked' })).toEqual({ kind: 'chunked' });
    expect(responseFraming('GET', 200, { 'transfer-encoding': 'gzip' })).toEqual({ kind: 'close' });
    expect(responseFraming('GET', 200, {})).toEqual({ kind: 'close' });
  });
});

describe('head parsing under random input', () => {
  it('throws nothing but HeadError', () => {
    const rng = new Rng(5);
    const alphabet = 'GET POST / HTTP/1.1\r\n:abc \t\0\n\r-content-length 0123456789';
    for (let i = 0; i < 5000; i++) {
      let s = '';
      const n = rng.int(0, 80);
      for (let j = 0; j < n; j++) s += alphabet[rng.int(0, alphabet.length - 1)];
      for (const parse of [parseRequestHead, parseResponseHead]) {
        try {
          const h = parse(s);
          if ('method' in h) requestFraming(h.headers);
        } catch (e) {
          expect(e).toBeInstanceOf(HeadError);
        }
      }
    }
  });
});
