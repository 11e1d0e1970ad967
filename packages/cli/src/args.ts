import { parseArgs } from 'node:util';

/** A command-line flag: its type, default and the sentence shown by --help. */
export interface FlagSpec {
  readonly type: 'string' | 'boolean';
  readonly help: string;
  readonly default?: string | boolean;
  readonly short?: string;
  /** A string flag that may be given more than once (Flags.list); from the environment, comma-separated. */
  readonly multiple?: boolean;
}

export interface CommandSpec {
  readonly name: string;
  readonly summary: string;
  readonly usage: string;
  readonly flags: Readonly<Record<string, FlagSpec>>;
  /** Accepts bare arguments besides flags (e.g. `--compare A.json B.json`); absent: none are accepted. */
  readonly positionals?: boolean;
  run(flags: Flags): Promise<void>;
}

/** A user mistake on the command line: printed as one line, exit code 2. */
export class UsageError extends Error {}

export class Flags {
  constructor(
    private readonly values: Record<string, string | boolean | readonly string[] | undefined>,
    /** Bare arguments, in order (only for commands that accept them). */
    readonly positionals: readonly string[] = [],
  ) {}

  str(name: string): string | undefined {
    const v = this.values[name];
    return typeof v === 'string' ? v : undefined;
  }
  /** Every value of a repeatable flag (FlagSpec.multiple), in order; [] when none. */
  list(name: string): readonly string[] {
    const v = this.values[name];
    return Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
  }
  required(name: string): string {
    const v = this.str(name);
    if (v === undefined || v === '') throw new UsageError(`--${name} is required`);
    return v;
  }
  bool(name: string): boolean {
    return this.values[name] === true;
  }
  int(name: string, min = Number.MIN_SAFE_INTEGER): number | undefined {
    const v = this.str(name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer${min > Number.MIN_SAFE_INTEGER ? ` ≥ ${min}` : ''}, got "${v}"`);
    return n;
  }
  num(name: string): number | undefined {
    const v = this.str(name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got "${v}"`);
    return n;
  }
  /** Byte sizes accept suffixes: 512M, 2G, 1.5GiB, and Kubernetes' 2Gi (all powers of 1024). */
  bytes(name: string): number | undefined {
    const v = this.str(name);
    if (v === undefined) return undefined;
    const m = /^(\d+(?:\.\d+)?)\s*(?:([kmgt])(ib?|b)?|(b)?)$/i.exec(v.trim());
    if (!m) throw new UsageError(`--${name} must be a size like 268435456, 256M or 1G, got "${v}"`);
    const mult = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[(m[2] ?? '').toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
    return Math.floor(Number(m[1]) * mult);
  }
}

export function parseFlags(spec: CommandSpec, argv: readonly string[]): Flags | 'help' {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = { help: { type: 'boolean', short: 'h' } };
  for (const [name, f] of Object.entries(spec.flags)) options[name] = { type: f.type, ...(f.short ? { short: f.short } : {}), ...(f.multiple ? { multiple: true } : {}) };
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options, allowPositionals: spec.positionals === true, strict: true });
  } catch (err) {
    throw new UsageError(`${(err as Error).message.split('\n')[0]} (see: pdserve ${spec.name} --help)`);
  }
  if (parsed.values['help']) return 'help';
  const values: Record<string, string | boolean | readonly string[] | undefined> = {};
  for (const [name, f] of Object.entries(spec.flags)) {
    const env = process.env[envName(name)];
    if (f.multiple) {
      const given = parsed.values[name] as string[] | undefined;
      values[name] = given ?? (env === undefined ? [] : env.split(',').map((s) => s.trim()).filter((s) => s !== ''));
      continue;
    }
    const fromEnv = env === undefined ? undefined : f.type === 'boolean' ? env === '1' || env === 'true' : env;
    values[name] = (parsed.values[name] as string | boolean | undefined) ?? fromEnv ?? f.default;
  }
  return new Flags(values, parsed.positionals);
}

/** Every flag can also come from the environment: --kv-cache-bytes ⇔ PDSERVE_KV_CACHE_BYTES. */
export function envName(flag: string): string {
  return `PDSERVE_${flag.toUpperCase().replace(/-/g, '_')}`;
}

export function commandHelp(spec: CommandSpec): string {
  const lines = [`${spec.summary}`, '', `Usage: npm run pdserve -- ${spec.usage}`, '', 'Flags:'];
  const width = Math.max(...Object.entries(spec.flags).map(([n, f]) => n.length + (f.type === 'string' ? 6 : 0)), 4) + 4;
  for (const [name, f] of Object.entries(spec.flags)) {
    const left = `--${name}${f.type === 'string' ? ' VALUE' : ''}`;
    const def = f.default !== undefined && f.default !== false ? ` (default ${String(f.default)})` : '';
    lines.push(`  ${left.padEnd(width)}${f.help}${def}`);
  }
  lines.push(`  ${'--help'.padEnd(width)}show this help`);
  lines.push('', 'Each flag may also be set in the environment: --kv-cache-bytes 1G is PDSERVE_KV_CACHE_BYTES=1G (the flag wins).');
  return lines.join('\n');
}
