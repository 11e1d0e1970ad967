// The gateway never runs a model: it must not load onnxruntime-node (a native addon of tens of megabytes).
// Its module graph reaches what it shares with the workers through contracts and client subpaths, and the
// model runner loads onnxruntime only when a runner is created; checked on the module graph in a fresh
// process, and on a real `pdserve gateway` process serving the API.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ensureTinyModel } from '@pdserve/model';
import { freePort, REPO_ROOT, waitFor } from '@pdserve/testkit';

function loads(specifier: string): { native: string[]; commonJs: string[] } {
  const fixture = fileURLToPath(new URL('./module-graph.fixture.ts', import.meta.url));
  const out = execFileSync(process.execPath, ['--import', 'tsx', fixture, specifier], { encoding: 'utf8', timeout: 60_000 });
  return JSON.parse(out) as { native: string[]; commonJs: string[] };
}

const onnxruntime = (paths: readonly string[]): string[] => paths.filter((p) => /onnxruntime/.test(p));

describe("the gateway's module graph", () => {
  it('never loads onnxruntime-node', () => {
    const g = loads('@pdserve/gateway');
    expect(g.commonJs.length).toBeGreaterThan(0); // it did load things (grpc-js, ioredis, ...)
    expect(onnxruntime(g.native)).toEqual([]);
    expect(onnxruntime(g.commonJs)).toEqual([]);
  }, 90_000);

  it("reaches the kv-store through its client subpath, without the store's Redis directory (ioredis)", () => {
    const c = loads('@pdserve/kv-store/client');
    expect(c.commonJs.filter((p) => /ioredis/.test(p))).toEqual([]);
    expect(loads('@pdserve/kv-store').commonJs.filter((p) => /ioredis/.test(p)).length).toBeGreaterThan(0);
  }, 90_000);

  it('while a module that imports onnxruntime-node does (the check can fail)', () => {
    const m = loads(fileURLToPath(new URL('../../model/src/tiny/ort-greedy.ts', import.meta.url)));
    expect(onnxruntime([...m.native, ...m.commonJs]).length).toBeGreaterThan(0);
  }, 90_000);
});

/** Runs `pdserve <args>` as a real process until `until` holds (then SIGTERM); the native addons it loaded. */
async function nativeAddonsOf(args: readonly string[], until: () => Promise<boolean>): Promise<string[]> {
  const tmp = mkdtempSync(join(tmpdir(), 'pdserve-dlopen-'));
  const log = join(tmp, 'dlopen.log');
  const probe = fileURLToPath(new URL('./dlopen-probe.fixture.mjs', import.meta.url));
  const cli = join(REPO_ROOT, 'packages', 'cli', 'src', 'main.ts');
  const proc = spawn(process.execPath, ['--import', 'tsx', '--import', probe, cli, ...args], {
    cwd: REPO_ROOT,
    stdio: 'ignore',
    env: { ...process.env, PDSERVE_DLOPEN_LOG: log, ONNXRUNTIME_NODE_INSTALL: 'skip' },
  });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  try {
    await waitFor(`pdserve ${args[0]}`, async () => proc.exitCode !== null || (await until()), 60_000, 100);
  } finally {
    proc.kill('SIGTERM');
    await exited;
  }
  try {
    return existsSync(log)
      ? readFileSync(log, 'utf8')
          .split('\n')
          .filter((l) => l !== '')
      : [];
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

describe('the `pdserve gateway` process', () => {
  it('serves the API without ever loading onnxruntime-node', async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const native = await nativeAddonsOf(
      [
        'gateway',
        '--model',
        await ensureTinyModel(),
        '--served-model-name',
        'tiny',
        '--port',
        String(port),
        '--admin-port',
        '0',
        '--host',
        '127.0.0.1',
        '--log-level',
        'warn',
      ],
      async () => {
        if ((await fetch(`${base}/v1/models`)).status !== 200) return false;
        // No worker has joined: a completion is refused (503), the request went all the way through the gateway.
        const res = await fetch(`${base}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'tiny', prompt: 'hi', max_tokens: 2 }),
        });
        return res.status === 503;
      },
    );
    expect(native.length).toBeGreaterThan(0); // the probe saw the addons it did load (e.g. CRC-32)
    expect(onnxruntime(native)).toEqual([]);
  }, 90_000);

  it('while a command that runs the model does load it (the probe can fail)', async () => {
    const native = await nativeAddonsOf(
      ['generate', '--model', await ensureTinyModel(), '--prompt', 'hi', '--max-tokens', '1'],
      async () => false,
    );
    expect(onnxruntime(native).length).toBeGreaterThan(0);
  }, 90_000);
});
