import type { ChoiceSpec, GeneratedToken } from './generate';
import { TokenTexts, chatLogprobs } from './logprobs';
import { cacheSaltOf, choiceSpecs, prepareChatPrompt, type ServedModel } from './prompt';
import type { ChatRequest } from './requests';
import { serveGeneration, type ChoiceFormatter, type ChoiceUpdate, type RequestContext } from './serve';

/** POST /v1/chat/completions, after the body is parsed and the model resolved. */
export async function serveChat(ctx: RequestContext, model: ServedModel, req: ChatRequest): Promise<void> {
  const prompt = prepareChatPrompt(model, req);
  const texts = new TokenTexts(model.tokenizer);
  const topN = req.sampling.logprobs;
  await serveGeneration(ctx, {
    model,
    prompts: [prompt],
    specs: choiceSpecs([prompt], req.n, req.sampling, ctx.requestId, cacheSaltOf(req.cacheSalt, ctx.cacheTenant), req.serviceTier),
    stream: req.stream,
    includeUsage: req.includeUsage,
    idPrefix: 'chatcmpl',
    object: 'chat.completion',
    chunkObject: 'chat.completion.chunk',
    formatter: (spec: ChoiceSpec) => chatChoice(spec.index, texts, topN),
  });
}

/** `topN` undefined: no logprobs; a number: logprobs with that many alternatives per token. */
function chatChoice(index: number, texts: TokenTexts, topN: number | undefined): ChoiceFormatter {
  let content = '';
  const tokens: GeneratedToken[] = [];
  let finishReason: string | null = null;
  const logprobs = (ts: readonly GeneratedToken[]) => (topN === undefined ? null : chatLogprobs(ts, texts, topN));
  return {
    opening: () => ({ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }),
    chunk: (ev: ChoiceUpdate) => ({
      index,
      delta: ev.text === '' ? {} : { content: ev.text },
      logprobs: logprobs(ev.tokens),
      finish_reason: ev.kind === 'finish' ? ev.reason : null,
    }),
    add(ev: ChoiceUpdate) {
      content += ev.text;
      tokens.push(...ev.tokens);
      if (ev.kind === 'finish') finishReason = ev.reason;
    },
    result: () => ({
      index,
      message: { role: 'assistant', content },
      logprobs: logprobs(tokens),
      finish_reason: finishReason,
    }),
  };
}
