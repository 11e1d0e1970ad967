// The production image without a Docker engine: deploy/Dockerfile's build step (scripts/build.mjs) run into a
// temp folder outside the repository, then that layout alone — production dependencies only, no tsx — prints
// --help and serves greedy completions equal to the reference loop from a local cluster (gateway, prefill,
// decode, kv-store: the gRPC contracts, the model thread and the tiny model builder all from the bundle).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { ensureTinyModel, loadModelSpec, ModelRunner, referenceGenerate, samplingParams } from '@pdserve/model';
import { Tokenizer } from '@pdserve/tokenizer';
import { completion } from '@pdserve/testkit';

const ROOT = join(import.meta.dirname, '..', '..');
const semver = createRequire(import.meta.url)('semver') as {
  minVersion(range: string): { version: string } | null;
  satisfies(version: string, range: string): boolean;
};

const dockerfile = readFileSync(join(ROOT, 'deploy', 'Dockerfile'), 'utf8');
/** Instructions with continuation lines joined and comments dropped. */
const instructions = dockerfile
  .replace(/\\\n/g, ' ')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l !== '' && !l.startsWith('#'));
const stages: string[][] = [];
for (const l of instructions) {
  if (l.startsWith('FROM ')) stages.push([l]);
  else stages.at(-1)?.push(l);
}
const finalStage = stages.at(-1)!;
const entrypoint = JSON.parse(finalStage.find((l) => l.startsWith('ENTRYPOINT '))!.slice('ENTRYPOINT '.length)) as string[];
/** Where the image's entrypoint script sits in the build layout (/app is the layout's root). */
const entryInLayout = relative('/app', entrypoint[1]!);

interface Manifest {
  readonly name: string;
  readonly version?: string;
  readonly engines?: { readonly node?: string };
  readonly dependencies?: Readonly<Record<string, string>>;
  readonly devDependencies?: Readonly<Record<string, string>>;
}
const manifest = (path: string): Manifest => JSON.parse(readFileSync(path, 'utf8')) as Manifest;
const rootManifest = manifest(join(ROOT, 'package.json'));
const imageManifest = manifest(join(ROOT, 'deploy', 'image', 'package.json'));

/** Dependencies of the CLI's workspace packages the image does not install, each with the reason. */
const NOT_IN_IMAGE: Readonly<Record<string, string>> = {
  tsx: "only the engine's checkout boot file (executor-worker-boot.mjs) loads it; the image runs the bundled model thread",
};
/** Node APIs the runtime uses that set its minimum version, with the versions that have them. */
const NODE_APIS: readonly { readonly what: string; readonly used: RegExp; readonly since: string }[] = [
  { what: "crc32 from 'node:zlib' (kv-cache checksums)", used: /\bcrc32\b[^;]*from 'node:zlib'/, since: '^20.15.0 || >=22.2.0' },
  { what: 'AbortSignal.any', used: /AbortSignal\.any\(/, since: '>=20.3.0' },
];
/** Packages of the development tree that must not reach the image. */
const DEV_ONLY = ['vitest', 'typescript', 'tsx', 'esbuild', '@huggingface/transformers', 'openai', 'kubernetes-models', 'vite'];

/** The workspace packages `pdserve` loads (cli and everything it depends on), by package.json path. */
function cliPackages(): Map<string, Manifest> {
  const dirs = new Map<string, string>();
  for (const group of ['packages', 'services']) {
    for (const d of readdirSync(join(ROOT, group))) {
      const p = join(ROOT, group, d, 'package.json');
      if (existsSync(p)) dirs.set(manifest(p).name, p);
    }
  }
  const seen = new Map<string, Manifest>();
  const visit = (name: string): void => {
    if (seen.has(name)) return;
    const m = manifest(dirs.get(name)!);
    seen.set(name, m);
    for (const [dep, spec] of Object.entries(m.dependencies ?? {})) if (spec.startsWith('workspace:')) visit(dep);
  };
  visit('@pdserve/cli');
  return seen;
}

/** Lower bound of each `||` alternative of a range: the oldest Node each alternative admits. */
const lowerBounds = (range: string): string[] => range.split('||').map((r) => semver.minVersion(r.trim())!.version);

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.test.ts'))
    .map((e) => join(e.parentPath, e.name));
}

