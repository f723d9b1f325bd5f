/**
 * Which prefillers a request may name, and what a valid name is. `x-prefiller-host-port` comes from
 * the EPP, but anyone who can reach the sidecar can set it; with SSRF protection on, only hosts in the
 * allowlist are contacted (any port on them, as upstream), and whatever the header holds — schemes,
 * paths, userinfo, stray brackets — is either an allowed host or refused with 403 before a byte is sent.
 * The allowlist is the static `--allowed-prefill-hosts` list, or with `--inference-pool` the pool's
 * pods (pool-allowlist.ts).
 */
import { isIP } from 'node:net';
import type { PrefillTarget } from './connectors/connector.js';

export interface PrefillAllowlist {
  /** `host` is a host name or an IP address (IPv6 without brackets), as `hostOfTarget` returns it. */
  allows(host: string): boolean;
  /** How many entries it holds, for the start-up log. */
  readonly size: number;
}

/** A fixed list: IP addresses (compared in canonical form) and host names (case-insensitive). */
export class StaticAllowlist implements PrefillAllowlist {
  private readonly hosts: ReadonlySet<string>;

  constructor(entries: readonly string[]) {
    const set = new Set<string>();
    for (const e of entries) {
      const h = canonicalHost(stripBrackets(e.trim()));
      if (h !== '') set.add(h);
    }
    this.hosts = set;
  }

  get size(): number {
    return this.hosts.size;
  }

  allows(host: string): boolean {
    return this.hosts.has(canonicalHost(host));
  }
}

/** Longest header value looked at; a longer one is refused outright rather than split. */
export const MAX_PREFILLER_HEADER = 8 * 1024;

/** Hosts as DNS allows them (RFC 1123 labels), or IP literals; nothing that could carry a path or scheme. */
const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/**
 * The entries of `x-prefiller-host-port`: split on commas (several header lines arrive joined by
 * commas), trimmed, empty ones dropped. Null when the value is too long to be honest.
 */
export function prefillerCandidates(value: string): string[] | null {
  if (value.length > MAX_PREFILLER_HEADER) return null;
  const out: string[] = [];
  for (const part of value.split(',')) {
    const t = part.trim();
    if (t !== '') out.push(t);
  }
  return out;
}

/**
 * The host part the allowlist is asked about, as Go's `net.SplitHostPort` finds it: `host:port` or
 * `[v6]:port`; a value it cannot split (no port, a scheme's extra colons) is used whole, so such a
 * value can only pass if the allowlist holds that exact string — which a sane one does not.
 */
export function hostOfTarget(value: string): string {
  const split = splitHostPort(value);
  return split === null ? value : split.host;
}

/** Go's `net.SplitHostPort`, without its port validation (that is `parseTarget`'s job). */
export function splitHostPort(value: string): { host: string; port: string } | null {
  if (value.startsWith('[')) {
    const close = value.indexOf(']');
    if (close < 0 || value[close + 1] !== ':') return null;
    const host = value.slice(1, close);
    const port = value.slice(close + 2);
    if (host.includes('[') || host.includes(']') || port.includes('[') || port.includes(']')) return null;
    return { host, port };
  }
  const colon = value.lastIndexOf(':');
  if (colon < 0 || value.indexOf(':') !== colon) return null;
  const host = value.slice(0, colon);
  const port = value.slice(colon + 1);
  if (host.includes('[') || host.includes(']') || port.includes('[') || port.includes(']')) return null;
  return { host, port };
}

/** A prefill target the sidecar can connect to, or null: `host:port` with a real host and port 1–65535. */
export function parseTarget(value: string): PrefillTarget | null {
  const split = splitHostPort(value);
  if (split === null) return null;
  const { host, port: portText } = split;
  if (!/^\d{1,5}$/.test(portText)) return null;
  const port = Number(portText);
  if (port < 1 || port > 65535) return null;
  const ipv = isIP(host);
  // Brackets hold an IPv6 address and nothing else; an IPv6 address needs them.
  if (value.startsWith('[') !== (ipv === 6)) return null;
  if (ipv === 6) {
    const canon = canonicalHost(host);
    return { hostPort: `[${canon}]:${port}`, host: canon, port };
  }
  if (ipv === 4) return { hostPort: `${host}:${port}`, host, port };
  // A name may not contain anything but labels: no `@`, `/`, `%`, spaces or brackets.
  if (!HOSTNAME.test(host) || NUMERIC_LABEL.test(lastLabel(host))) return null;
  const name = host.toLowerCase();
  return { hostPort: `${name}:${port}`, host: name, port };
}

/**
 * A last label of digits or hex is no host name: resolvers read `2130706433` or `0x7f.1` as IPv4
 * (inet_aton), which would let a target dodge the address checks above.
 */
const NUMERIC_LABEL = /^(?:\d+|0x[0-9a-f]*)$/i;

function lastLabel(host: string): string {
  const h = host.endsWith('.') ? host.slice(0, -1) : host;
  return h.slice(h.lastIndexOf('.') + 1);
}

function stripBrackets(h: string): string {
  return h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h;
}

/** IPv6 in its compressed lower-case form (`0:0::1` and `::1` are one address); names lower-cased. */
export function canonicalHost(host: string): string {
  if (isIP(host) === 6) {
    try {
      return stripBrackets(new URL(`http://[${host}]/`).hostname);
    } catch {
      return host.toLowerCase();
    }
  }
  return host.toLowerCase();
}
