import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { COMMANDS, runCli, VERSION } from './run';

const tmp = mkdtempSync(join(tmpdir(), 'pdserve-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Runs the CLI in this process, capturing what it prints. */
async function cli(args: readonly string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => ((out += String(c)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => ((err += String(c)), true));
  try {
    return { code: await runCli(args), out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

/** The CLI as a process (`node --import tsx main.ts`): its exit code is what scripts and Kubernetes see. */
function cliProcess(args: readonly string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'main.ts'), ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.once('exit', (code) => resolve({ code, out, err }));
  });
}

describe('pdserve CLI', () => {
  it('exits 2 on a bad flag value before any work: serve --kv-cache-bytes 1X builds no model', async () => {
    const cache = mkdtempSync(join(tmp, 'cache-'));
    const [proc, bad] = await Promise.all([
      cliProcess(['serve', '--kv-cache-bytes', '1X'], { PDSERVE_CACHE: cache }),
      cliProcess(['serv'], {}),
    ]);
    expect(proc.code).toBe(2);
    expect(proc.err).toBe('pdserve serve: --kv-cache-bytes must be a size like 268435456, 256M or 1G, got "1X"\n');
    expect(readdirSync(cache)).toEqual([]);
    expect(bad.code).toBe(2);
    expect(bad.err).toBe('pdserve: unknown command "serv" (did you mean serve?) (see: pdserve --help)\n');
  });

  it('exits 2 on every usage error, with one line', async () => {
    const cache = mkdtempSync(join(tmp, 'cache-'));
    process.env['PDSERVE_CACHE'] = cache;
    try {
      const cases: [string[], RegExp][] = [
        [['serve', '--kv-cahce-bytes', '1G'], /^pdserve serve: Unknown option '--kv-cahce-bytes' \(did you mean --kv-cache-bytes\?\)/],
        [['serve', '--prefill', '1'], /a cluster needs --decode 1 or more/],
        [['serve', 'extra'], /Unexpected argument 'extra'/],
        [['start', '--nats', 'nats://127.0.0.1:4222'], /needs both --redis and --nats/],
        [['gateway', '--policy', 'fastest'], /--policy must be kv-aware, .* got "fastest"/],
        [['decode-worker', '--ort-spin', 'maybe'], /--ort-spin must be on, off or auto/],
        [['model', 'tiny'], /--out is required/],
        [['model', 'tiny', '--out', join(tmp, 'm'), '--tokenizer', 'gpt2'], /--tokenizer must be llama2 or qwen3/],
        [['model', 'tyni'], /unknown command "model tyni" \(did you mean model tiny\?\)/],
        [['kv-store', '--disk-bytes', '1G'], /--disk-bytes needs --disk-dir/],
        [['bench'], /--url is required/],
        [['bench', '--url', 'http://127.0.0.1:1', '--rate', 'fast'], /--rate must be a positive number or inf/],
        [['simulate', '--trace', 'x.jsonl'], /--decode is required/],
        [['simulate', '--trace', 'x.jsonl', '--decode', '2', '--policy', 'kv-aware,rnd'], /got "rnd"/],
        [['generate', '--model', 'x'], /--prompt is required/],
        [['calibrate', '--output', 'x.json', '--threads=-1'], /--threads must be an integer ≥ 0/],
        [['calibrate', '--output', 'x.json', '--threads', '-1'], /argument is ambiguous. \(a value starting with - goes as --threads=-1\)/],
        [['--verbose'], /unknown option "--verbose" before a command/],
      ];
      for (const [args, message] of cases) {
        const r = await cli(args);
        expect(r.code, args.join(' ')).toBe(2);
        expect(r.err, args.join(' ')).toMatch(message);
        expect(r.err.trimEnd().split('\n'), args.join(' ')).toHaveLength(1);
      }
      expect(readdirSync(cache), 'no command got as far as building a model').toEqual([]);
    } finally {
      delete process.env['PDSERVE_CACHE'];
    }
  });

  it('prints its version, the package version', async () => {
    const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'package.json'), 'utf8')) as { version: string };
    expect(VERSION).toBe(pkg.version);
    for (const flag of ['--version', '-V']) expect(await cli([flag])).toEqual({ code: 0, out: `pdserve ${pkg.version}\n`, err: '' });
  });

  it('lists every command in its help, as pdserve <command>', async () => {
    const r = await cli(['--help']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^Usage: pdserve <command> \[flags\]$/m);
    for (const c of COMMANDS) expect(r.out).toContain(`  ${c.name} `);
    const serve = await cli(['serve', '--help']);
    expect(serve.code).toBe(0);
    expect(serve.out).toMatch(/--kv-cache-bytes SIZE .*\(default 256M\)/);
  });
});
