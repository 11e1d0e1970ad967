import { parseArgs } from 'node:util';

/**
 * What a string flag's value must be. parseFlags checks every flag's value — from the command line, the
 * environment or the default — before a command does any work, so a typo never waits behind a model load.
 */
export type FlagValue =
  | { readonly kind: 'int'; readonly min?: number; readonly max?: number }
  /** A finite number; `above` is an exclusive lower bound. */
  | { readonly kind: 'number'; readonly min?: number; readonly above?: number }
  /** A byte size: 268435456, 256M, 1.5GiB, 2Gi (powers of 1024); shown as 256M in --help. */
  | { readonly kind: 'bytes' }
  | { readonly kind: 'choice'; readonly choices: readonly string[] }
  /** Comma-separated choices, e.g. tcp,grpc. */
  | { readonly kind: 'list'; readonly choices: readonly string[] }
  | { readonly kind: 'url'; readonly protocols: readonly string[] }
  /** Anything else: `check` returns what is wrong, or undefined. */
  | { readonly kind: 'custom'; readonly placeholder: string; readonly check: (value: string) => string | undefined };

export const int = (min?: number, max?: number): FlagValue => ({ kind: 'int', min, max });
export const num = (bounds: { readonly min?: number; readonly above?: number } = {}): FlagValue => ({ kind: 'number', ...bounds });
export const PORT: FlagValue = int(0, 65535);
export const BYTES: FlagValue = { kind: 'bytes' };
export const oneOf = (...choices: readonly string[]): FlagValue => ({ kind: 'choice', choices });
export const listOf = (...choices: readonly string[]): FlagValue => ({ kind: 'list', choices });
export const url = (...protocols: readonly string[]): FlagValue => ({ kind: 'url', protocols });

/** A command-line flag: its type, default and the sentence shown by --help. */
export interface FlagSpec {
  readonly type: 'string' | 'boolean';
  readonly help: string;
  readonly default?: string | boolean;
  readonly short?: string;
  /** What a string value must be (absent: any text, e.g. a path). */
  readonly value?: FlagValue;
  /** The command cannot run without it. */
  readonly required?: boolean;
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
  /** Rules between flags (e.g. --disk-bytes needs --disk-dir), checked with the flags, before run. */
  check?(flags: Flags): void;
  run(flags: Flags): Promise<void>;
}

/** A user mistake on the command line: printed as one line, exit code 2. */
export class UsageError extends Error {}

const BYTES_RE = /^(\d+(?:\.\d+)?)\s*(?:([kmgt])(ib?|b)?|(b)?)$/i;
const UNITS = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 } as const;

/** A byte size with an optional suffix (powers of 1024), or undefined if it is not one. */
export function parseBytes(v: string): number | undefined {
  const m = BYTES_RE.exec(v.trim());
  if (!m) return undefined;
  return Math.floor(Number(m[1]) * UNITS[(m[2] ?? '').toLowerCase() as keyof typeof UNITS]);
}

/** Bytes as --help shows them: the largest unit that keeps the number short (268435456 → 256M, 1536M → 1.5G). */
export function formatBytes(n: number): string {
  for (const [suffix, unit] of [
    ['T', UNITS.t],
    ['G', UNITS.g],
    ['M', UNITS.m],
    ['K', UNITS.k],
  ] as const) {
    if (n < unit) continue;
    const x = n / unit;
    if (Number.isInteger(x) || Number.isInteger(x * 10)) return `${x}${suffix}`;
  }
  return String(n);
}

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
    const problem = checkValue(int(min > Number.MIN_SAFE_INTEGER ? min : undefined), v);
    if (problem) throw new UsageError(`--${name} ${problem}`);
    return Number(v);
  }
  num(name: string): number | undefined {
    const v = this.str(name);
    if (v === undefined) return undefined;
    const problem = checkValue(num(), v);
    if (problem) throw new UsageError(`--${name} ${problem}`);
    return Number(v);
  }
  /** Byte sizes accept suffixes: 512M, 2G, 1.5GiB, and Kubernetes' 2Gi (all powers of 1024). */
  bytes(name: string): number | undefined {
    const v = this.str(name);
    if (v === undefined) return undefined;
    const n = parseBytes(v);
    if (n === undefined) throw new UsageError(`--${name} ${checkValue(BYTES, v)}`);
    return n;
  }
}

