#!/usr/bin/env node
// Each package's public API: the names its entry points export, and how many of them other packages,
// services, tests and scripts import. `node scripts/api-surface.mjs [--json]`.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkgDirs = readdirSync(join(root, 'packages'))
  .map((d) => join(root, 'packages', d))
  .filter((d) => statSync(d).isDirectory());

/** Package name -> { dir, entries: subpath -> file }. */
const packages = new Map();
for (const dir of pkgDirs) {
  const pj = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const exp = typeof pj.exports === 'string' ? { '.': pj.exports } : (pj.exports ?? { '.': './src/index.ts' });
  const entries = {};
  for (const [sub, target] of Object.entries(exp)) {
    const file = typeof target === 'string' ? target : (target.import ?? target.default);
    if (typeof file === 'string' && file.endsWith('.ts')) entries[sub] = join(dir, file);
  }
  packages.set(pj.name, { dir, entries });
}

const entryFiles = [...packages.values()].flatMap((p) => Object.values(p.entries));
const program = ts.createProgram(entryFiles, {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.ESNext,
  moduleResolution: ts.ModuleResolutionKind.Bundler,
  allowImportingTsExtensions: true,
  noEmit: true,
  skipLibCheck: true,
  types: [],
});
const checker = program.getTypeChecker();

/** Package name -> exported names (over every subpath). */
const exported = new Map();
for (const [name, p] of packages) {
  const names = new Set();
  for (const file of Object.values(p.entries)) {
    const sf = program.getSourceFile(file);
    const sym = sf && checker.getSymbolAtLocation(sf);
    if (sym) for (const e of checker.getExportsOfModule(sym)) names.add(e.name);
  }
  exported.set(name, names);
}

function walk(dir, out = []) {
  for (const d of readdirSync(dir, { withFileTypes: true })) {
    if (d.name === 'node_modules' || d.name.startsWith('.')) continue;
    const p = join(dir, d.name);
    if (d.isDirectory()) walk(p, out);
    else if (/\.(ts|mts|mjs|js)$/.test(d.name)) out.push(p);
  }
  return out;
}

/** Package name -> name -> set of importing places (package name, or 'test'/'scripts'/service). */
const used = new Map([...packages.keys()].map((n) => [n, new Map()]));
const owner = (file) => {
  const rel = relative(root, file).split('/');
  if (rel[0] === 'packages' || rel[0] === 'services') {
    const pj = JSON.parse(readFileSync(join(root, rel[0], rel[1], 'package.json'), 'utf8'));
    return pj.name;
  }
  return rel[0];
};
for (const file of [
  ...walk(join(root, 'packages')),
  ...walk(join(root, 'services')),
  ...walk(join(root, 'test')),
  ...walk(join(root, 'scripts')),
]) {
  const from = owner(file);
  const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, false);
  for (const st of sf.statements) {
    if (!(ts.isImportDeclaration(st) || ts.isExportDeclaration(st)) || st.moduleSpecifier === undefined) continue;
    const spec = st.moduleSpecifier.text;
    const pkg = [...packages.keys()].find((n) => spec === n || spec.startsWith(`${n}/`));
    if (pkg === undefined || pkg === from) continue;
    const names = [];
    if (ts.isImportDeclaration(st)) {
      const c = st.importClause;
      if (c?.namedBindings && ts.isNamedImports(c.namedBindings))
        for (const e of c.namedBindings.elements) names.push((e.propertyName ?? e.name).text);
      else if (c?.namedBindings) names.push('*');
    } else if (st.exportClause && ts.isNamedExports(st.exportClause)) {
      for (const e of st.exportClause.elements) names.push((e.propertyName ?? e.name).text);
    } else names.push('*');
    for (const n of names) {
      const m = used.get(pkg);
      const all = n === '*' ? [...exported.get(pkg)] : [n];
      for (const x of all) {
        if (!m.has(x)) m.set(x, new Set());
        m.get(x).add(from);
      }
    }
  }
}

const rows = [...packages.keys()].sort().map((name) => {
  const names = exported.get(name);
  const m = used.get(name);
  const byPackages = [...names].filter((n) => [...(m.get(n) ?? [])].some((f) => f.startsWith('@pdserve/'))).length;
  const byAnyone = [...names].filter((n) => m.has(n)).length;
  return {
    package: name,
    exported: names.size,
    usedByPackages: byPackages,
    usedByTestsOrScriptsOnly: byAnyone - byPackages,
    unused: names.size - byAnyone,
  };
});
if (process.argv.includes('--used')) {
  for (const name of [...packages.keys()].sort())
    process.stdout.write(
      `${name}: ${[...used.get(name).keys()]
        .filter((n) => exported.get(name).has(n))
        .sort()
        .join(' ')}\n`,
    );
} else if (process.argv.includes('--unused')) {
  for (const name of [...packages.keys()].sort()) {
    const m = used.get(name);
    const unused = [...exported.get(name)].filter((n) => !m.has(n)).sort();
    if (unused.length > 0) process.stdout.write(`${name}: ${unused.join(' ')}\n`);
  }
} else if (process.argv.includes('--json')) process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
else {
  process.stdout.write('package                  exported  used-by-packages  tests/scripts-only  unused\n');
  for (const r of rows) {
    process.stdout.write(
      `${r.package.padEnd(24)} ${String(r.exported).padStart(8)}  ${String(r.usedByPackages).padStart(16)}  ${String(r.usedByTestsOrScriptsOnly).padStart(18)}  ${String(r.unused).padStart(6)}\n`,
    );
  }
  const t = rows.reduce((a, r) => ({ e: a.e + r.exported, u: a.u + r.usedByPackages }), { e: 0, u: 0 });
  process.stdout.write(`${'total'.padEnd(24)} ${String(t.e).padStart(8)}  ${String(t.u).padStart(16)}\n`);
}
