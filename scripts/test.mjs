#!/usr/bin/env node
// `npm test`: makes sure the real servers the tests start are installed, checks dependencies, lints,
// typechecks, then runs every test (in one vitest run: no test compares timings, so none runs alone).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const has = (bin) => spawnSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' }).status === 0;

// Tests start their own redis-server, nats-server and prometheus on loopback ports, and page tests drive a
// headless chromium (testkit's launchChromium); install what's missing.
const missing = [
  ['redis-server', 'redis-server'],
  ['nats-server', 'nats-server'],
  ['prometheus', 'prometheus'],
  ['promtool', 'prometheus'],
  ['chromium', 'chromium'],
].filter(([bin]) => !has(bin) && !existsSync(`/usr/sbin/${bin}`) && !existsSync(`/usr/bin/${bin}`));
if (missing.length > 0) {
  const pkgs = [...new Set(missing.map(([, pkg]) => pkg))];
  if (process.getuid?.() === 0) {
    process.stderr.write(`installing ${pkgs.join(' ')} with apt-get\n`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    const r = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], { stdio: 'inherit', env });
    if (r.status !== 0) process.exit(r.status ?? 1);
  } else {
    process.stderr.write(`missing ${pkgs.join(', ')}: install them (apt-get install ${pkgs.join(' ')}) for the tests that need them\n`);
  }
}

const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' } });
  if (r.status !== 0) process.exit(r.status ?? 1);
};
const bin = (name) => join(root, 'node_modules', '.bin', name);
// Each package lists exactly what it imports; Biome's lint rules and formatting (biome.json): `npx biome format
// --write .` fixes the formatting.
run(process.execPath, [join(root, 'scripts', 'check-deps.mjs')]);
run(bin('biome'), ['check', '--reporter=summary']);
run(bin('tsc'), ['-p', 'tsconfig.json', '--noEmit']);
const args = process.argv.slice(2);
run(bin('vitest'), ['run', ...args]);
