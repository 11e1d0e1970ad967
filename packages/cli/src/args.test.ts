import { afterEach, describe, expect, it } from 'vitest';
import {
  checkValue,
  commandHelp,
  envName,
  formatBytes,
  nearest,
  parseBytes,
  parseFlags,
  UsageError,
  type CommandSpec,
  type FlagValue,
} from './args';
import { COMMANDS } from './run';

const spec = (flags: CommandSpec['flags'], more: Partial<CommandSpec> = {}): CommandSpec => ({
  name: 'demo',
  summary: 'a demo command',
  usage: 'demo [flags]',
  flags,
  run: () => Promise.resolve(),
  ...more,
});

/** A value each kind refuses. */
function badValue(v: FlagValue): string {
  switch (v.kind) {
    case 'int':
      return v.max !== undefined ? String(v.max + 1) : v.min !== undefined ? String(v.min - 1) : '1.5';
    case 'number':
      return v.above !== undefined ? String(v.above) : v.min !== undefined ? String(v.min - 1) : 'NaN';
    case 'bytes':
      return '1X';
    case 'choice':
    case 'list':
      return 'no-such-choice';
    case 'url':
      return 'ftp://example';
    case 'custom':
      return '';
  }
}

const saved = { ...process.env };
afterEach(() => {
  for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
  Object.assign(process.env, saved);
});

