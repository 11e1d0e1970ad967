import {
  boundsProblem,
  MAX_LOGPROBS,
  MAX_STOP_STRINGS,
  SAMPLING_BOUNDS,
  stopProblem,
  stopTokenIdsProblem,
  SERVICE_TIERS,
  type Bounds,
  type ServiceTier,
  type ChatMessage,
  type SamplingProblem,
} from './deps';
import { ApiError } from './errors';

// Request bodies arrive as `unknown`; these functions check every field once and return typed values.
// Value bounds of sampling fields are the shared ones (SAMPLING_BOUNDS): a worker checks what arrives over
// gRPC against the same. Model-dependent checks (token id ranges, context length) happen when the model is
// known (prompt.ts).

/** Most choices per prompt (`n`); each choice is a separate engine request. */
export const MAX_N = 16;
/** Most prompts in one completions request (a batch of prompts). */
export const MAX_PROMPTS = 64;
/** Most engine requests (prompts × n) one HTTP request may start. */
export const MAX_CHOICES = 128;
/** Longest `cache_salt`, in UTF-16 code units. */
export const MAX_CACHE_SALT_LENGTH = 1024;
export { MAX_LOGPROBS, MAX_STOP_STRINGS };

const CHAT_ROLES: ReadonlySet<string> = new Set(['system', 'user', 'assistant', 'tool', 'developer']);

/** Sampling fields common to both endpoints, checked but not yet resolved against a model. */
export interface SamplingOptions {
  readonly temperature: number;
  readonly topP: number;
  readonly topK: number;
  readonly minP: number;
  readonly presencePenalty: number;
  readonly frequencyPenalty: number;
  readonly repetitionPenalty: number;
  readonly stop: readonly string[];
  readonly stopTokenIds: readonly number[];
  readonly ignoreEos: boolean;
  readonly seed?: number;
  /** Undefined means the endpoint's default (see resolveMaxTokens). */
  readonly maxTokens?: number;
  /** Top alternatives per token; undefined means no logprobs. */
  readonly logprobs?: number;
}

interface RequestBase {
  /** Undefined: the server's only (or first) model, as vLLM does. */
  readonly model?: string;
  readonly n: number;
  readonly stream: boolean;
  readonly includeUsage: boolean;
  readonly user?: string;
  /** Requests share cached prompt blocks only when their salts are equal (vLLM's cache_salt); absent = none. */
  readonly cacheSalt?: string;
  /** OpenAI's service_tier, as a class: auto = default, scale = priority; absent = default. */
  readonly serviceTier?: ServiceTier;
  readonly sampling: SamplingOptions;
}

export type PromptInput =
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'tokens'; readonly ids: readonly number[] };

export interface CompletionRequest extends RequestBase {
  readonly prompts: readonly PromptInput[];
  readonly echo: boolean;
}

export interface ChatRequest extends RequestBase {
  readonly messages: readonly ChatMessage[];
}

type JsonObject = Readonly<Record<string, unknown>>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'an integer' : 'a number';
  if (typeof v === 'object') return 'an object';
  return `a ${typeof v}`;
}

function typeError(param: string, expected: string, got: unknown): ApiError {
  return ApiError.invalid(
    `Invalid type for '${param}': expected ${expected}, but got ${describe(got)} instead.`,
    param,
    'invalid_type',
  );
}

function checkRange(param: string, v: number, b: Bounds): number {
  const problem = boundsProblem(param, v, b);
  return problem === undefined ? v : fail(ApiError.invalid(problem, param));
}

function fail(e: ApiError): never {
  throw e;
}

/** Reads optional fields of one JSON object; null counts as absent, as in the OpenAI API. */
class Fields {
  constructor(
    private readonly obj: JsonObject,
    private readonly prefix = '',
  ) {}

  param(name: string): string {
    return this.prefix + name;
  }

  raw(name: string): unknown {
    const v = Object.hasOwn(this.obj, name) ? this.obj[name] : undefined;
    return v === null ? undefined : v;
  }

  string(name: string): string | undefined {
    const v = this.raw(name);
    if (v === undefined || typeof v === 'string') return v;
    throw typeError(this.param(name), 'a string', v);
  }

