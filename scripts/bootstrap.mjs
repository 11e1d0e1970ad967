#!/usr/bin/env node
// Makes `npm start` / `npm test` work on a machine with only Node 20 and npm: installs the workspace
// with a pinned pnpm the first time, and again whenever the lockfile changes.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const PNPM = 'pnpm@10.34.9';
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const quiet = process.argv.includes('--quiet');
const lock = join(root, 'pnpm-lock.yaml');
const stamp = join(root, 'node_modules', '.pdserve-install');
const want = existsSync(lock) ? createHash('sha256').update(readFileSync(lock)).digest('hex') : 'no-lock';
if (existsSync(stamp) && readFileSync(stamp, 'utf8') === want) process.exit(0);

if (!quiet) process.stderr.write(`pdserve: installing dependencies with ${PNPM} (first run only)\n`);
const args = ['-y', PNPM, 'install', ...(existsSync(lock) ? ['--frozen-lockfile'] : [])];
const res = spawnSync('npx', args, {
  cwd: root,
  stdio: quiet ? ['ignore', 'ignore', 'inherit'] : 'inherit',
  // onnxruntime-node's postinstall would try to download CUDA libraries; its CPU binary ships in the package.
  env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip', ONNXRUNTIME_NODE_INSTALL_CUDA: 'skip' },
});
if (res.status !== 0) {
  process.stderr.write(`pdserve: dependency install failed (exit ${res.status})\n`);
  process.exit(res.status ?? 1);
}
writeFileSync(stamp, want);
