// The edge's flags — API keys, per-key limits, server timeouts and caps, cache isolation — shared by every
// command that serves the OpenAI API (serve, start, gateway), and the EdgeOptions they make.
import { readFileSync } from 'node:fs';
import { EDGE_DEFAULTS, parseKeyFile, TOOL_CALL_PARSERS, type EdgeOptions, type ToolCallParserName } from '@pdserve/api';
import { int, num, oneOf, UsageError, type Flags, type FlagSpec } from '../args';

export const EDGE_FLAGS: Readonly<Record<string, FlagSpec>> = {
  'api-key': {
    type: 'string',
    multiple: true,
    help: 'an API key /v1/* requests must present (Authorization: Bearer KEY or x-api-key: KEY); repeatable; PDSERVE_API_KEY takes a comma-separated list',
  },
  'api-key-file': { type: 'string', help: 'a file of API keys, one per line (blank lines and # comments skipped), e.g. a mounted Secret' },
  'rate-limit': {
    type: 'string',
    help: 'requests per second per API key (per client address without keys), as a token bucket; default none',
    value: num({ above: 0 }),
  },
  'rate-limit-burst': {
    type: 'string',
    help: 'requests a key may send at once after being idle (the bucket size); default one second of --rate-limit',
    value: int(1),
  },
  'max-concurrent-per-key': {
    type: 'string',
    help: 'requests in flight per API key (per client address without keys); default none',
    value: int(1),
  },
  'isolate-cache-per-key': {
    type: 'boolean',
    help: "salt each request's prefix cache with its API key: no key ever gets a cache hit on another key's prompt",
  },
  'headers-timeout-ms': {
    type: 'string',
    help: 'time a client has to send request headers before 408 (ms)',
    default: String(EDGE_DEFAULTS.headersTimeoutMs),
    value: int(1),
  },
  'request-timeout-ms': {
    type: 'string',
    help: 'time a client has to send a whole request, body included (ms)',
    default: String(EDGE_DEFAULTS.requestTimeoutMs),
    value: int(1),
  },
  'keep-alive-timeout-ms': {
    type: 'string',
    help: 'how long an idle keep-alive connection stays open (ms)',
    default: String(EDGE_DEFAULTS.keepAliveTimeoutMs),
    value: int(1),
  },
  'max-connections': {
    type: 'string',
    help: 'most open HTTP connections; more are closed at once',
    default: String(EDGE_DEFAULTS.maxConnections),
    value: int(1),
  },
  'write-timeout-ms': {
    type: 'string',
    help: 'how long a response write may wait for a client that stopped reading before its request is aborted and its KV freed (ms)',
    default: String(EDGE_DEFAULTS.writeTimeoutMs),
    value: int(1),
  },
  'max-prompt-chars': {
    type: 'string',
    help: "longest prompt in characters, refused before tokenizing; default 16 per token of the model's context",
    value: int(1),
  },
  'tool-call-parser': {
    type: 'string',
    help: "how tool calls are read from the model's text under tool_choice auto: hermes (<tool_call>{...}</tool_call>, Qwen and Hermes models), llama3_json (a bare JSON call, Llama 3.x), or auto (by config.json's model_type: llama → llama3_json, others hermes)",
    default: 'auto',
    value: oneOf('auto', ...TOOL_CALL_PARSERS),
  },
};

/** The API keys of --api-key and --api-key-file, together. */
export function apiKeysOf(f: Flags): string[] {
  const keys = [...f.list('api-key')];
  const file = f.str('api-key-file');
  if (file !== undefined && file !== '') {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new UsageError(`--api-key-file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    const fromFile = parseKeyFile(text);
    if (fromFile.length === 0) throw new UsageError(`--api-key-file ${file} holds no key`);
    keys.push(...fromFile);
  }
  const bad = keys.find((k) => k === '' || /\s/.test(k));
  if (bad !== undefined) throw new UsageError('API keys must be non-empty and hold no whitespace');
  return keys;
}

/**
 * CommandSpec.check for the edge flags: the rules between them. The key file is read when the command runs
 * (edgeOptionsOf, first thing), since a check may run where the file is not (e.g. rendering the chart).
 */
export function checkEdge(f: Flags): void {
  const keys = f.list('api-key').length > 0 || (f.str('api-key-file') ?? '') !== '';
  if (f.bool('isolate-cache-per-key') && !keys)
    throw new UsageError('--isolate-cache-per-key needs API keys (--api-key or --api-key-file)');
  if (f.str('rate-limit-burst') !== undefined && f.str('rate-limit') === undefined)
    throw new UsageError('--rate-limit-burst needs --rate-limit');
}

/** What the edge flags ask of the HTTP server; reads the key file. */
export function edgeOptionsOf(f: Flags): EdgeOptions {
  checkEdge(f);
  const apiKeys = apiKeysOf(f);
  const isolate = f.bool('isolate-cache-per-key');
  const rate = f.num('rate-limit');
  const burst = f.int('rate-limit-burst', 1);
  return {
    apiKeys,
    isolateCachePerKey: isolate,
    limits: { ratePerSecond: rate, burst, maxConcurrent: f.int('max-concurrent-per-key', 1) },
    headersTimeoutMs: f.int('headers-timeout-ms', 1),
    requestTimeoutMs: f.int('request-timeout-ms', 1),
    keepAliveTimeoutMs: f.int('keep-alive-timeout-ms', 1),
    maxConnections: f.int('max-connections', 1),
    writeTimeoutMs: f.int('write-timeout-ms', 1),
    maxPromptChars: f.int('max-prompt-chars', 1),
    toolCallParser: toolCallParserOf(f),
  };
}

/** --tool-call-parser; undefined for auto (each model's default). */
function toolCallParserOf(f: Flags): ToolCallParserName | undefined {
  const v = f.str('tool-call-parser');
  return (TOOL_CALL_PARSERS as readonly string[]).includes(v ?? '') ? (v as ToolCallParserName) : undefined;
}

/**
 * The edge flags as arguments and environment for a gateway process this one starts (a multi-process
 * serve): keys travel in the child's environment, never on its command line, where `ps` shows them.
 */
export function edgeForChild(f: Flags): { readonly args: string[]; readonly env: Record<string, string> } {
  const args: string[] = [];
  for (const name of Object.keys(EDGE_FLAGS)) {
    if (name === 'api-key') continue;
    const spec = EDGE_FLAGS[name]!;
    if (spec.type === 'boolean') {
      if (f.bool(name)) args.push(`--${name}`);
    } else {
      const v = f.str(name);
      if (v !== undefined) args.push(`--${name}`, v);
    }
  }
  const keys = f.list('api-key');
  return { args, env: keys.length > 0 ? { PDSERVE_API_KEY: keys.join(',') } : {} };
}
