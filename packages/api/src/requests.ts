import {
  boundsProblem,
  GrammarError,
  grammarFor,
  logitBiasProblem,
  MAX_LOGPROBS,
  MAX_STOP_STRINGS,
  SAMPLING_BOUNDS,
  stopProblem,
  stopTokenIdsProblem,
  SERVICE_TIERS,
  type Bounds,
  type ServiceTier,
  type ChatMessage,
  type ChatToolCall,
  type SamplingProblem,
  type StructuredOutput,
} from './deps';
import { ApiError } from './errors';
import { toolCallConstraint, type ToolChoice, type ToolSpec } from './tools';

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
/** `priority` travels as a 32-bit integer (worker.proto). */
export const PRIORITY_BOUNDS: Bounds = { min: -(2 ** 31), max: 2 ** 31 - 1, integer: true };

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
  readonly logitBias?: Readonly<Record<number, number>>;
  /** Must not exceed the resolved max_tokens (checked once that is known). */
  readonly minTokens?: number;
  /** response_format json_object / json_schema, already known to compile to a grammar. */
  readonly structuredOutput?: StructuredOutput;
  /** Alternatives per prompt token to compute (echo with logprobs, or prompt_logprobs); undefined = none. */
  readonly promptLogprobs?: number;
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
  /** vLLM's priority: lower runs first in the engine's queue; default 0. */
  readonly priority: number;
  /** vLLM's prompt_logprobs: the response carries `prompt_logprobs` with this many alternatives per token. */
  readonly promptLogprobs?: number;
  /** OpenAI's service_tier, as a class: auto = default, scale = priority; absent = default. */
  readonly serviceTier?: ServiceTier;
  readonly sampling: SamplingOptions;
}

export type PromptInput = { readonly kind: 'text'; readonly text: string } | { readonly kind: 'tokens'; readonly ids: readonly number[] };

export interface CompletionRequest extends RequestBase {
  readonly prompts: readonly PromptInput[];
  readonly echo: boolean;
}

export interface ChatRequest extends RequestBase {
  readonly messages: readonly ChatMessage[];
  /** Offered functions; empty when none (or tool_choice none). */
  readonly tools: readonly ToolSpec[];
  readonly toolChoice: ToolChoice;
  /** Extra chat template variables (vLLM's chat_template_kwargs). */
  readonly chatTemplateKwargs?: Readonly<Record<string, unknown>>;
  /** End the prompt with the assistant's turn header; default true. */
  readonly addGenerationPrompt: boolean;
  /** Continue the final assistant message instead of starting a new one; default false. */
  readonly continueFinalMessage: boolean;
  /** parallel_tool_calls: false allows one call per reply (the first parsed, or a one-item array under required). */
  readonly parallelToolCalls: boolean;
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
  return ApiError.invalid(`Invalid type for '${param}': expected ${expected}, but got ${describe(got)} instead.`, param, 'invalid_type');
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
  const list: unknown[] =
    typeof v === 'string' ? [v] : Array.isArray(v) ? v : fail(typeError('stop', 'a string or an array of strings', v));
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
  // As OpenAI answers: the options describe a stream, so they need one.
  if (!stream) throw ApiError.invalid(`'stream_options' is only allowed when 'stream' is true.`, 'stream_options');
  const includeUsage = new Fields(v, 'stream_options.').boolean('include_usage') ?? false;
  return stream && includeUsage;
}

