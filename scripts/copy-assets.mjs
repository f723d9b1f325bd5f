// Copies the files tsc does not emit (the ext_proc and health .proto files) from src/ into dist/,
// keeping their paths, so that dist/ runs on its own. Plain Node, so it works on every platform.
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src');
const dist = join(root, 'dist');
const ASSET = /\.proto$/;

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : ASSET.test(e.name) ? [join(dir, e.name)] : [],
  );
}

const files = walk(src);
if (files.length === 0) throw new Error(`no assets found under ${src}`);
for (const file of files) {
  const to = join(dist, relative(src, file));
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(file, to);
}