describe('parseFlags checks every flag before a command runs', () => {
  it.each(COMMANDS.map((c) => [c.name, c] as const))(
    '%s: each value-checked flag refuses a bad value and accepts its default',
    (_, cmd) => {
      for (const [name, f] of Object.entries(cmd.flags)) {
        const v = f.value;
        if (v === undefined) continue;
        expect(() => parseFlags({ ...cmd, check: undefined, flags: { [name]: f } }, [`--${name}`, badValue(v)]), `--${name}`).toThrow(
          UsageError,
        );
        if (typeof f.default === 'string') expect(checkValue(v, f.default), `--${name} default`).toBeUndefined();
      }
    },
  );

  it('gives every string flag a value kind, unless it is free text (a path, a name, a host)', () => {
    // Anything that must parse (a number, a size, a choice, a URL) gets a `value`, so it is checked up front.
    const FREE_TEXT = new Set([
      'advertise-host',
      'api-key',
      'api-key-file',
      'compare',
      'cost-model',
      'disk-dir',
      'draft-out',
      'execution-provider',
      'host',
      'instance-id',
      'model',
      'out',
      'output',
      'prompt',
      'report',
      'served-model-name',
      'speculative-model',
      'stop',
      'tls-dir',
      'trace',
    ]);
    const unchecked = COMMANDS.flatMap((c) =>
      Object.entries(c.flags)
        .filter(([n, f]) => f.type === 'string' && f.value === undefined && !FREE_TEXT.has(n))
        .map(([n]) => `${c.name} --${n}`),
    );
    expect(unchecked).toEqual([]);
  });

  it('checks values from the environment too, naming the variable', () => {
    const s = spec({ 'kv-cache-bytes': { type: 'string', help: 'x', value: { kind: 'bytes' } }, chat: { type: 'boolean', help: 'x' } });
    process.env[envName('kv-cache-bytes')] = '1X';
    expect(() => parseFlags(s, [])).toThrow(/^PDSERVE_KV_CACHE_BYTES must be a size like 268435456, 256M or 1G, got "1X"$/);
    expect((parseFlags(s, ['--kv-cache-bytes', '2G']) as Exclude<ReturnType<typeof parseFlags>, 'help'>).bytes('kv-cache-bytes')).toBe(
      2 * 2 ** 30,
    );
    delete process.env[envName('kv-cache-bytes')];
    process.env[envName('chat')] = 'yes';
    expect(() => parseFlags(s, [])).toThrow(/PDSERVE_CHAT must be 1, true, 0 or false/);
    process.env[envName('chat')] = 'true';
    expect((parseFlags(s, []) as Exclude<ReturnType<typeof parseFlags>, 'help'>).bool('chat')).toBe(true);
  });

  it('checks defaults, required flags and the rules between flags', () => {
    expect(() => parseFlags(spec({ n: { type: 'string', help: 'x', default: 'many', value: { kind: 'int' } } }), [])).toThrow(
      /--n must be an integer, got "many"/,
    );
    expect(() => parseFlags(spec({ out: { type: 'string', help: 'x', required: true } }), [])).toThrow(/--out is required/);
    const ruled = spec(
      { a: { type: 'string', help: 'x' } },
      {
        check: (f) => {
          if (f.str('a') === 'b') throw new UsageError('no b');
        },
      },
    );
    expect(() => parseFlags(ruled, ['--a', 'b'])).toThrow(/no b/);
    expect(parseFlags(ruled, ['--a', 'c'])).not.toBe('help');
  });

  it('suggests the nearest flag for a typo, and the nearest choice for a bad value', () => {
    const serve = COMMANDS.find((c) => c.name === 'serve')!;
    expect(() => parseFlags(serve, ['--kv-cahce-bytes', '1G'])).toThrow(
      /Unknown option '--kv-cahce-bytes' \(did you mean --kv-cache-bytes\?\) \(see: pdserve serve --help\)/,
    );
    expect(() => parseFlags(serve, ['--polcy', 'kv-aware'])).toThrow(/did you mean --policy\?/);
    expect(() => parseFlags(serve, ['--policy', 'kv-awre'])).toThrow(
      /--policy must be kv-aware, round-robin, least-loaded, session-affinity or random, got "kv-awre" \(did you mean kv-aware\?\)/,
    );
    expect(() => parseFlags(COMMANDS.find((c) => c.name === 'decode-worker')!, ['--transports', 'tcp,gprc'])).toThrow(
      /got "gprc" \(did you mean grpc\?\)/,
    );
    expect(() => parseFlags(serve, ['--zzzzzz'])).toThrow(/Unknown option '--zzzzzz' \(see/);
  });

  it('refuses what the old parser let through to the command: ports, URLs, log levels, serve without a decode pool', () => {
    const serve = COMMANDS.find((c) => c.name === 'serve')!;
    expect(() => parseFlags(serve, ['--port', '70000'])).toThrow(/--port must be an integer from 0 to 65535/);
    expect(() => parseFlags(serve, ['--redis', 'localhost:6379', '--nats', 'nats://x:4222'])).toThrow(
      /--redis must be a redis:\/\/ or rediss:\/\/ URL/,
    );
    expect(() => parseFlags(serve, ['--log-level', 'verbose'])).toThrow(/--log-level must be debug, info, warn or error/);
    expect(() => parseFlags(serve, ['--prefill', '2'])).toThrow(/a cluster needs --decode 1 or more/);
    expect(() => parseFlags(serve, ['--redis', 'redis://x:6379'])).toThrow(/needs both --redis and --nats/);
    const kvStore = COMMANDS.find((c) => c.name === 'kv-store')!;
    expect(() => parseFlags(kvStore, ['--disk-bytes', '1G'])).toThrow(/--disk-bytes needs --disk-dir/);
  });
});

describe('sizes', () => {
  it('parse with binary suffixes and show as the shortest whole or one-decimal unit', () => {
    expect(parseBytes('256M')).toBe(256 * 2 ** 20);
    expect(parseBytes('1.5GiB')).toBe(1.5 * 2 ** 30);
    expect(parseBytes('2Gi')).toBe(2 * 2 ** 30);
    expect(parseBytes('1X')).toBeUndefined();
    expect(formatBytes(268435456)).toBe('256M');
    expect(formatBytes(1536 * 2 ** 20)).toBe('1.5G');
    expect(formatBytes(2 ** 40)).toBe('1T');
    expect(formatBytes(1000)).toBe('1000');
  });

  it('show in --help as 256M, with placeholders that say what each value is', () => {
    const help = commandHelp(COMMANDS.find((c) => c.name === 'serve')!);
    expect(help).toMatch(/--kv-cache-bytes SIZE +KV pool size \(e\.g\. 256M, 1G\) \(default 256M\)/);
    expect(help).toMatch(/--port N +/);
    expect(help).toMatch(/--redis URL +/);
    expect(help).toMatch(/--ort-spin on\|off\|auto +/);
    expect(help).toMatch(/^Usage: pdserve serve /m);
    expect(help).not.toMatch(/268435456/);
    expect(commandHelp(COMMANDS.find((c) => c.name === 'kv-store')!)).toMatch(/--memory-bytes SIZE .*\(default 1G\)/);
  });
});

describe('nearest', () => {
  it('takes the only completion of a prefix, else the closest within a third of the length', () => {
    expect(nearest('kv-cache', ['kv-cache-bytes', 'block-size'])).toBe('kv-cache-bytes');
    expect(nearest('sreve', ['serve', 'start'])).toBe('serve');
    expect(nearest('modle tiny', ['model tiny'])).toBe('model tiny');
    expect(nearest('xyz', ['serve', 'start'])).toBeUndefined();
    expect(nearest('', ['serve'])).toBeUndefined();
  });
});