/** What is wrong with `v` as a value of this kind ("must be ..., got ..."), or undefined. */
export function checkValue(kind: FlagValue, v: string): string | undefined {
  const got = `got "${v}"`;
  switch (kind.kind) {
    case 'int': {
      const n = Number(v);
      const range =
        kind.max !== undefined
          ? ` from ${kind.min ?? Number.MIN_SAFE_INTEGER} to ${kind.max}`
          : kind.min !== undefined
            ? ` ≥ ${kind.min}`
            : '';
      if (v.trim() === '' || !Number.isInteger(n) || (kind.min !== undefined && n < kind.min) || (kind.max !== undefined && n > kind.max))
        return `must be an integer${range}, ${got}`;
      return undefined;
    }
    case 'number': {
      const n = Number(v);
      const range = kind.above !== undefined ? ` > ${kind.above}` : kind.min !== undefined ? ` ≥ ${kind.min}` : '';
      if (
        v.trim() === '' ||
        !Number.isFinite(n) ||
        (kind.min !== undefined && n < kind.min) ||
        (kind.above !== undefined && n <= kind.above)
      )
        return `must be a number${range}, ${got}`;
      return undefined;
    }
    case 'bytes':
      return parseBytes(v) === undefined ? `must be a size like 268435456, 256M or 1G, ${got}` : undefined;
    case 'choice':
      return kind.choices.includes(v) ? undefined : `must be ${orList(kind.choices)}, ${got}${didYouMean(v, kind.choices, '')}`;
    case 'list': {
      const items = v.split(',').map((s) => s.trim());
      const bad = items.find((s) => !kind.choices.includes(s));
      if (bad === undefined && items.length > 0) return undefined;
      return `takes a comma-separated list of ${kind.choices.join(', ')}, got "${bad ?? v}"${didYouMean(bad ?? '', kind.choices, '')}`;
    }
    case 'url': {
      let protocol: string;
      try {
        protocol = new URL(v).protocol;
      } catch {
        return `must be a URL like ${kind.protocols[0]}//host:port, ${got}`;
      }
      return kind.protocols.includes(protocol) ? undefined : `must be a ${kind.protocols.map((p) => `${p}//`).join(' or ')} URL, ${got}`;
    }
    case 'custom': {
      const problem = kind.check(v);
      return problem === undefined ? undefined : `${problem}, ${got}`;
    }
  }
}

const orList = (xs: readonly string[]): string => (xs.length <= 1 ? (xs[0] ?? '') : `${xs.slice(0, -1).join(', ')} or ${xs.at(-1)}`);

/** Edit distance with adjacent transpositions (optimal string alignment). */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/** The candidate a typo most likely meant: the only one it prefixes, or the closest within a third of its length. */
export function nearest(word: string, candidates: readonly string[]): string | undefined {
  if (word === '') return undefined;
  const prefixed = candidates.filter((c) => c.startsWith(word));
  if (prefixed.length === 1) return prefixed[0];
  let best: string | undefined;
  let bestD = Math.max(1, Math.floor(word.length / 3)) + 1;
  for (const c of candidates) {
    const dist = distance(word, c);
    if (dist < bestD) [best, bestD] = [c, dist];
  }
  return best;
}

/** " (did you mean --x?)" or "". */
function didYouMean(word: string, candidates: readonly string[], prefix: string): string {
  const n = nearest(word, candidates);
  return n === undefined ? '' : ` (did you mean ${prefix}${n}?)`;
}

/** Where a flag's value came from, as the user would name it in an error. */
const source = (name: string, from: 'argv' | 'env' | 'default'): string => (from === 'env' ? envName(name) : `--${name}`);

/**
 * The command's flags from argv, then the environment (PDSERVE_<FLAG>), then the defaults; every value and
 * every rule between flags checked here, so a command's run() starts only with flags it can use.
 */
