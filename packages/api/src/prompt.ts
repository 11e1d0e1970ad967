import { ChatTemplateError, logitBiasProblem, type EngineClient, type SamplingParams, type TextTokenizer } from './deps';
import { ApiError } from './errors';
import type { ChoiceSpec } from './generate';
import type { ChatRequest, CompletionRequest, SamplingOptions } from './requests';
import type { ToolCallParserName } from './tool-calls';

/** A model the server exposes. */
export interface ServedModel {
  /** The name clients pass as `model`. */
  readonly id: string;
  readonly engine: EngineClient;
  readonly tokenizer: TextTokenizer;
  /** Longest prompt + output accepted, in tokens. */
  readonly maxModelLen: number;
  /** max_tokens when the request has none; see resolveMaxTokens. */
  readonly defaultMaxTokens?: number;
  /** Unix seconds shown by /v1/models; default: when the server was created. */
  readonly created?: number;
  /** Longest prompt in characters, refused before tokenizing; default maxModelLen × MAX_CHARS_PER_TOKEN. */
  readonly maxPromptChars?: number;
  /** The tool-call syntax the model writes under tool_choice auto; default hermes (see defaultToolCallParser). */
  readonly toolCallParser?: ToolCallParserName;
}

/**
 * Characters per token of context allowed in a prompt before it is tokenized: far above any tokenizer's
 * average (about 4 for English), so only prompts that could never fit are refused unread.
 */
export const MAX_CHARS_PER_TOKEN = 16;

/** The character cap of `model`'s prompts (see ServedModel.maxPromptChars). */
export function promptCharLimit(model: ServedModel): number {
  return model.maxPromptChars ?? model.maxModelLen * MAX_CHARS_PER_TOKEN;
}

function checkPromptChars(model: ServedModel, param: string, chars: number): void {
  const limit = promptCharLimit(model);
  if (chars > limit) throw ApiError.promptTooLong(param, chars, limit);
}

/** A prompt ready for the engine, with the output budget resolved against the model. */
export interface PreparedPrompt {
  readonly tokenIds: readonly number[];
  /** The prompt as text, for `echo`. */
  readonly text: string;
  readonly maxTokens: number;
}

/** max_tokens of /v1/completions when neither the request nor the model sets one (OpenAI's and vLLM's). */
export const DEFAULT_COMPLETION_MAX_TOKENS = 16;

/**
 * The output budget, as vLLM computes it. A requested max_tokens must fit: prompt + max_tokens ≤
 * maxModelLen, else 400 context_length_exceeded. Without one, completions default to
 * model.defaultMaxTokens ?? 16 and chat to model.defaultMaxTokens ?? (the rest of the context), either
 * clamped to the room left, which must be at least one token.
 */
export function resolveMaxTokens(
  model: ServedModel,
  promptTokens: number,
  requested: number | undefined,
  kind: 'completion' | 'chat',
): number {
  const room = model.maxModelLen - promptTokens;
  const where = kind === 'chat' ? 'in the messages' : 'in your prompt';
  const param = kind === 'chat' ? 'messages' : 'prompt';
  if (requested !== undefined) {
    if (requested > room) {
      throw ApiError.contextLength(
        `This model's maximum context length is ${model.maxModelLen} tokens. However, you requested ` +
          `${promptTokens + requested} tokens (${promptTokens} ${where}, ${requested} for the completion). ` +
          `Please reduce the length of the ${param === 'messages' ? 'messages' : 'prompt'} or completion.`,
        param,
      );
    }
    return requested;
  }
  if (room < 1) {
    throw ApiError.contextLength(
      `This model's maximum context length is ${model.maxModelLen} tokens. However, your ${param === 'messages' ? 'messages' : 'prompt'} ` +
        `resulted in ${promptTokens} tokens, which leaves no room for the completion. Please reduce the length of the ${param}.`,
      param,
    );
  }
  const fallback = model.defaultMaxTokens ?? (kind === 'completion' ? DEFAULT_COMPLETION_MAX_TOKENS : room);
  return Math.min(fallback, room);
}

/** The sampling fields that name token ids, checked against the model's vocabulary. */
function checkSamplingIds(o: SamplingOptions, vocabSize: number): void {
  checkTokenIds(o.stopTokenIds, vocabSize, 'stop_token_ids');
  const problem = logitBiasProblem(o.logitBias, vocabSize);
  if (problem !== undefined) throw ApiError.invalid(problem.message, problem.param);
}

function checkTokenIds(ids: readonly number[], vocabSize: number, param: string): void {
  const bad = ids.find((id) => id >= vocabSize);
  if (bad !== undefined)
    throw ApiError.invalid(`Token id ${bad} in '${param}' is out of range for this model (vocabulary size ${vocabSize}).`, param);
}

export function prepareCompletionPrompts(model: ServedModel, req: CompletionRequest): PreparedPrompt[] {
  const { tokenizer } = model;
  checkSamplingIds(req.sampling, tokenizer.vocabSize);
  return req.prompts.map((p, i) => {
    const param = req.prompts.length > 1 ? `prompt[${i}]` : 'prompt';
    let tokenIds: readonly number[];
    let text: string;
    if (p.kind === 'text') {
      checkPromptChars(model, param, p.text.length);
      tokenIds = tokenizer.encode(p.text, { addSpecialTokens: true });
      text = p.text;
    } else {
      checkTokenIds(p.ids, tokenizer.vocabSize, param);
      tokenIds = p.ids;
      text = req.echo ? tokenizer.decode(p.ids, { skipSpecialTokens: false }) : '';
    }
    if (tokenIds.length === 0) throw ApiError.invalid(`'${param}' encodes to no tokens.`, param);
    return { tokenIds, text, maxTokens: resolveMaxTokens(model, tokenIds.length, req.sampling.maxTokens, 'completion') };
  });
}