  boolean(name: string): boolean | undefined {
    const v = this.raw(name);
    if (v === undefined || typeof v === 'boolean') return v;
    throw typeError(this.param(name), 'a boolean', v);
  }

  number(name: string, range: Bounds = {}): number | undefined {
    const v = this.raw(name);
    if (v === undefined) return undefined;
    if (typeof v !== 'number') throw typeError(this.param(name), 'a number', v);
    return checkRange(this.param(name), v, range);
  }

  integer(name: string, range: Bounds = {}): number | undefined {
    const v = this.raw(name);
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw typeError(this.param(name), 'an integer', v);
    return checkRange(this.param(name), v, range);
  }
}

function asObject(body: unknown): Fields {
  if (!isObject(body)) throw ApiError.invalid(`The request body must be a JSON object, got ${describe(body)}.`);
  return new Fields(body);
}

function parseStop(f: Fields): string[] {
  const v = f.raw('stop');
  if (v === undefined) return [];
  const list: unknown[] = typeof v === 'string' ? [v] : Array.isArray(v) ? v : fail(typeError('stop', 'a string or an array of strings', v));
  const stop = list.map((s, i) => (typeof s === 'string' ? s : fail(typeError(`stop[${i}]`, 'a string', s))));
  refuse(stopProblem(stop));
  return stop.filter((s) => s !== '');
}

/** A problem the shared sampling checks found, as the 400 the client gets. */
function refuse(problem: SamplingProblem | undefined): void {
  if (problem !== undefined) throw ApiError.invalid(problem.message, problem.param);
}

function parseTokenIds(param: string, v: unknown, opts: { readonly nonEmpty: boolean }): number[] {
  if (!Array.isArray(v)) throw typeError(param, 'an array of token ids', v);
  if (opts.nonEmpty && v.length === 0) throw ApiError.invalid(`'${param}' must not be empty.`, param);
  return v.map((id: unknown, i) => {
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) {
      throw ApiError.invalid(`Invalid value for '${param}[${i}]': token ids are non-negative integers, got ${JSON.stringify(id)}.`, param);
    }
    return id;
  });
}

function parseStreamOptions(f: Fields, stream: boolean): boolean {
  const v = f.raw('stream_options');
  if (v === undefined) return false;
  if (!isObject(v)) throw typeError('stream_options', 'an object', v);
  const includeUsage = new Fields(v, 'stream_options.').boolean('include_usage') ?? false;
  return stream && includeUsage;
}

/** Fields whose silent omission would change the result; present with a non-default value ⇒ 400. */
function rejectUnsupported(f: Fields, n: number): void {
  const unsupported = (param: string, what: string): never =>
    fail(ApiError.invalid(`'${param}' is not supported by this server (${what}).`, param, 'unsupported_parameter'));
  const bias = f.raw('logit_bias');
  if (bias !== undefined && !(isObject(bias) && Object.keys(bias).length === 0)) unsupported('logit_bias', 'logit biasing');
  const tools = f.raw('tools');
  if (tools !== undefined && !(Array.isArray(tools) && tools.length === 0)) unsupported('tools', 'tool calling');
  const format = f.raw('response_format');
  if (format !== undefined && !(isObject(format) && format['type'] === 'text')) unsupported('response_format', 'only {"type": "text"}');
  const suffix = f.raw('suffix');
  if (suffix !== undefined && suffix !== '') unsupported('suffix', 'insertion');
  const bestOf = f.integer('best_of', { min: 1 });
  if (bestOf !== undefined && bestOf !== n) unsupported('best_of', 'best_of must equal n');
}

