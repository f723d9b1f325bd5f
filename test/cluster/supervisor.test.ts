/**
 * The supervisor with a stand-in CLI (a small script that behaves like a component): stages, ready
 * lines, merged and filtered logs, failures with their tail, and shutdown in reverse order.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/log.js';
import type { ComponentSpec } from '../../src/cluster/plan.js';
import { ComponentFailedError, Supervisor } from '../../src/cluster/supervisor.js';

const FAKE = `
const [mode, name] = process.argv.slice(2);
const log = (level, msg, extra = {}) =>
  process.stdout.write(JSON.stringify({ level, component: name, msg, ...extra }) + '\\n');
if (mode === 'fail') {
  log(30, 'starting');
  process.stderr.write('llmd: unknown hardware "TPU"\\n');
  process.exit(1);
}
log(20, 'a debug line');
log(40, 'a warning');
process.stdout.write('plain text\\n');
if (mode === 'stubborn') process.on('SIGTERM', () => log(40, 'ignoring SIGTERM'));
else process.on('SIGTERM', () => { log(30, 'stopped ' + name); process.exit(0); });
log(30, 'fake is ready', { url: 'http://127.0.0.1/' + name });
if (mode === 'crash') setTimeout(() => process.exit(3), 20);
setInterval(() => {}, 1000);
`;

const cli = join(mkdtempSync(join(tmpdir(), 'llmd-sup-')), 'fake.mjs');
writeFileSync(cli, FAKE);

function spec(name: string, stage: number, mode = 'ok'): ComponentSpec {
  return { name, kind: 'decode', args: [mode, name], env: {}, readyMsg: 'fake is ready', stage, port: null };
}

let sup: Supervisor | null = null;
afterEach(async () => {
  await sup?.stop();
  sup = null;
});

function supervisor(lines: string[], stopTimeoutMs = 5000): Supervisor {
  sup = new Supervisor(
    {
      cli,
      preload: null,
      logger: silentLogger(),
      write: (l) => lines.push(l),
      shownLevel: 'warn',
      startTimeoutMs: 10_000,
      stopTimeoutMs,
    },
    ['a', 'bb'],
  );
  return sup;
}

describe('Supervisor', () => {
  it('starts stage by stage, reports ready lines and shows only lines at the level or above', async () => {
    const lines: string[] = [];
    const s = supervisor(lines);
    const seen: string[][] = [];
    const up = await s.start([spec('bb', 1), spec('a', 0)], (sp, ready) => {
      seen.push(ready.map((r) => r.spec.name));
      return sp;
    });
    expect(up.map((c) => [c.spec.name, c.url])).toEqual([
      ['a', 'http://127.0.0.1/a'],
      ['bb', 'http://127.0.0.1/bb'],
    ]);
    // bb was prepared once a was ready.
    expect(seen).toEqual([[], ['a']]);
    expect(up.every((c) => c.pid > 0)).toBe(true);
    expect(lines.filter((l) => l.startsWith('a        | ')).map((l) => l.slice(11))).toEqual([
      '{"level":40,"component":"a","msg":"a warning"}',
    ]);
    expect(lines.some((l) => l.includes('debug line') || l.includes('plain text'))).toBe(false);
  });

  it('rejects with the tail of a component that exits before it is ready', async () => {
    const s = supervisor([]);
    const err = await s.start([spec('a', 0), spec('bb', 0, 'fail')]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ComponentFailedError);
    const f = err as ComponentFailedError;
    expect(f.component).toBe('bb');
    expect(f.reason).toBe('exited with code 1');
    expect(f.tail.join('\n')).toContain('unknown hardware "TPU"');
    await s.stop();
  });

  it('reports a component that goes down after it was ready', async () => {
    const s = supervisor([]);
    const failed = new Promise<ComponentFailedError>((resolve) => s.onFailure(resolve));
    await s.start([spec('a', 0), spec('bb', 0, 'crash')]);
    const err = await failed;
    expect([err.component, err.reason]).toEqual(['bb', 'exited with code 3']);
  });

  it('stops in reverse start order, and kills what ignores SIGTERM', async () => {
    const lines: string[] = [];
    const s = new Supervisor(
      {
        cli,
        preload: null,
        logger: silentLogger(),
        write: (l) => lines.push(l),
        shownLevel: 'info',
        startTimeoutMs: 10_000,
        stopTimeoutMs: 200,
      },
      ['a', 'bb'],
    );
    const up = await s.start([spec('a', 0), spec('bb', 1), spec('c', 2, 'stubborn')]);
    await s.stop();
    const stops = lines.filter((l) => l.includes('"stopped ') || l.includes('ignoring'));
    expect(stops.map((l) => l.split(' | ')[0]!.trim())).toEqual(['c', 'bb', 'a']);
    for (const c of up) expect(() => process.kill(c.pid, 0)).toThrow();
  });
});