export function parseFlags(spec: CommandSpec, argv: readonly string[]): Flags | 'help' {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {
    help: { type: 'boolean', short: 'h' },
  };
  for (const [name, f] of Object.entries(spec.flags))
    options[name] = { type: f.type, ...(f.short ? { short: f.short } : {}), ...(f.multiple ? { multiple: true } : {}) };
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options, allowPositionals: spec.positionals === true, strict: true });
  } catch (err) {
    const message = (err as Error).message.split('\n')[0]!;
    const unknown = /^Unknown option '--?([^']+)'/.exec(message)?.[1];
    const ambiguous = /^Option '(--[^']+)' argument is ambiguous/.exec(message)?.[1];
    const hint =
      unknown !== undefined
        ? didYouMean(unknown, Object.keys(spec.flags), '--')
        : ambiguous !== undefined
          ? ` (a value starting with - goes as ${ambiguous}=-1)`
          : '';
    throw new UsageError(`${message.replace(/\. To specify a positional argument.*$/, '')}${hint} (see: pdserve ${spec.name} --help)`);
  }
  if (parsed.values['help']) return 'help';
  const values: Record<string, string | boolean | readonly string[] | undefined> = {};
  for (const [name, f] of Object.entries(spec.flags)) {
    const given = parsed.values[name] as string | boolean | undefined;
    const env = process.env[envName(name)];
    if (f.multiple) {
      // A repeatable flag: every value from argv, else the environment's comma-separated list.
      const list =
        given !== undefined
          ? (given as unknown as string[])
          : env === undefined
            ? []
            : env
                .split(',')
                .map((s) => s.trim())
                .filter((s) => s !== '');
      if (f.value !== undefined) {
        for (const item of list) {
          const problem = checkValue(f.value, item);
          if (problem !== undefined) throw new UsageError(`${source(name, given !== undefined ? 'argv' : 'env')} ${problem}`);
        }
      }
      values[name] = list;
      continue;
    }
    const from = given !== undefined ? 'argv' : env !== undefined ? 'env' : 'default';
    let v: string | boolean | undefined = given ?? env ?? f.default;
    if (f.type === 'boolean' && from === 'env') {
      if (!['1', 'true', '0', 'false', ''].includes(env!))
        throw new UsageError(`${envName(name)} must be 1, true, 0 or false, got "${env}"`);
      v = env === '1' || env === 'true';
    }
    if (typeof v === 'string' && f.value !== undefined) {
      const problem = checkValue(f.value, v);
      if (problem !== undefined) throw new UsageError(`${source(name, from)} ${problem}`);
    }
    if (f.required && (v === undefined || v === '')) throw new UsageError(`--${name} is required (see: pdserve ${spec.name} --help)`);
    values[name] = v;
  }
  const flags = new Flags(values, parsed.positionals);
  spec.check?.(flags);
  return flags;
}

/** Every flag can also come from the environment: --kv-cache-bytes ⇔ PDSERVE_KV_CACHE_BYTES. */
export function envName(flag: string): string {
  return `PDSERVE_${flag.toUpperCase().replace(/-/g, '_')}`;
}

/** How --help names a flag's value: N, SIZE, URL, on|off, ... */
function placeholder(v: FlagValue | undefined): string {
  switch (v?.kind) {
    case 'int':
      return 'N';
    case 'number':
      return 'X';
    case 'bytes':
      return 'SIZE';
    case 'choice':
      return v.choices.join('|').length <= 24 ? v.choices.join('|') : 'NAME';
    case 'list':
      return 'A,B';
    case 'url':
      return 'URL';
    case 'custom':
      return v.placeholder;
    default:
      return 'VALUE';
  }
}

/** A default as --help shows it: sizes as 256M. */
function shownDefault(f: FlagSpec): string {
  if (f.value?.kind === 'bytes' && typeof f.default === 'string') {
    const n = parseBytes(f.default);
    if (n !== undefined) return formatBytes(n);
  }
  return String(f.default);
}

export function commandHelp(spec: CommandSpec): string {
  const lines = [`${spec.summary}`, '', `Usage: pdserve ${spec.usage}`, '', 'Flags:'];
  const left = (name: string, f: FlagSpec): string => `--${name}${f.type === 'string' ? ` ${placeholder(f.value)}` : ''}`;
  const width = Math.max(...Object.entries(spec.flags).map(([n, f]) => left(n, f).length), 6) + 2;
  for (const [name, f] of Object.entries(spec.flags)) {
    const def = f.default !== undefined && f.default !== false ? ` (default ${shownDefault(f)})` : '';
    lines.push(`  ${left(name, f).padEnd(width)}${f.help}${f.required ? ' (required)' : ''}${def}`);
  }
  lines.push(`  ${'--help'.padEnd(width)}show this help`);
  lines.push('', 'Each flag may also be set in the environment: --kv-cache-bytes 1G is PDSERVE_KV_CACHE_BYTES=1G (the flag wins).');
  return lines.join('\n');
}