/** Fields whose silent omission would change the result; present with a non-default value ⇒ 400. */
function rejectUnsupported(f: Fields, n: number, endpoint: 'chat' | 'completions'): void {
  const unsupported = (param: string, what: string): never =>
    fail(ApiError.invalid(`'${param}' is not supported by this server (${what}).`, param, 'unsupported_parameter'));
  const tools = f.raw('tools');
  if (endpoint === 'completions' && tools !== undefined && !(Array.isArray(tools) && tools.length === 0))
    unsupported('tools', 'tool calling is a chat feature');
  const suffix = f.raw('suffix');
  if (suffix !== undefined && suffix !== '') unsupported('suffix', 'insertion');
  const bestOf = f.integer('best_of', { min: 1 });
  if (bestOf !== undefined && bestOf !== n) unsupported('best_of', 'best_of must equal n');
  // vLLM's extras that would change the output if they were ignored.
  if (f.boolean('include_stop_str_in_output') === true) unsupported('include_stop_str_in_output', 'stop strings are never included');
  if (f.boolean('skip_special_tokens') === false) unsupported('skip_special_tokens', 'special tokens are always skipped in the text');
  if (f.raw('truncate_prompt_tokens') !== undefined) unsupported('truncate_prompt_tokens', 'prompts are never truncated');
  for (const name of ['guided_regex', 'guided_choice', 'guided_grammar']) {
    if (f.raw(name) !== undefined) unsupported(name, 'only JSON schemas constrain the output: use response_format');
  }
}

function parseBase(
  f: Fields,
  maxTokens: number | undefined,
  logprobs: number | undefined,
  endpoint: 'chat' | 'completions',
  echoLogprobs?: number,
): RequestBase {
  const n = f.integer('n', { min: 1, max: MAX_N }) ?? 1;
  const promptLogprobs = f.integer('prompt_logprobs', SAMPLING_BOUNDS.prompt_logprobs);
  rejectUnsupported(f, n, endpoint);
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
    logitBias: parseLogitBias(f),
    minTokens: f.integer('min_tokens', SAMPLING_BOUNDS.min_tokens),
    structuredOutput: parseStructuredOutput(f),
    // echo with logprobs shows the prompt's tokens with as many alternatives as the output's.
    promptLogprobs: Math.max(promptLogprobs ?? -1, echoLogprobs ?? -1) < 0 ? undefined : Math.max(promptLogprobs ?? 0, echoLogprobs ?? 0),
  };
  return {
    model,
    n,
    stream,
    includeUsage: parseStreamOptions(f, stream),
    user: f.string('user'),
    cacheSalt: parseCacheSalt(f),
    priority: f.integer('priority', PRIORITY_BOUNDS) ?? 0,
    promptLogprobs,
    serviceTier: parseServiceTier(f),
    sampling,
  };
}

function parseLogitBias(f: Fields): Readonly<Record<number, number>> | undefined {
  const v = f.raw('logit_bias');
  if (v === undefined) return undefined;
  if (!isObject(v)) throw typeError('logit_bias', 'an object mapping token ids to biases', v);
  refuse(logitBiasProblem(v as Readonly<Record<number, number>>));
  const bias: Record<number, number> = {};
  for (const [k, b] of Object.entries(v)) bias[Number(k)] = b as number;
  return Object.keys(bias).length === 0 ? undefined : bias;
}

/**
 * The output constraint: OpenAI's response_format, or vLLM's older spellings of a JSON schema
 * (`guided_json`, `structured_outputs.json`), at most one of them.
 */
function parseStructuredOutput(f: Fields): StructuredOutput | undefined {
  const fromFormat = parseResponseFormat(f);
  const guided = f.raw('guided_json');
  const so = f.raw('structured_outputs');
  if (so !== undefined && !isObject(so)) throw typeError('structured_outputs', 'an object', so);
  if (so !== undefined) {
    const other = Object.keys(so).find((k) => k !== 'json' && so[k] !== null && so[k] !== undefined);
    if (other !== undefined) {
      throw ApiError.invalid(
        `'structured_outputs.${other}' is not supported by this server (only JSON schemas constrain the output).`,
        `structured_outputs.${other}`,
        'unsupported_parameter',
      );
    }
  }
  const vllm: [string, unknown][] = [
    ['guided_json', guided],
    ['structured_outputs.json', so?.['json'] ?? undefined],
  ];
  const given = vllm.filter(([, v]) => v !== undefined && v !== null);
  if (given.length === 0) return fromFormat;
  const [param, raw] = given[0]!;
  if (given.length > 1 || fromFormat !== undefined)
    throw ApiError.invalid(`'${param}' cannot be combined with another output constraint.`, param);
  let schema: unknown = raw;
  if (typeof raw === 'string') {
    try {
      schema = JSON.parse(raw);
    } catch {
      throw ApiError.invalid(`'${param}' is not valid JSON.`, param);
    }
  }
  if (!isObject(schema)) throw typeError(param, 'a JSON schema object', schema);
  return checkedConstraint({ kind: 'json_schema', schema }, param);
}

