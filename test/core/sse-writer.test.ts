import { createServer, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { SseWriter } from '../../src/core/sse-writer.js';

const HEADERS = { 'content-type': 'text/event-stream' };

let server: Server | null = null;
afterEach(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = null;
});

/** A server whose every response is three SSE events written through SseWriter. */
async function listen(handler: (res: ServerResponse, sse: SseWriter) => void): Promise<number> {
  server = createServer((req, res) => {
    req.resume();
    req.on('end', () => handler(res, new SseWriter(res)));
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return (server!.address() as AddressInfo).port;
}

function threeEvents(_res: ServerResponse, sse: SseWriter): void {
  sse.begin(HEADERS);
  sse.write('data: {"a":1}\n\n');
  sse.writeParts(Buffer.from('data: {"c":'), '"ü"', Buffer.from('}\n\n'));
  setTimeout(() => {
    sse.write('data: {"b":"é"}\n\n');
    sse.end('data: [DONE]\n\n');
  }, 5);
}

/** Sends raw bytes and collects everything the server answers until it closes. */
function raw(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = connect(port, '127.0.0.1', () => s.write(request));
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    s.on('error', reject);
  });
}

/** Decodes a chunked body, checking every chunk size against its bytes. */
function dechunk(body: string): string {
  const buf = Buffer.from(body, 'utf8');
  let out = '';
  let i = 0;
  for (;;) {
    const eol = buf.indexOf('\r\n', i);
    const size = parseInt(buf.subarray(i, eol).toString('latin1'), 16);
    if (size === 0) return out;
    out += buf.subarray(eol + 2, eol + 2 + size).toString('utf8');
    expect(buf.subarray(eol + 2 + size, eol + 4 + size).toString('latin1')).toBe('\r\n');
    i = eol + 4 + size;
  }
}

describe('SseWriter', () => {
  it('frames every event as one valid HTTP/1.1 chunk, multi-byte text included', async () => {
    const port = await listen(threeEvents);
    const text = await raw(port, 'GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    const [head, body] = text.split('\r\n\r\n', 2) as [string, string];
    expect(head).toMatch(/transfer-encoding: chunked/i);
    expect(dechunk(text.slice(head.length + 4))).toBe(
      'data: {"a":1}\n\ndata: {"c":"ü"}\n\ndata: {"b":"é"}\n\ndata: [DONE]\n\n',
    );
    expect(body.length).toBeGreaterThan(0);
  });

  it('frames events from parts in the shared buffer, each as one valid chunk', async () => {
    const prefix = Buffer.from('data: {"text":');
    const suffix = Buffer.from('}\n\n');
    const texts = ['a', 'é—✓', '"quoted"\n', '🌊'.repeat(100), 'x'.repeat(5000)];
    const port = await listen((_res, sse) => {
      sse.begin(HEADERS);
      for (const t of texts) sse.writeParts(prefix, JSON.stringify(t), suffix);
      sse.end('data: [DONE]\n\n');
    });
    const text = await raw(port, 'GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    const body = dechunk(text.slice(text.indexOf('\r\n\r\n') + 4));
    expect(body).toBe(
      texts.map((t) => `data: {"text":${JSON.stringify(t)}}\n\n`).join('') + 'data: [DONE]\n\n',
    );
  });

  it('keeps the bytes of a write the kernel did not take at once, and takes the string path when too big', async () => {
    // The client reads nothing until the server is done: the socket buffers fill, later writes are
    // queued by Node, and every queued event must still hold its own bytes.
    const prefix = Buffer.from('data: {"n":');
    const suffix = Buffer.from('}\n\n');
    const events = 20_000;
    const big = 'y'.repeat(70_000);
    const port = await listen((_res, sse) => {
      sse.begin(HEADERS);
      for (let i = 0; i < events; i++)
        sse.writeParts(prefix, JSON.stringify(String(i).padStart(400, '0')), suffix);
      sse.writeParts(prefix, JSON.stringify(big), suffix);
      sse.end('data: [DONE]\n\n');
    });
    const text = await new Promise<string>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const s = connect(port, '127.0.0.1', () => {
        s.write('GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
        s.pause();
        setTimeout(() => s.resume(), 200);
      });
      s.on('data', (c: Buffer) => chunks.push(c));
      s.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      s.on('error', reject);
    });
    const body = dechunk(text.slice(text.indexOf('\r\n\r\n') + 4));
    let want = '';
    for (let i = 0; i < events; i++)
      want += `data: {"n":${JSON.stringify(String(i).padStart(400, '0'))}}\n\n`;
    want += `data: {"n":${JSON.stringify(big)}}\n\n` + 'data: [DONE]\n\n';
    expect(body.length).toBe(want.length);
    expect(body).toBe(want);
  });

  it('writes an unframed body to an HTTP/1.0 client', async () => {
    const port = await listen(threeEvents);
    const text = await raw(port, 'GET / HTTP/1.0\r\n\r\n');
    const body = text.slice(text.indexOf('\r\n\r\n') + 4);
    expect(text).not.toMatch(/transfer-encoding/i);
    expect(body).toBe('data: {"a":1}\n\ndata: {"c":"ü"}\n\ndata: {"b":"é"}\n\ndata: [DONE]\n\n');
  });

  it('keeps pipelined responses on one connection in order', async () => {
    let n = 0;
    const port = await listen((res, sse) => {
      const k = ++n;
      sse.begin(HEADERS);
      // The second response writes while the first is still open: it must wait its turn.
      setTimeout(() => sse.write(`data: ${k}a\n\n`), k === 1 ? 20 : 1);
      setTimeout(() => sse.end(`data: ${k}b\n\n`), k === 1 ? 30 : 2);
      void res;
    });
    const req = 'GET / HTTP/1.1\r\nhost: x\r\n\r\n';
    const text = await raw(port, req + req.replace('\r\n\r\n', '\r\nconnection: close\r\n\r\n'));
    const parts = text.split(/HTTP\/1\.1 200 OK\r\n/).filter((p) => p.length > 0);
    expect(parts).toHaveLength(2);
    const bodies = parts.map((p) => dechunk(p.slice(p.indexOf('\r\n\r\n') + 4)));
    expect(bodies).toEqual(['data: 1a\n\ndata: 1b\n\n', 'data: 2a\n\ndata: 2b\n\n']);
  });

  it('ignores writes after the client is gone', async () => {
    let wrote: (() => void) | null = null;
    const port = await listen((res, sse) => {
      sse.begin(HEADERS);
      res.on('close', () => {
        sse.write('data: late\n\n');
        sse.end('data: [DONE]\n\n');
        wrote?.();
      });
    });
    const done = new Promise<void>((r) => (wrote = r));
    const s = connect(port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n'));
    s.once('data', () => s.destroy());
    await done;
  });
});
