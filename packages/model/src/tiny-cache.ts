import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildTinyModel } from './tiny/index';
import type { TinyModelOptions } from './tiny/options';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Where built models and other reusable artefacts go; override with PDSERVE_CACHE. */
export function cacheDir(): string {
  return process.env['PDSERVE_CACHE'] ?? join(REPO_ROOT, '.cache');
}

/**
 * The built-in tiny model with the given shape, built once into the cache folder. Builds go to a
 * temporary folder first and are renamed into place, so a half-built model is never used.
 */
export async function ensureTinyModel(
  opts: Omit<TinyModelOptions, 'out'> = {},
  onProgress?: (done: number, total: number) => void,
): Promise<string> {
  const key = Object.entries(opts)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}-${String(v)}`)
    .join('_');
  const dir = join(cacheDir(), 'models', `tiny-${builderVersion()}${key ? `_${key}` : ''}`);
  if (existsSync(join(dir, 'config.json'))) return dir;
  mkdirSync(dirname(dir), { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  await buildTinyModel({ ...opts, out: tmp }, onProgress);
  try {
    renameSync(tmp, dir);
  } catch (err) {
    // Another process won the race; its copy is identical (the build is deterministic).
    rmSync(tmp, { recursive: true, force: true });
    if (!existsSync(join(dir, 'config.json'))) throw err;
  }
  return dir;
}

/** A digest of the builder's source, so that a changed builder never reuses a stale cached model. */
function builderVersion(): string {
  const src = join(dirname(fileURLToPath(import.meta.url)), 'tiny');
  const h = createHash('sha256');
  for (const f of readdirSync(src)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
    .sort()) {
    h.update(f).update(readFileSync(join(src, f)));
  }
  return h.digest('hex').slice(0, 10);
}