function parseBase(f: Fields, maxTokens: number | undefined, logprobs: number | undefined): RequestBase {
  const n = f.integer('n', { min: 1, max: MAX_N }) ?? 1;
  rejectUnsupported(f, n);
  const stream = f.boolean('stream') ?? false;
  const model = f.string('model');
  if (model === '') throw ApiError.invalid(`'model' must not be empty.`, 'model');
  const topK = f.integer('top_k', SAMPLING_BOUNDS.top_k) ?? 0;
  const stopTokenIds = f.raw('stop_token_ids');
  const ids = stopTokenIds === undefined ? [] : parseTokenIds('stop_token_ids', stopTokenIds, { nonEmpty: false });
  refuse(stopTokenIdsProblem(ids));
  const sampling: SamplingOptions = {
    temperature: f.number('temperature', SAMPLING_BOUNDS.temperature) ?? 1,
    topP: f.number('top_p', SAMPLING_BOUNDS.top_p) ?? 1,
    topK: topK === -1 ? 0 : topK,
    minP: f.number('min_p', SAMPLING_BOUNDS.min_p) ?? 0,
    presencePenalty: f.number('presence_penalty', SAMPLING_BOUNDS.presence_penalty) ?? 0,
    frequencyPenalty: f.number('frequency_penalty', SAMPLING_BOUNDS.frequency_penalty) ?? 0,
    repetitionPenalty: f.number('repetition_penalty', SAMPLING_BOUNDS.repetition_penalty) ?? 1,
    stop: parseStop(f),
    stopTokenIds: ids,
    ignoreEos: f.boolean('ignore_eos') ?? false,
    // Choice i of a prompt samples with seed + i, which must stay in bounds too.
    seed: f.integer('seed', { ...SAMPLING_BOUNDS.seed, max: SAMPLING_BOUNDS.seed.max - MAX_N }),
    maxTokens,
    logprobs,
  };
  return {
    model,
    n,
    stream,
    includeUsage: parseStreamOptions(f, stream),
    user: f.string('user'),
    cacheSalt: parseCacheSalt(f),
    serviceTier: parseServiceTier(f),
    sampling,
  };
}

function parseServiceTier(f: Fields): ServiceTier | undefined {
  const tier = f.string('service_tier');
  if (tier === undefined || tier === 'auto') return undefined;
  if (tier === 'scale') return 'priority';
  if (!(SERVICE_TIERS as readonly string[]).includes(tier)) {
    throw ApiError.invalid(`Invalid 'service_tier': expected one of auto, default, flex, priority, scale; got '${tier}'.`, 'service_tier');
  }
  return tier as ServiceTier;
}

function parseCacheSalt(f: Fields): string | undefined {
  const salt = f.string('cache_salt');
  if (salt === undefined) return undefined;
  if (salt === '') throw ApiError.invalid(`'cache_salt' must be a non-empty string if provided.`, 'cache_salt');
  if (salt.length > MAX_CACHE_SALT_LENGTH) throw ApiError.invalid(`'cache_salt' is longer than ${MAX_CACHE_SALT_LENGTH} characters.`, 'cache_salt');
  return salt;
}

function parsePrompt(v: unknown): PromptInput[] {
  if (v === undefined) throw ApiError.invalid(`Missing required parameter: 'prompt'.`, 'prompt', 'missing_required_parameter');
  const emptyPrompt = (): never => fail(ApiError.invalid(`'prompt' must not be empty.`, 'prompt'));
  if (typeof v === 'string') return v === '' ? emptyPrompt() : [{ kind: 'text', text: v }];
  if (!Array.isArray(v)) throw typeError('prompt', 'a string, an array of strings, or token ids', v);
  if (v.length === 0) return emptyPrompt();
  let prompts: PromptInput[];
  if (v.every((x) => typeof x === 'number')) {
    prompts = [{ kind: 'tokens', ids: parseTokenIds('prompt', v, { nonEmpty: true }) }];
  } else if (v.every((x) => typeof x === 'string')) {
    prompts = v.map((text: string, i) => (text === '' ? fail(ApiError.invalid(`'prompt[${i}]' must not be empty.`, 'prompt')) : { kind: 'text', text }));
  } else if (v.every((x) => Array.isArray(x))) {
    prompts = v.map((ids: unknown, i) => ({ kind: 'tokens', ids: parseTokenIds(`prompt[${i}]`, ids, { nonEmpty: true }) }));
  } else {
    throw typeError('prompt', 'a string, an array of strings, an array of token ids, or an array of those', v);
  }
  if (prompts.length > MAX_PROMPTS) throw ApiError.invalid(`'prompt' may hold at most ${MAX_PROMPTS} prompts.`, 'prompt');
  return prompts;
}