/** Every package.json of a pnpm virtual store, one per installed package version. */
function installedPackages(nodeModules: string): Manifest[] {
  const store = join(nodeModules, '.pnpm');
  return readdirSync(store)
    .filter((d) => d !== 'node_modules' && !d.endsWith('.yaml'))
    .flatMap((d) => {
      const nm = join(store, d, 'node_modules');
      return readdirSync(nm).flatMap((n) => (n.startsWith('@') ? readdirSync(join(nm, n)).map((s) => join(nm, n, s)) : [join(nm, n)]));
    })
    .filter((p) => !lstatSync(p).isSymbolicLink() && existsSync(join(p, 'package.json')))
    .map((p) => manifest(join(p, 'package.json')));
}

/** Bytes of a folder, each hard-linked file counted once (pnpm links files from its store). */
function folderBytes(dir: string, seen = new Set<number>()): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    const s = lstatSync(p);
    if (e.isDirectory()) total += folderBytes(p, seen);
    else if (!seen.has(s.ino)) {
      seen.add(s.ino);
      total += s.size;
    }
  }
  return total;
}

const sha256 = (p: string): string => createHash('sha256').update(readFileSync(p)).digest('hex');
const filesOf = (dir: string): string[] =>
  readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();

describe('deploy/Dockerfile', () => {
  it('builds on Node 22 LTS slim, installs with the pinned pnpm, and runs scripts/build.mjs into /app', () => {
    const base = /^ARG NODE_IMAGE=(\S+)$/m.exec(dockerfile)?.[1];
    expect(base).toMatch(/^node:22(\.\d+){0,2}-(bookworm-)?slim$/);
    expect(stages.map((s) => s[0]!.replace(/ AS \w+$/, ''))).toEqual(stages.map(() => 'FROM ${NODE_IMAGE}'));
    const install = instructions.find((l) => l.includes('pnpm@'));
    expect(install).toMatch(
      new RegExp(
        `ONNXRUNTIME_NODE_INSTALL=skip .*npx -y ${(rootManifest as { packageManager?: string }).packageManager} install --frozen-lockfile`,
      ),
    );
    expect(instructions).toContain('RUN node scripts/build.mjs --out /out');
    expect(finalStage).toContain('COPY --from=build --chown=root:root /out /app');
    expect(entrypoint).toEqual(['node', '/app/bin/pdserve.mjs']);
    expect(finalStage.join('\n')).not.toMatch(/tsx|pnpm|npm /);
  });

  it('runs as the non-root user the chart expects, with the cache under the writable /tmp', () => {
    const values = parseYaml(readFileSync(join(ROOT, 'helm', 'pdserve', 'values.yaml'), 'utf8')) as {
      securityContext: { runAsUser: number; runAsGroup: number };
    };
    expect(finalStage.find((l) => l.startsWith('USER '))).toBe(
      `USER ${values.securityContext.runAsUser}:${values.securityContext.runAsGroup}`,
    );
    expect(finalStage.join('\n')).toMatch(/PDSERVE_CACHE=\/tmp\//);
  });

  it('keeps node_modules, build output and VCS data out of the build context', () => {
    const ignore = readFileSync(join(ROOT, 'deploy', 'Dockerfile.dockerignore'), 'utf8').split('\n');
    expect(ignore).toEqual(expect.arrayContaining(['**/node_modules', '.git', '**/dist', '.cache']));
  });
});

describe('deploy/image/package.json', () => {
  it("lists exactly the CLI's npm dependencies, at the versions its packages pin", () => {
    const wanted = new Map<string, string>();
    for (const m of cliPackages().values()) {
      for (const [dep, version] of Object.entries(m.dependencies ?? {})) {
        if (version.startsWith('workspace:') || NOT_IN_IMAGE[dep] !== undefined) continue;
        if (wanted.has(dep)) expect(version, `${m.name} and another package pin ${dep} differently`).toBe(wanted.get(dep));
        wanted.set(dep, version);
      }
    }
    expect(imageManifest.dependencies).toEqual(Object.fromEntries([...wanted].sort(([a], [b]) => a.localeCompare(b))));
    for (const dep of Object.keys(NOT_IN_IMAGE))
      expect(
        [...cliPackages().values()].some((m) => m.dependencies?.[dep]),
        `${dep} is still a dependency`,
      ).toBe(true);
  });

  it('carries the release version every package, the chart (appVersion) and pdserve_build_info carry', () => {
    const chart = parseYaml(readFileSync(join(ROOT, 'helm', 'pdserve', 'Chart.yaml'), 'utf8')) as { appVersion: string };
    const versions = new Map([...cliPackages()].map(([name, m]) => [name, m.version]));
    versions.set('@pdserve/image', imageManifest.version);
    versions.set('Chart.yaml appVersion', chart.appVersion);
    expect(new Set(versions.values()), JSON.stringify(Object.fromEntries(versions))).toEqual(new Set([chart.appVersion]));
  });

  it('states the oldest Node the runtime runs on: its APIs and every installed package admit it', () => {
    const range = imageManifest.engines!.node!;
    const sources = [...cliPackages().keys()]
      .flatMap((n) => sourceFiles(join(ROOT, 'packages', n.slice('@pdserve/'.length), 'src')))
      .map((f) => readFileSync(f, 'utf8'));
    for (const api of NODE_APIS) {
      expect(
        sources.some((s) => api.used.test(s)),
        `${api.what} is no longer used: drop it from NODE_APIS`,
      ).toBe(true);
      for (const v of lowerBounds(range)) expect(semver.satisfies(v, api.since), `Node ${v} lacks ${api.what}`).toBe(true);
    }
    // Not older than needed: each alternative's lower bound is what some API needs.
    expect(lowerBounds(range)).toEqual(['20.15.0', '22.2.0']);
    for (const pkg of installedPackages(join(ROOT, 'node_modules')).filter((p) =>
      Object.hasOwn(imageManifest.dependencies ?? {}, p.name),
    )) {
      for (const v of lowerBounds(range))
        if (pkg.engines?.node) expect(semver.satisfies(v, pkg.engines.node), `${pkg.name} needs node ${pkg.engines.node}`).toBe(true);
    }
  });

  it('leaves the root package.json the minimum of the development tree (tests, build), within the runtime range', () => {
    const range = rootManifest.engines!.node!;
    for (const v of lowerBounds(range))
      expect(semver.satisfies(v, imageManifest.engines!.node!), `root engines ${range} admits ${v}`).toBe(true);
    for (const pkg of installedPackages(join(ROOT, 'node_modules'))) {
      if (!pkg.engines?.node) continue;
      for (const v of lowerBounds(range))
        expect(semver.satisfies(v, pkg.engines.node), `${pkg.name}@${pkg.version} needs node ${pkg.engines.node}`).toBe(true);
    }
  });
});

describe('the build layout (scripts/build.mjs)', () => {
  let tmp = '';
  let app = '';
  let proc: ChildProcess | undefined;
  let out = '';
  let url = '';

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'pdserve-image-'));
    app = join(tmp, 'app');
    const [built] = await Promise.all([
      new Promise<{ status: number | null; log: string }>((resolve) => {
        const b = spawn(process.execPath, [join(ROOT, 'scripts', 'build.mjs'), '--out', app], {
          cwd: ROOT,
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let log = '';
        b.stdout.on('data', (d: Buffer) => (log += d.toString()));
        b.stderr.on('data', (d: Buffer) => (log += d.toString()));
        b.once('exit', (status) => resolve({ status, log }));
      }),
      ensureTinyModel(),
    ]);
    if (built.status !== 0) throw new Error(`scripts/build.mjs failed:\n${built.log}`);
  }, 120_000);

  afterAll(async () => {
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc!.once('exit', r));
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc!.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    }
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  /** The layout's own environment: nothing of this checkout (no tsx loader, no PDSERVE_* flags). */
  const env = (): NodeJS.ProcessEnv => ({
    PATH: process.env['PATH'],
    HOME: tmp,
    PDSERVE_CACHE: join(tmp, 'cache'),
    NODE_ENV: 'production',
  });

  it('holds the bundle and production dependencies only, no TypeScript but the tiny builder it hashes', () => {
    const store = readdirSync(join(app, 'node_modules', '.pnpm'));
    for (const dev of DEV_ONLY)
      expect(
        store.filter((d) => d.startsWith(`${dev.replace('/', '+')}@`)),
        dev,
      ).toEqual([]);
    const ts = filesOf(app).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts') && !f.startsWith('node_modules/'));
    expect(
      ts.every((f) => f.startsWith('packages/model/src/tiny/')),
      ts.join(', '),
    ).toBe(true);
    expect(existsSync(join(app, entryInLayout))).toBe(true);
    expect(existsSync(join(app, 'proto', 'pdserve'))).toBe(true);
    const bytes = folderBytes(app);
    const mb = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MiB`;
    const parts = ['bin', 'proto', 'packages', 'node_modules'].map((p) => `${p} ${mb(folderBytes(join(app, p)))}`);
    process.stdout.write(`image layout: ${mb(bytes)} (${parts.join(', ')})\n`);
    // Other platforms' onnxruntime binaries alone would add ~245 MiB.
    expect(bytes).toBeLessThan(150 * 2 ** 20);
  });

  it('runs --help and --version with node alone', () => {
    const help = spawnSync(process.execPath, [join(app, entryInLayout), '--help'], { cwd: tmp, env: env(), encoding: 'utf8' });
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^Usage: pdserve <command>/m);
    const version = spawnSync(process.execPath, [join(app, entryInLayout), '--version'], { cwd: tmp, env: env(), encoding: 'utf8' });
    expect(version.status, version.stderr).toBe(0);
    expect(version.stdout.trim()).toBe(`pdserve ${imageManifest.version}`);
  });

  it('serves greedy completions equal to the reference loop from `start` (gateway, prefill, decode, kv-store)', async () => {
    proc = spawn(process.execPath, [join(app, entryInLayout), 'start', '--port', '0', '--log-level', 'warn'], {
      cwd: tmp,
      env: env(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const until = Date.now() + 45_000;
    while (!(url = /serving tiny at (http:\/\/[^\s/]+)\/v1/.exec(out)?.[1] ?? '')) {
      if (proc.exitCode !== null || Date.now() > until) throw new Error(`start did not come up:\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const models = (await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] };
    expect(models.data.map((m) => m.id)).toEqual(['tiny']);

    // The bundled builder made the same tiny model as the sources do (same cache key, same bytes).
    const reference = await ensureTinyModel();
    const built = join(tmp, 'cache', 'models', basename(reference));
    expect(existsSync(built), `${readdirSync(join(tmp, 'cache', 'models')).join(', ')} vs ${basename(reference)}`).toBe(true);
    expect(filesOf(built)).toEqual(filesOf(reference));
    for (const f of filesOf(reference)) expect(sha256(join(built, f)), f).toBe(sha256(join(reference, f)));

    const tokenizer = await Tokenizer.fromDir(reference);
    const runner = await ModelRunner.create(loadModelSpec(reference));
    try {
      for (const prompt of [
        'The production image',
        'A longer prompt that fills more than one KV block of sixteen tokens, so prefill ships blocks',
      ]) {
        const ids = tokenizer.encode(prompt);
        const ref = await referenceGenerate(
          runner,
          ids,
          samplingParams({ temperature: 0, maxTokens: 10, stopTokenIds: tokenizer.eosTokenIds }),
        );
        let res: Response;
        // Workers may still be joining the gateway (issue 13 §2): 503 not_ready is retried, nothing else.
        for (let tries = 0; ; tries++) {
          res = await fetch(`${url}/v1/completions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ model: 'tiny', prompt, max_tokens: 10, temperature: 0 }),
          });
          if (res.status !== 503 || tries >= 100) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        expect(res.status, out).toBe(200);
        const body = (await res.json()) as { choices: { text: string }[] };
        expect(body.choices[0]!.text, prompt).toBe(completion(tokenizer, ids, ref.tokenIds));
      }
    } finally {
      await runner.release();
    }
  });
});
