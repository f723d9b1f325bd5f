import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  Http1Pool,
  UpstreamError,
  renderRequestHead,
  type UpstreamResponseHandler,
} from '../../../src/core/http1/client.js';
import type { Framing, ResponseHead } from '../../../src/core/http1/head.js';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()!();
});

async function listen(server: Server | NetServer): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(
    () =>
      new Promise<void>((r) => {
        server.close(() => r());
        if ('closeAllConnections' in server) server.closeAllConnections();
      }),
  );
  return (server.address() as AddressInfo).port;
}

interface Result {
  head: ResponseHead | null;
  framing: Framing | null;
  raw: string;
  data: string;
  error: UpstreamError | null;
}

function call(pool: Http1Pool, method = 'GET', path = '/', body: string | null = null): Promise<Result> {
  return new Promise((resolve) => {
    const r: Result = { head: null, framing: null, raw: '', data: '', error: null };
    const b = body === null ? null : Buffer.from(body);
    const handler: UpstreamResponseHandler = {
      onHead: (h, f) => {
        r.head = h;
        r.framing = f;
      },
      onRaw: (d) => (r.raw += d.toString('latin1')),
      onData: (d) => (r.data += d.toString('latin1')),
      onEnd: () => resolve(r),
      onError: (e) => {
        r.error = e;
        resolve(r);
      },
    };
    pool.request(
      method,
      renderRequestHead(method, path, `${pool.host}:${pool.port}`, '', b?.length ?? 0),
      b,
      handler,
    );
  });
}

describe('Http1Pool', () => {
  it('sends a request with its body and reads a content-length response, reusing the connection', async () => {
    let connections = 0;
    const server = createHttpServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => res.end(`${req.method} ${req.url} ${body}`));
    });
    server.on('connection', () => connections++);
    const port = await listen(server);
    const pool = new Http1Pool('127.0.0.1', port);
    for (let i = 0; i < 5; i++) {
      const r = await call(pool, 'POST', `/x${i}`, `body${i}`);
      expect(r.head!.status).toBe(200);
      expect(r.data).toBe(`POST /x${i} body${i}`);
      expect(r.raw).toBe(r.data);
    }
    expect(connections).toBe(1);
    pool.destroy();
  });

  it('hands over chunked bodies raw for relaying and decoded for reading', async () => {
    const server = createHttpServer((_req, res) => {
      res.write('data: a\n\n');
      setTimeout(() => res.end('data: b\n\n'), 5);
    });
    const pool = new Http1Pool('127.0.0.1', await listen(server));
    const r = await call(pool);
    expect(r.framing).toEqual({ kind: 'chunked' });
    expect(r.data).toBe('data: a\n\ndata: b\n\n');
    expect(r.raw).toBe('9\r\ndata: a\n\n\r\n9\r\ndata: b\n\n\r\n0\r\n\r\n');
    pool.destroy();
  });

  it('skips 100 Continue and reads close-delimited bodies', async () => {
    const server = createNetServer((s) => {
      s.once('data', () => s.end('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nx: 1\r\n\r\nuntil close'));
    });
    const pool = new Http1Pool('127.0.0.1', await listen(server));
    const r = await call(pool);
    expect(r.head!.status).toBe(200);
    expect(r.framing).toEqual({ kind: 'close' });
    expect(r.data).toBe('until close');
    pool.destroy();
  });

  it('retries once, on a fresh connection, when a reused one was closed by the server', async () => {
    const sockets: import('node:net').Socket[] = [];
    const server = createHttpServer((_req, res) => res.end('ok'));
    server.on('connection', (s) => sockets.push(s));
    server.keepAliveTimeout = 60_000;
    const pool = new Http1Pool('127.0.0.1', await listen(server));
    expect((await call(pool)).data).toBe('ok');
    // The server drops the idle keep-alive connection behind the pool's back.
    for (const s of sockets) s.destroy();
    await new Promise((r) => setTimeout(r, 20));
    const again = await call(pool);
    expect(again.error).toBeNull();
    expect(again.data).toBe('ok');
    pool.destroy();
  });

  it('reports a refused connection as a connect failure', async () => {
    const probe = createNetServer();
    const port = await listen(probe);
    await closers.pop()!();
    const pool = new Http1Pool('127.0.0.1', port);
    const r = await call(pool);
    expect(r.error).toBeInstanceOf(UpstreamError);
    expect(r.error!.connectFailed).toBe(true);
    expect(r.error!.beforeResponse).toBe(true);
    expect(r.error!.code).toBe('ECONNREFUSED');
  });

  it('reports a response cut short, and a malformed one, without reusing the connection', async () => {
    const cut = createNetServer((s) =>
      s.once('data', () => s.end('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc')),
    );
    const pool = new Http1Pool('127.0.0.1', await listen(cut));
    const r = await call(pool);
    expect(r.head!.status).toBe(200);
    expect(r.error!.beforeResponse).toBe(false);
    pool.destroy();

    const bad = createNetServer((s) => s.once('data', () => s.end('NOT HTTP AT ALL\r\n\r\n')));
    const pool2 = new Http1Pool('127.0.0.1', await listen(bad));
    const r2 = await call(pool2);
    expect(r2.error!.code).toBe('UPSTREAM_PROTOCOL');
    pool2.destroy();
  });

  it('times out a connection that never completes', async () => {
    // A non-routable address (TEST-NET-1): the SYN goes nowhere.
    const pool = new Http1Pool('192.0.2.1', 9, { connectTimeoutMs: 100 });
    const r = await call(pool);
    expect(r.error!.connectFailed).toBe(true);
    pool.destroy();
  });

  it('stops delivering after abort', async () => {
    const server = createHttpServer((_req, res) => {
      res.write('x');
    });
    const pool = new Http1Pool('127.0.0.1', await listen(server));
    let bytes = 0;
    let ended = false;
    await new Promise<void>((resolve) => {
      const c = pool.request('GET', renderRequestHead('GET', '/', 'h', '', 0), null, {
        onHead: () => undefined,
        onRaw: () => {
          bytes++;
          c.abort();
          setTimeout(resolve, 30);
        },
        onData: () => undefined,
        onEnd: () => (ended = true),
        onError: () => (ended = true),
      });
    });
    expect(bytes).toBe(1);
    expect(ended).toBe(false);
    pool.destroy();
  });
});