export function parseCompletionRequest(body: unknown): CompletionRequest {
  const f = asObject(body);
  const prompts = parsePrompt(f.raw('prompt'));
  const logprobs = f.integer('logprobs', SAMPLING_BOUNDS.logprobs);
  const echo = f.boolean('echo') ?? false;
  if (echo && logprobs !== undefined) {
    throw ApiError.invalid(`'echo' together with 'logprobs' needs prompt logprobs, which this server does not compute.`, 'echo', 'unsupported_parameter');
  }
  const base = parseBase(f, f.integer('max_tokens', SAMPLING_BOUNDS.max_tokens), logprobs);
  checkChoiceCount(prompts.length * base.n);
  return { ...base, prompts, echo };
}

function parseContent(v: unknown, param: string, role: string): string {
  if (typeof v === 'string') return v;
  if (v === undefined) {
    // An assistant turn that only made tool calls has no content.
    if (role === 'assistant') return '';
    throw ApiError.invalid(`Missing required parameter: '${param}'.`, param, 'missing_required_parameter');
  }
  if (!Array.isArray(v)) throw typeError(param, 'a string or an array of content parts', v);
  return v
    .map((part: unknown, i) => {
      const p = `${param}[${i}]`;
      if (!isObject(part)) throw typeError(p, 'an object', part);
      const pf = new Fields(part, `${p}.`);
      const type = pf.string('type');
      if (type !== 'text') {
        throw ApiError.invalid(`Unsupported content part type ${JSON.stringify(type ?? null)} in '${p}'; only 'text' is supported.`, `${p}.type`);
      }
      const text = pf.string('text');
      if (text === undefined) throw ApiError.invalid(`Missing required parameter: '${p}.text'.`, `${p}.text`, 'missing_required_parameter');
      return text;
    })
    .join('\n');
}

function parseMessages(v: unknown): ChatMessage[] {
  if (v === undefined) throw ApiError.invalid(`Missing required parameter: 'messages'.`, 'messages', 'missing_required_parameter');
  if (!Array.isArray(v)) throw typeError('messages', 'an array', v);
  if (v.length === 0) throw ApiError.invalid(`'messages' must hold at least one message.`, 'messages');
  return v.map((m: unknown, i) => {
    const param = `messages[${i}]`;
    if (!isObject(m)) throw typeError(param, 'an object', m);
    const f = new Fields(m, `${param}.`);
    const role = f.string('role');
    if (role === undefined) throw ApiError.invalid(`Missing required parameter: '${param}.role'.`, `${param}.role`, 'missing_required_parameter');
    if (!CHAT_ROLES.has(role)) {
      throw ApiError.invalid(`Invalid value for '${param}.role': ${JSON.stringify(role)}; expected one of ${[...CHAT_ROLES].join(', ')}.`, `${param}.role`);
    }
    const content = parseContent(f.raw('content'), `${param}.content`, role);
    const name = f.string('name');
    // Chat templates know 'system'; OpenAI's 'developer' role means the same to open models.
    const mapped = role === 'developer' ? 'system' : role;
    return name === undefined ? { role: mapped, content } : { role: mapped, content, name };
  });
}

export function parseChatRequest(body: unknown): ChatRequest {
  const f = asObject(body);
  const messages = parseMessages(f.raw('messages'));
  const wantLogprobs = f.boolean('logprobs') ?? false;
  const top = f.integer('top_logprobs', SAMPLING_BOUNDS.logprobs);
  if (top !== undefined && top > 0 && !wantLogprobs) {
    throw ApiError.invalid(`'top_logprobs' requires 'logprobs' to be true.`, 'top_logprobs');
  }
  // max_completion_tokens replaces the deprecated max_tokens; it wins when both are sent.
  const maxCompletionTokens = f.integer('max_completion_tokens', SAMPLING_BOUNDS.max_tokens);
  const legacyMaxTokens = f.integer('max_tokens', SAMPLING_BOUNDS.max_tokens);
  const maxTokens = maxCompletionTokens ?? legacyMaxTokens;
  const base = parseBase(f, maxTokens, wantLogprobs ? (top ?? 0) : undefined);
  checkChoiceCount(base.n);
  return { ...base, messages };
}

function checkChoiceCount(count: number): void {
  if (count > MAX_CHOICES) throw ApiError.invalid(`The request asks for ${count} choices (prompts × n); the limit is ${MAX_CHOICES}.`, 'n');
}
