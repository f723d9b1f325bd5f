/** The package version, read once from package.json (two levels up from both `src/core` and `dist/core`). */
import { createRequire } from 'node:module';

let cached: string | null = null;

export function packageVersion(): string {
  if (cached !== null) return cached;
  const require = createRequire(import.meta.url);
  const pkg = require('../../package.json') as { version?: unknown };
  cached = typeof pkg.version === 'string' ? pkg.version : '0.0.0';
  return cached;
}
