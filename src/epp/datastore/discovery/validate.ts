/**
 * Checks shared by the discovery sources. Endpoint labels stand in for pod labels, so their keys follow
 * Kubernetes' syntax: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
 */

const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Null when `key` is a valid label key, otherwise why it is not. */
export function labelKeyProblem(key: string): string | null {
  if (key === '') return 'has an empty label key';
  const slash = key.lastIndexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : null;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== null && (prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) {
    return `has label key ${JSON.stringify(key)} whose prefix is not a DNS subdomain`;
  }
  if (!LABEL_NAME.test(name)) {
    return `has label key ${JSON.stringify(key)} that is not a valid label name`;
  }
  return null;
}

/** Endpoint names and namespaces end up in the id `ns/name-rank-i`, so neither may hold `/`. */
export function isValidEndpointName(s: string): boolean {
  return s !== '' && s.length <= 253 && !/[/\s]/.test(s);
}