/**
 * OpenAI's response_format: text (no constraint), json_object, or json_schema {name, schema, strict}.
 * The schema is converted to a grammar here (no vocabulary needed), so one the engine cannot enforce is a
 * 400 naming the unsupported part before any engine sees it.
 */
function parseResponseFormat(f: Fields): StructuredOutput | undefined {
  const v = f.raw('response_format');
  if (v === undefined) return undefined;
  if (!isObject(v)) throw typeError('response_format', 'an object', v);
  const rf = new Fields(v, 'response_format.');
  const type = rf.string('type');
  if (type === 'text') return undefined;
  if (type === 'json_object') return { kind: 'json_object' };
  if (type !== 'json_schema') {
    throw ApiError.invalid(
      `Invalid value for 'response_format.type': ${JSON.stringify(type ?? null)}; expected text, json_object or json_schema.`,
      'response_format.type',
    );
  }
  const js = rf.raw('json_schema');
  if (!isObject(js)) throw typeError('response_format.json_schema', 'an object', js);
  const jf = new Fields(js, 'response_format.json_schema.');
  jf.string('name');
  const schema = jf.raw('schema');
  if (schema === undefined) return checkedConstraint({ kind: 'json_object' });
  if (!isObject(schema) && typeof schema !== 'boolean') throw typeError('response_format.json_schema.schema', 'an object', schema);
  const strict = jf.boolean('strict');
  return checkedConstraint(strict === undefined ? { kind: 'json_schema', schema } : { kind: 'json_schema', schema, strict });
}

/** Schemas already converted (JSON text → the refusal, or undefined when it converts), most recent last. */
const checked = new Map<string, ApiError | undefined>();
/** Schemas remembered by checkedConstraint; a conversion costs ~0.05-3 ms, a lookup a JSON.stringify. */
const CHECKED_CACHE_SIZE = 256;

/**
 * Deepest nesting of objects and arrays a schema may have. JSON.parse takes any depth, but converting,
 * hashing and sending a schema recurse along it: far deeper than any real schema, far below the stack.
 */
export const MAX_SCHEMA_DEPTH = 128;

/** Nesting depth of a JSON value, counted without recursion (the value may be arbitrarily deep). */
function depthOf(v: unknown): number {
  let max = 0;
  const stack: [unknown, number][] = [[v, 1]];
  while (stack.length > 0) {
    const [x, d] = stack.pop()!;
    if (typeof x !== 'object' || x === null) continue;
    max = Math.max(max, d);
    if (max > MAX_SCHEMA_DEPTH) return max;
    for (const child of Object.values(x)) stack.push([child, d + 1]);
  }
  return max;
}