export function prepareChatPrompt(model: ServedModel, req: ChatRequest): PreparedPrompt {
  checkSamplingIds(req.sampling, model.tokenizer.vocabSize);
  const text = renderChat(model, req);
  // The rendered template already holds any BOS it wants.
  const tokenIds = model.tokenizer.encode(text, { addSpecialTokens: false });
  if (tokenIds.length === 0) throw ApiError.invalid(`'messages' render to an empty prompt.`, 'messages');
  return { tokenIds, text, maxTokens: resolveMaxTokens(model, tokenIds.length, req.sampling.maxTokens, 'chat') };
}

/** The chat request's messages (and tools) through the model's chat template, as prompt text. */
export function renderChat(
  model: ServedModel,
  req: Pick<ChatRequest, 'messages' | 'tools' | 'addGenerationPrompt' | 'continueFinalMessage' | 'chatTemplateKwargs'>,
): string {
  const { tokenizer } = model;
  if (!tokenizer.hasChatTemplate) {
    throw ApiError.invalid(`The model \`${model.id}\` has no chat template; use /v1/completions.`, 'messages', 'no_chat_template');
  }
  checkPromptChars(
    model,
    'messages',
    req.messages.reduce((n, m) => n + m.content.length, 0),
  );
  let text: string;
  try {
    text = tokenizer.applyChatTemplate(req.messages, {
      addGenerationPrompt: req.addGenerationPrompt,
      continueFinalMessage: req.continueFinalMessage,
      tools: req.tools.map((t) => t.raw),
      kwargs: req.chatTemplateKwargs,
    });
  } catch (err) {
    // Templates reject conversations they cannot render (e.g. roles that do not alternate); anything
    // else thrown here is a bug and stays a 500.
    if (!(err instanceof ChatTemplateError)) throw err;
    throw ApiError.invalid(`The chat template could not render these messages: ${err.message}`, 'messages', 'invalid_chat_template_input');
  }
  // The template adds text of its own: the cap holds for what is tokenized.
  checkPromptChars(model, 'messages', text.length);
  return text;
}

export function toSamplingParams(o: SamplingOptions, maxTokens: number, seedOffset: number): SamplingParams {
  if (o.minTokens !== undefined && o.minTokens > maxTokens) {
    throw ApiError.invalid(`'min_tokens' (${o.minTokens}) must not exceed 'max_tokens' (${maxTokens}).`, 'min_tokens');
  }
  return {
    temperature: o.temperature,
    topP: o.topP,
    topK: o.topK,
    minP: o.minP,
    repetitionPenalty: o.repetitionPenalty,
    presencePenalty: o.presencePenalty,
    frequencyPenalty: o.frequencyPenalty,
    // Choice i of a prompt uses seed + i: choices differ, and each is reproducible on its own.
    seed: o.seed === undefined ? undefined : o.seed + seedOffset,
    maxTokens,
    stopTokenIds: o.stopTokenIds,
    // Stop strings are matched here on the detokenized text; the engine gets them too (same semantics).
    stop: o.stop,
    ignoreEos: o.ignoreEos,
    logprobs: o.logprobs,
    logitBias: o.logitBias,
    minTokens: o.minTokens,
    structuredOutput: o.structuredOutput,
    promptLogprobs: o.promptLogprobs,
  };
}

/**
 * The salt a request's blocks are hashed under (GenerateRequest.cacheSalt): its cache_salt, within its
 * tenant's when caches are isolated per API key. Each part is marked, so that no request salt can equal a
 * tenant's; no salt and no tenant is '' (the unsalted chain).
 */
function cacheSaltOf(requestSalt: string | undefined, tenant: string | undefined): string {
  if (tenant !== undefined) return `tenant\0${tenant}\0${requestSalt ?? ''}`;
  return requestSalt === undefined ? '' : `salt\0${requestSalt}`;
}

/** What a parsed request (chat, completion, or a chat made from an Anthropic message) says about its choices. */
type ChoiceFields = Pick<ChatRequest, 'n' | 'sampling' | 'cacheSalt' | 'priority' | 'serviceTier'>;

/** One engine request per (prompt, i < n); choice index = prompt index × n + i, as OpenAI and vLLM do. */
export function choiceSpecs(
  prompts: readonly PreparedPrompt[],
  req: ChoiceFields,
  ctx: { readonly requestId: string; readonly cacheTenant?: string },
): ChoiceSpec[] {
  const { n, sampling, priority, serviceTier } = req;
  const cacheSalt = cacheSaltOf(req.cacheSalt, ctx.cacheTenant);
  return prompts.flatMap((p, promptIndex) =>
    Array.from({ length: n }, (_, i) => {
      const index = promptIndex * n + i;
      return {
        index,
        promptIndex,
        engineRequestId: `${ctx.requestId}-${index}`,
        promptTokenIds: p.tokenIds,
        sampling: toSamplingParams(sampling, p.maxTokens, i),
        cacheSalt,
        priority,
        serviceTier,
      };
    }),
  );
}
