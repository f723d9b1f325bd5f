import { connect } from 'node:net';
import { request as undiciRequest } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { Http1Server, type Http1Handler } from '../../../src/core/http1/server.js';
import { waitFor } from '../../helpers/wait.js';

const servers: Http1Server[] = [];
afterEach(async () => {
  while (servers.length > 0) await servers.pop()!.close();
});

async function serve(
  handler: Http1Handler,
  opts: ConstructorParameters<typeof Http1Server>[1] = {},
): Promise<number> {
  const s = new Http1Server(handler, opts);
  servers.push(s);
  return s.listen(0, '127.0.0.1');
}

/** Writes raw bytes, collects the answer until the server closes or `until` matches. */
function raw(port: number, bytes: string | Buffer, until?: (text: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const s = connect(port, '127.0.0.1', () => s.write(bytes));
    s.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (until?.(text)) {
        s.destroy();
        resolve(text);
      }
    });
    s.on('close', () => resolve(text));
    s.on('error', reject);
  });
}

const echo: Http1Handler = (req, res) =>
  res.send(200, 'content-type: text/plain\r\n', `${req.method} ${req.target} ${req.body.toString()}`);

describe('Http1Server', () => {
  it('serves a real HTTP client, with keep-alive across requests', async () => {
    const port = await serve(echo);
    for (let i = 0; i < 3; i++) {
      const res = await undiciRequest(`http://127.0.0.1:${port}/p?i=${i}`, { method: 'POST', body: `b${i}` });
      expect(res.statusCode).toBe(200);
      expect(await res.body.text()).toBe(`POST /p?i=${i} b${i}`);
    }
  });

  it('answers pipelined requests in order on one connection', async () => {
    const port = await serve((req, res) => {
      // The first answers late: the second must still come after it.
      const delay = req.target === '/slow' ? 30 : 0;
      setTimeout(() => res.send(200, '', req.target), delay);
    });
    const text = await raw(
      port,
      'GET /slow HTTP/1.1\r\nhost: x\r\n\r\nGET /fast HTTP/1.1\r\nhost: x\r\n\r\n',
      (t) => t.includes('/fast'),
    );
    expect(text.indexOf('/slow')).toBeLessThan(text.indexOf('/fast'));
  });

  it('reads chunked request bodies and answers Expect: 100-continue', async () => {
    const port = await serve(echo);
    const chunked = await raw(
      port,
      'POST /c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n',
      (t) => t.includes('abcde'),
    );
    expect(chunked).toContain('POST /c abcde');
    const cont = await raw(
      port,
      'POST /e HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\nok',
      (t) => t.includes('/e ok'),
    );
    expect(cont.startsWith('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK')).toBe(true);
  });

  it('streams a chunked response that a real client reads event by event', async () => {
    const port = await serve((_req, res) => {
      res.writeHead(200, 'content-type: text/event-stream\r\n', 'chunked');
      res.flushHead();
      res.write('data: 1\n\n');
      setTimeout(() => {
        res.write(Buffer.from('data: 2\n\n'));
        res.end('data: [DONE]\n\n');
      }, 10);
    });
    const res = await undiciRequest(`http://127.0.0.1:${port}/s`);
    expect(res.headers['transfer-encoding']).toBe('chunked');
    expect(await res.body.text()).toBe('data: 1\n\ndata: 2\n\ndata: [DONE]\n\n');
  });

  it('relays already-framed chunks untouched', async () => {
    const port = await serve((_req, res) => {
      res.writeHead(200, '', 'raw-chunked');
      res.write(Buffer.from('3\r\nabc\r\n'));
      res.write(Buffer.from('0\r\n\r\n'));
      res.end();
    });
    expect(await (await undiciRequest(`http://127.0.0.1:${port}/`)).body.text()).toBe('abc');
  });

  it('ends an HTTP/1.0 stream by closing the connection', async () => {
    const port = await serve((_req, res) => {
      res.writeHead(200, '', 'chunked');
      res.write('part1 ');
      res.end('part2');
    });
    const text = await raw(port, 'GET / HTTP/1.0\r\n\r\n');
    expect(text).toContain('connection: close');
    expect(text).not.toContain('transfer-encoding');
    expect(text.endsWith('\r\n\r\npart1 part2')).toBe(true);
  });

  it.each([
    ['garbage', 'hello there\r\n\r\n', '400'],
    [
      'smuggling framing',
      'POST / HTTP/1.1\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n',
      '400',
    ],
    ['an unsupported version', 'GET / HTTP/2.0\r\n\r\n', '505'],
    ['an unknown transfer coding', 'POST / HTTP/1.1\r\ntransfer-encoding: br\r\n\r\n', '501'],
    ['an unknown expectation', 'POST / HTTP/1.1\r\nexpect: magic\r\ncontent-length: 1\r\n\r\nx', '417'],
  ])('answers %s with its status and closes', async (_what, bytes, status) => {
    const port = await serve(echo);
    const text = await raw(port, bytes);
    expect(text.startsWith(`HTTP/1.1 ${status} `)).toBe(true);
    expect(text).toContain('connection: close');
  });

  it('refuses an oversized body (413) and an oversized head (431)', async () => {
    const port = await serve(echo, { maxBodyBytes: 10, maxHeadBytes: 1024 });
    expect(await raw(port, 'POST / HTTP/1.1\r\ncontent-length: 11\r\n\r\n')).toMatch(/^HTTP\/1.1 413 /);
    expect(
      await raw(
        port,
        'POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\nabcdef\r\n0\r\n\r\n',
      ),
    ).toMatch(/^HTTP\/1.1 413 /);
    expect(await raw(port, 'GET / HTTP/1.1\r\nx: ' + 'a'.repeat(2000) + '\r\n\r\n')).toMatch(
      /^HTTP\/1.1 431 /,
    );
  });

  it('tells the handler when the client goes away mid-response', async () => {
    let closed = false;
    const port = await serve((_req, res) => {
      res.writeHead(200, '', 'chunked');
      res.write('start');
      res.onClose(() => (closed = true));
    });
    await raw(port, 'GET / HTTP/1.1\r\nhost: x\r\n\r\n', (t) => t.includes('start'));
    await waitFor(() => closed, 2000, 'the close notification');
  });

  it('answers 500 when the handler throws, and keeps serving', async () => {
    const port = await serve((req, res) => {
      if (req.target === '/boom') throw new Error('bug');
      res.send(200, '', 'fine');
    });
    expect(await raw(port, 'GET /boom HTTP/1.1\r\nhost: x\r\n\r\n', (t) => t.includes('\r\n\r\n'))).toMatch(
      /^HTTP\/1.1 500 /,
    );
    expect(await (await undiciRequest(`http://127.0.0.1:${port}/ok`)).body.text()).toBe('fine');
  });

  it('closes idle keep-alive connections after the idle timeout', async () => {
    const port = await serve(echo, { idleTimeoutMs: 50 });
    const t0 = performance.now();
    await raw(port, 'GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    expect(performance.now() - t0).toBeLessThan(5000);
  });
});