/** `c` if it converts to a grammar; else the converter's reason (which names the part) as a 400. */
export function checkedConstraint(c: StructuredOutput, param = 'response_format'): StructuredOutput {
  if (c.kind === 'json_schema' && depthOf(c.schema) > MAX_SCHEMA_DEPTH) {
    throw ApiError.invalid(
      `Unsupported JSON schema in '${param}': it nests deeper than ${MAX_SCHEMA_DEPTH} levels.`,
      param,
      'unsupported_schema',
    );
  }
  const key = `${param}\0${JSON.stringify(c)}`;
  let refusal = checked.get(key);
  if (!checked.has(key)) {
    try {
      grammarFor(c);
    } catch (err) {
      if (!(err instanceof GrammarError) || err.code === 'internal') throw err;
      refusal = ApiError.invalid(`Unsupported JSON schema in '${param}': ${err.message}`, param, err.code);
    }
    if (checked.size >= CHECKED_CACHE_SIZE) checked.delete(checked.keys().next().value!);
  } else {
    checked.delete(key);
  }
  checked.set(key, refusal);
  if (refusal !== undefined) throw refusal;
  return c;
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
  if (salt.length > MAX_CACHE_SALT_LENGTH)
    throw ApiError.invalid(`'cache_salt' is longer than ${MAX_CACHE_SALT_LENGTH} characters.`, 'cache_salt');
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
    prompts = v.map((text: string, i) =>
      text === '' ? fail(ApiError.invalid(`'prompt[${i}]' must not be empty.`, 'prompt')) : { kind: 'text', text },
    );
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
  const base = parseBase(f, f.integer('max_tokens', SAMPLING_BOUNDS.max_tokens), logprobs, 'completions', echo ? logprobs : undefined);
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
        throw ApiError.invalid(
          `Unsupported content part type ${JSON.stringify(type ?? null)} in '${p}'; only 'text' is supported.`,
          `${p}.type`,
        );
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
    if (role === undefined)
      throw ApiError.invalid(`Missing required parameter: '${param}.role'.`, `${param}.role`, 'missing_required_parameter');
    if (!CHAT_ROLES.has(role)) {
      throw ApiError.invalid(
        `Invalid value for '${param}.role': ${JSON.stringify(role)}; expected one of ${[...CHAT_ROLES].join(', ')}.`,
        `${param}.role`,
      );
    }
    const content = parseContent(f.raw('content'), `${param}.content`, role);
    const name = f.string('name');
    // Chat templates know 'system'; OpenAI's 'developer' role means the same to open models.
    const mapped = role === 'developer' ? 'system' : role;
    const message: { -readonly [K in keyof ChatMessage]: ChatMessage[K] } = { role: mapped, content };
    if (name !== undefined) message.name = name;
    if (role === 'assistant') {
      const calls = parseToolCalls(f.raw('tool_calls'), `${param}.tool_calls`);
      if (calls.length > 0) message.toolCalls = calls;
    }
    if (role === 'tool') {
      const id = f.string('tool_call_id');
      if (id !== undefined) message.toolCallId = id;
    }
    return message;
  });
}

