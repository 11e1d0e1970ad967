import type { ChoiceSpec, GeneratedToken } from './generate';
import { TokenTexts, codePoints, completionLogprobs } from './logprobs';
import { cacheSaltOf, choiceSpecs, prepareCompletionPrompts, type ServedModel } from './prompt';
import type { CompletionRequest } from './requests';
import { serveGeneration, type ChoiceFormatter, type ChoiceUpdate, type RequestContext } from './serve';

/** POST /v1/completions, after the body is parsed and the model resolved. */
export async function serveCompletion(ctx: RequestContext, model: ServedModel, req: CompletionRequest): Promise<void> {
  const prompts = prepareCompletionPrompts(model, req);
  const texts = new TokenTexts(model.tokenizer);
  const wantLogprobs = req.sampling.logprobs !== undefined;
  await serveGeneration(ctx, {
    model,
    prompts,
    specs: choiceSpecs(prompts, req.n, req.sampling, ctx.requestId, cacheSaltOf(req.cacheSalt, ctx.cacheTenant), req.serviceTier),
    stream: req.stream,
    includeUsage: req.includeUsage,
    idPrefix: 'cmpl',
    object: 'text_completion',
    chunkObject: 'text_completion',
    formatter: (spec: ChoiceSpec) => completionChoice(spec.index, req.echo ? (prompts[spec.promptIndex]?.text ?? '') : '', texts, wantLogprobs),
  });
}

function completionChoice(index: number, echo: string, texts: TokenTexts, wantLogprobs: boolean): ChoiceFormatter {
  let unsentEcho = echo;
  let offset = codePoints(echo);
  let text = '';
  const tokens: GeneratedToken[] = [];
  let finishReason: string | null = null;
  return {
    opening: () => undefined,
    chunk(ev: ChoiceUpdate) {
      let logprobs = null;
      if (wantLogprobs) {
        const lp = completionLogprobs(ev.tokens, texts, offset);
        offset = lp.endOffset;
        logprobs = lp.logprobs;
      }
      const out = { index, text: unsentEcho + ev.text, logprobs, finish_reason: ev.kind === 'finish' ? ev.reason : null };
      unsentEcho = '';
      return out;
    },
    add(ev: ChoiceUpdate) {
      text += ev.text;
      tokens.push(...ev.tokens);
      if (ev.kind === 'finish') finishReason = ev.reason;
    },
    result: () => ({
      index,
      text: echo + text,
      logprobs: wantLogprobs ? completionLogprobs(tokens, texts, codePoints(echo)).logprobs : null,
      finish_reason: finishReason,
    }),
  };
}
