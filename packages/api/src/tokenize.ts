// vLLM's /tokenize and /detokenize: a prompt (or chat messages through the template, tools included) to
// token ids and back, with the model's tokenizer — what a client needs to count or build prompts.
import { ApiError } from './errors';
import { TokenTexts } from './logprobs';
import { promptCharLimit, renderChat, type ServedModel } from './prompt';
import { parseChatRequest } from './requests';

/** A parsed /tokenize body: either a prompt or chat messages. */
export type TokenizeRequest =
  | {
      readonly model?: string;
      readonly kind: 'prompt';
      readonly prompt: string;
      readonly addSpecialTokens: boolean;
      readonly returnTokenStrs: boolean;
    }
  | {
      readonly model?: string;
      readonly kind: 'chat';
      readonly chat: ReturnType<typeof parseChatRequest>;
      readonly addSpecialTokens: boolean;
      readonly returnTokenStrs: boolean;
    };

function isObject(v: unknown): v is Readonly<Record<string, unknown>> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function optionalBoolean(body: Readonly<Record<string, unknown>>, name: string): boolean | undefined {
  const v = body[name];
  if (v === undefined || v === null || typeof v === 'boolean') return v ?? undefined;
  throw ApiError.invalid(`Invalid type for '${name}': expected a boolean.`, name, 'invalid_type');
}

export function parseTokenizeRequest(body: unknown): TokenizeRequest {
  if (!isObject(body)) throw ApiError.invalid('The request body must be a JSON object.');
  const model = typeof body['model'] === 'string' ? body['model'] : undefined;
  const returnTokenStrs = optionalBoolean(body, 'return_token_strs') ?? false;
  const addSpecial = optionalBoolean(body, 'add_special_tokens');
  if (body['messages'] !== undefined && body['messages'] !== null) {
    // The chat fields mean what they mean on /v1/chat/completions; a rendered template holds its own BOS.
    return { model, kind: 'chat', chat: parseChatRequest(body), addSpecialTokens: addSpecial ?? false, returnTokenStrs };
  }
  const prompt = body['prompt'];
  if (typeof prompt !== 'string')
    throw ApiError.invalid(`'prompt' (a string) or 'messages' is required.`, 'prompt', 'missing_required_parameter');
  return { model, kind: 'prompt', prompt, addSpecialTokens: addSpecial ?? true, returnTokenStrs };
}

/** vLLM's response: `{count, max_model_len, tokens, token_strs}`. */
export function tokenize(model: ServedModel, req: TokenizeRequest): Record<string, unknown> {
  let text: string;
  if (req.kind === 'chat') {
    text = renderChat(model, req.chat);
  } else {
    if (req.prompt.length > promptCharLimit(model)) throw ApiError.promptTooLong('prompt', req.prompt.length, promptCharLimit(model));
    text = req.prompt;
  }
  const tokens = model.tokenizer.encode(text, { addSpecialTokens: req.addSpecialTokens });
  const texts = new TokenTexts(model.tokenizer);
  return {
    count: tokens.length,
    max_model_len: model.maxModelLen,
    tokens,
    token_strs: req.returnTokenStrs ? tokens.map((t) => texts.text(t)) : null,
  };
}

/** Most token ids one /detokenize call takes. */
export const MAX_DETOKENIZE_TOKENS = 1 << 20;

export function parseDetokenizeRequest(body: unknown): { readonly model?: string; readonly tokens: readonly number[] } {
  if (!isObject(body)) throw ApiError.invalid('The request body must be a JSON object.');
  const tokens = body['tokens'];
  if (!Array.isArray(tokens))
    throw ApiError.invalid(`'tokens' (an array of token ids) is required.`, 'tokens', 'missing_required_parameter');
  if (tokens.length > MAX_DETOKENIZE_TOKENS) throw ApiError.invalid(`'tokens' may hold at most ${MAX_DETOKENIZE_TOKENS} ids.`, 'tokens');
  const bad = tokens.findIndex((t: unknown) => typeof t !== 'number' || !Number.isSafeInteger(t) || t < 0);
  if (bad !== -1) throw ApiError.invalid(`Invalid value for 'tokens[${bad}]': token ids are non-negative integers.`, 'tokens');
  return { model: typeof body['model'] === 'string' ? body['model'] : undefined, tokens: tokens as number[] };
}

/** vLLM's response: `{prompt}` (special tokens kept, as vLLM decodes). */
export function detokenize(model: ServedModel, tokens: readonly number[]): Record<string, unknown> {
  const bad = tokens.find((t) => t >= model.tokenizer.vocabSize);
  if (bad !== undefined)
    throw ApiError.invalid(`Token id ${bad} is out of range for this model (vocabulary size ${model.tokenizer.vocabSize}).`, 'tokens');
  return { prompt: model.tokenizer.decode(tokens, { skipSpecialTokens: false }) };
}
