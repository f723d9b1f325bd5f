/**
 * Endpoints given on the command line: repeated `--endpoint` values such as
 * `name=pod-a,address=10.0.0.1,port=8000,labels=llm-d.ai/role=decode;zone=a` (also `namespace=`,
 * `rank=`), or the shorthand `10.0.0.1:8000` / `[::1]:8000`. `StaticDiscovery` delivers such a list.
 */
import { isIP } from 'node:net';
import { ConfigError } from '../../../core/errors.js';
import type { DiscoverySink, EndpointDiscovery, EndpointSpec } from '../../framework/datalayer.js';
import type { TypedName } from '../../framework/plugin.js';
import { endpointId } from '../datastore.js';
import { isValidEndpointName, labelKeyProblem } from './validate.js';

const FLAG = '--endpoint';
const KEYS = new Set(['name', 'namespace', 'address', 'port', 'rank', 'labels']);

/** A name Kubernetes would accept, made from `address:port`: `10.0.0.1:8000` → `10-0-0-1-8000`. */
export function defaultEndpointName(address: string, port: number): string {
  const base = `${address}-${port}`
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
  return base === '' ? `endpoint-${port}` : base;
}

export function parseEndpointFlag(value: string): EndpointSpec {
  const bad = (part: string, why: string): ConfigError =>
    new ConfigError(`${FLAG} ${JSON.stringify(value)}: ${JSON.stringify(part)} ${why}`, FLAG);
  const text = value.trim();
  if (text === '') throw new ConfigError(`${FLAG}: empty value`, FLAG);

  if (!text.includes('=')) return shorthand(text, bad);

  const fields = new Map<string, string>();
  for (const raw of text.split(',')) {
    const part = raw.trim();
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw bad(part, 'is not key=value');
    const key = part.slice(0, eq).trim();
    if (!KEYS.has(key)) throw bad(part, `has an unknown key (expected one of ${[...KEYS].join(', ')})`);
    if (fields.has(key)) throw bad(part, `repeats ${key}`);
    fields.set(key, part.slice(eq + 1).trim());
  }

  const addressText = fields.get('address');
  if (addressText === undefined)
    throw new ConfigError(`${FLAG} ${JSON.stringify(value)}: address is required`, FLAG);
  const address = stripBrackets(addressText);
  if (isIP(address) === 0) throw bad(`address=${addressText}`, 'is not an IPv4 or IPv6 address');

  const portText = fields.get('port');
  if (portText === undefined)
    throw new ConfigError(`${FLAG} ${JSON.stringify(value)}: port is required`, FLAG);
  const port = parsePort(portText);
  if (port === null) throw bad(`port=${portText}`, 'is not a port in 1..65535');

  let rank = 0;
  const rankText = fields.get('rank');
  if (rankText !== undefined) {
    if (!/^\d{1,6}$/.test(rankText)) throw bad(`rank=${rankText}`, 'is not a non-negative integer');
    rank = Number(rankText);
  }

  const name = fields.get('name') ?? defaultEndpointName(address, port);
  if (!isValidEndpointName(name)) throw bad(`name=${name}`, "must be non-empty, without '/' or spaces");
  const namespace = fields.get('namespace') ?? 'default';
  if (!isValidEndpointName(namespace))
    throw bad(`namespace=${namespace}`, "must be non-empty, without '/' or spaces");

  const labels: Record<string, string> = {};
  const labelText = fields.get('labels');
  if (labelText !== undefined) {
    for (const raw of labelText.split(';')) {
      const pair = raw.trim();
      if (pair === '') continue;
      const eq = pair.indexOf('=');
      if (eq < 0) throw bad(`labels=…${pair}`, 'is not k=v');
      const k = pair.slice(0, eq).trim();
      const problem = labelKeyProblem(k);
      if (problem !== null) throw bad(`labels=…${pair}`, problem);
      labels[k] = pair.slice(eq + 1).trim();
    }
  }
  return { name, namespace, address, port, labels, rank };
}

/** Every `--endpoint` value; two values naming the same endpoint id are an error. */
export function parseEndpointFlags(values: readonly string[]): EndpointSpec[] {
  const seen = new Map<string, string>();
  const out: EndpointSpec[] = [];
  for (const v of values) {
    const spec = parseEndpointFlag(v);
    const id = endpointId(spec.namespace, spec.name, spec.rank);
    const prev = seen.get(id);
    if (prev !== undefined) {
      throw new ConfigError(`${FLAG}: ${JSON.stringify(prev)} and ${JSON.stringify(v)} are both ${id}`, FLAG);
    }
    seen.set(id, v);
    out.push(spec);
  }
  return out;
}

/** Discovery over a fixed list, delivered once. */
export class StaticDiscovery implements EndpointDiscovery {
  readonly typedName: TypedName;
  private readonly specs: readonly EndpointSpec[];

  constructor(specs: readonly EndpointSpec[], name = 'static-discovery') {
    this.specs = Object.freeze([...specs]);
    this.typedName = { type: 'static-discovery', name };
  }

  start(sink: DiscoverySink): Promise<void> {
    sink.replace(this.specs);
    return Promise.resolve();
  }

  stop(): void {}
}

function shorthand(text: string, bad: (part: string, why: string) => ConfigError): EndpointSpec {
  // `[v6]:port` or `v4:port`; a bare v6 address has no port to split off.
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:[\]]+):(\d+)$/.exec(text);
  if (m === null) throw bad(text, 'is neither key=value pairs nor address:port');
  const address = m[1]!;
  if (isIP(address) === 0) throw bad(text, 'does not start with an IPv4 or IPv6 address');
  const port = parsePort(m[2]!);
  if (port === null) throw bad(text, 'does not end with a port in 1..65535');
  return {
    name: defaultEndpointName(address, port),
    namespace: 'default',
    address,
    port,
    labels: {},
    rank: 0,
  };
}

function stripBrackets(address: string): string {
  return address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
}

function parsePort(text: string): number | null {
  if (!/^\d{1,5}$/.test(text)) return null;
  const n = Number(text);
  return n >= 1 && n <= 65535 ? n : null;
}
