/**
 * A baseline for `bench/gateway.ts`: the least a `node:http` server relaying through undici can do —
 * read the body, parse it, forward it round-robin, relay the answer — with no routing behind it. It
 * shows what Node's standard HTTP stack costs on the same machine in the same run.
 *
 * Run by the bench as a child process: `tsx bench/node-relay.ts <host:port>...`; prints its URL.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool, type Dispatcher } from 'undici';

const pools = process.argv.slice(2).map((u) => new Pool(`http://${u}`, { connections: null, pipelining: 1 }));
let next = 0;

const server = createServer({ noDelay: true, keepAliveTimeout: 65_000 }, (req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    JSON.parse(body.toString('utf8'));
    const pool = pools[next++ % pools.length]!;
    pool.dispatch(
      {
        path: req.url ?? '/',
        method: (req.method ?? 'POST') as Dispatcher.HttpMethod,
        headers: ['content-type', 'application/json'],
        body,
      },
      {
        onRequestStart() {},
        onResponseStart(_c, status, headers) {
          const out: Record<string, string> = {};
          const ct = headers['content-type'];
          const cl = headers['content-length'];
          if (typeof ct === 'string') out['content-type'] = ct;
          if (typeof cl === 'string') out['content-length'] = cl;
          res.writeHead(status, out);
        },
        onResponseData(_c, chunk) {
          res.write(chunk);
        },
        onResponseEnd() {
          res.end();
        },
        onResponseError() {
          res.destroy();
        },
      },
    );
  });
});
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  console.log(JSON.stringify({ msg: 'relay is ready', url: `http://127.0.0.1:${port}` }));
});
