// deploy/Dockerfile cannot be built here (no Docker engine): check what the chart and the CLI rely on.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';

const ROOT = join(import.meta.dirname, '..', '..');
const dockerfile = readFileSync(join(ROOT, 'deploy', 'Dockerfile'), 'utf8');
/** Instructions with continuation lines joined and comments dropped. */
const instructions = dockerfile
  .replace(/\\\n/g, ' ')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l !== '' && !l.startsWith('#'));
const lastFrom = instructions.map((l) => l.startsWith('FROM ')).lastIndexOf(true);
const finalStage = instructions.slice(lastFrom);

describe('deploy/Dockerfile', () => {
  it('builds on node:20-slim and installs with the pinned pnpm from the lockfile', () => {
    expect(instructions.filter((l) => l.startsWith('FROM ')).every((l) => /^FROM node:20-slim( AS \w+)?$/.test(l))).toBe(true);
    const install = instructions.find((l) => l.includes('pnpm@'));
    expect(install).toMatch(/ONNXRUNTIME_NODE_INSTALL=skip .*npx -y pnpm@10\.34\.9 install --frozen-lockfile/);
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { packageManager: string };
    expect(pkg.packageManager).toBe('pnpm@10.34.9');
  });

  it('runs the CLI as the non-root user the chart expects', () => {
    const values = parseYaml(readFileSync(join(ROOT, 'helm', 'pdserve', 'values.yaml'), 'utf8')) as { securityContext: { runAsUser: number; runAsGroup: number } };
    const user = finalStage.find((l) => l.startsWith('USER '));
    expect(user).toBe(`USER ${values.securityContext.runAsUser}:${values.securityContext.runAsGroup}`);
    const entry = finalStage.find((l) => l.startsWith('ENTRYPOINT '))!;
    expect(JSON.parse(entry.slice('ENTRYPOINT '.length))).toEqual(['node', '--import', 'tsx', 'packages/cli/src/main.ts']);
  });

  it('keeps node_modules and VCS data out of the build context', () => {
    const ignore = readFileSync(join(ROOT, 'deploy', 'Dockerfile.dockerignore'), 'utf8').split('\n');
    expect(ignore).toEqual(expect.arrayContaining(['**/node_modules', '.git']));
  });
});