function parseToolCalls(v: unknown, param: string): ChatToolCall[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw typeError(param, 'an array', v);
  return v.map((c: unknown, i) => {
    const p = `${param}[${i}]`;
    if (!isObject(c)) throw typeError(p, 'an object', c);
    const cf = new Fields(c, `${p}.`);
    const fn = cf.raw('function');
    if (!isObject(fn)) throw typeError(`${p}.function`, 'an object', fn);
    const ff = new Fields(fn, `${p}.function.`);
    const name = ff.string('name');
    if (name === undefined)
      throw ApiError.invalid(`Missing required parameter: '${p}.function.name'.`, `${p}.function.name`, 'missing_required_parameter');
    const args = ff.string('arguments') ?? '{}';
    // Templates expect the arguments as an object (transformers' convention), as vLLM hands them over.
    let parsed: unknown = args;
    try {
      parsed = JSON.parse(args);
    } catch {
      // Kept as the string the client sent; templates print strings as they are.
    }
    return { id: cf.string('id') ?? '', name, arguments: parsed };
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
  const base = parseBase(f, maxTokens, wantLogprobs ? (top ?? 0) : undefined, 'chat');
  checkChoiceCount(base.n);
  const offered = parseTools(f.raw('tools'));
  const toolChoice = parseToolChoice(f.raw('tool_choice'), offered);
  const tools = toolChoice.kind === 'none' ? [] : offered;
  let sampling = base.sampling;
  const parallelToolCalls = f.boolean('parallel_tool_calls') ?? true;
  const constraint = toolCallConstraint(tools, toolChoice, parallelToolCalls);
  if (constraint !== undefined) {
    if (sampling.structuredOutput !== undefined) {
      throw ApiError.invalid(
        `'response_format' cannot be combined with tool_choice '${toolChoice.kind}', which constrains the output itself.`,
        'response_format',
      );
    }
    sampling = { ...sampling, structuredOutput: checkedConstraint(constraint, 'tools') };
  }
  const addGenerationPrompt = f.boolean('add_generation_prompt');
  const continueFinalMessage = f.boolean('continue_final_message') ?? false;
  if (continueFinalMessage && addGenerationPrompt === true) {
    throw ApiError.invalid(`'continue_final_message' and 'add_generation_prompt' cannot both be true.`, 'continue_final_message');
  }
  if (continueFinalMessage && messages[messages.length - 1]!.role !== 'assistant') {
    throw ApiError.invalid(`'continue_final_message' needs the last message to be from the assistant.`, 'continue_final_message');
  }
  const kwargs = f.raw('chat_template_kwargs');
  if (kwargs !== undefined && !isObject(kwargs)) throw typeError('chat_template_kwargs', 'an object', kwargs);
  return {
    ...base,
    sampling,
    messages,
    tools,
    toolChoice,
    chatTemplateKwargs: kwargs,
    addGenerationPrompt: addGenerationPrompt ?? !continueFinalMessage,
    continueFinalMessage,
    parallelToolCalls,
  };
}

/** Function names as OpenAI allows them. */
const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;
/** Most tools in one request. */
export const MAX_TOOLS = 128;

function parseTools(v: unknown): ToolSpec[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw typeError('tools', 'an array', v);
  if (v.length > MAX_TOOLS) throw ApiError.invalid(`'tools' may hold at most ${MAX_TOOLS} tools.`, 'tools');
  const names = new Set<string>();
  return v.map((t: unknown, i) => {
    const param = `tools[${i}]`;
    if (!isObject(t)) throw typeError(param, 'an object', t);
    const tf = new Fields(t, `${param}.`);
    const type = tf.string('type');
    if (type !== 'function')
      throw ApiError.invalid(
        `Invalid value for '${param}.type': ${JSON.stringify(type ?? null)}; only 'function' is supported.`,
        `${param}.type`,
      );
    const fn = tf.raw('function');
    if (!isObject(fn)) throw typeError(`${param}.function`, 'an object', fn);
    const ff = new Fields(fn, `${param}.function.`);
    const name = ff.string('name');
    if (name === undefined)
      throw ApiError.invalid(
        `Missing required parameter: '${param}.function.name'.`,
        `${param}.function.name`,
        'missing_required_parameter',
      );
    if (!TOOL_NAME.test(name))
      throw ApiError.invalid(
        `Invalid '${param}.function.name': ${JSON.stringify(name)}; names are 1-64 letters, digits, '_' or '-'.`,
        `${param}.function.name`,
      );
    if (names.has(name)) throw ApiError.invalid(`Duplicate tool name ${JSON.stringify(name)} in 'tools'.`, `${param}.function.name`);
    names.add(name);
    const description = ff.string('description');
    const parameters = ff.raw('parameters') ?? { type: 'object', properties: {} };
    if (!isObject(parameters)) throw typeError(`${param}.function.parameters`, 'an object', parameters);
    ff.boolean('strict');
    return description === undefined ? { name, parameters, raw: t } : { name, description, parameters, raw: t };
  });
}

function parseToolChoice(v: unknown, tools: readonly ToolSpec[]): ToolChoice {
  if (v === undefined) return tools.length > 0 ? { kind: 'auto' } : { kind: 'none' };
  if (v === 'none' || v === 'auto' || v === 'required') {
    if (v !== 'none' && tools.length === 0) throw ApiError.invalid(`tool_choice '${v}' needs 'tools'.`, 'tool_choice');
    return { kind: v };
  }
  if (!isObject(v)) throw typeError('tool_choice', "'none', 'auto', 'required' or a named function", v);
  const fn = v['function'];
  const name = isObject(fn) ? fn['name'] : undefined;
  if (v['type'] !== 'function' || typeof name !== 'string') {
    throw ApiError.invalid(`Invalid 'tool_choice': expected {"type": "function", "function": {"name": ...}}.`, 'tool_choice');
  }
  if (!tools.some((t) => t.name === name))
    throw ApiError.invalid(`tool_choice names ${JSON.stringify(name)}, which is not in 'tools'.`, 'tool_choice');
  return { kind: 'named', name };
}

function checkChoiceCount(count: number): void {
  if (count > MAX_CHOICES) throw ApiError.invalid(`The request asks for ${count} choices (prompts × n); the limit is ${MAX_CHOICES}.`, 'n');
}
