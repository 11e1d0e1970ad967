// scripts/check-deps.mjs: this repository passes it, and a package that imports what it does not list, or
// lists what it does not import, fails it.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SCRIPT = fileURLToPath(new URL('../scripts/check-deps.mjs', import.meta.url));
const check = (...args: string[]) => spawnSync(process.execPath, [SCRIPT, ...args], { encoding: 'utf8' });

describe('the dependency check', () => {
  it('passes on this repository', () => {
    const r = check();
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('fails on an import not listed, a dependency not imported, and a relative import with a .js suffix', () => {
    const root = mkdtempSync(join(tmpdir(), 'pdserve-deps-'));
    try {
      writeFileSync(join(root, 'package.json'), JSON.stringify({ devDependencies: { vitest: '4' } }));
      mkdirSync(join(root, 'packages', 'a', 'src'), { recursive: true });
      writeFileSync(join(root, 'packages', 'a', 'package.json'), JSON.stringify({ name: '@x/a', dependencies: { 'left-pad': '1' } }));
      writeFileSync(
        join(root, 'packages', 'a', 'src', 'index.ts'),
        "import { readFileSync } from 'node:fs';\nimport type { B } from '@x/b/sub';\nimport { c } from './c.js';\nexport const a = 1;\n",
      );
      writeFileSync(join(root, 'packages', 'a', 'src', 'a.test.ts'), "import { it } from 'vitest';\n");
      const r = check('--root', root);
      expect(r.status).toBe(1);
      expect(r.stderr).toContain('@x/a: packages/a/src/index.ts imports @x/b, which its package.json does not list');
      expect(r.stderr).toContain('@x/a: lists left-pad, which nothing in it imports');
      expect(r.stderr).toContain('@x/a: packages/a/src/index.ts imports ./c.js: relative imports carry no .js suffix');
      expect(r.stderr).not.toContain('vitest');
      expect(r.stderr).not.toContain('node:fs');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
