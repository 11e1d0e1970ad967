import type { ChoiceSpec, GeneratedToken } from './generate';
import {
  TokenTexts,
  codePoints,
  completionLogprobs,
  concatLogprobs,
  echoLogprobs,
  vllmPromptLogprobs,
  type CompletionLogprobs,
} from './logprobs';
import { choiceSpecs, prepareCompletionPrompts, type ServedModel } from './prompt';
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
    specs: choiceSpecs(prompts, req, ctx),
    stream: req.stream,
    includeUsage: req.includeUsage,
    idPrefix: 'cmpl',
    object: 'text_completion',
    chunkObject: 'text_completion',
    formatter: (spec: ChoiceSpec) => {
      const prompt = prompts[spec.promptIndex]!;
      return completionChoice(spec.index, { text: req.echo ? prompt.text : '', ids: prompt.tokenIds }, texts, {
        wantLogprobs,
        echo: req.echo,
        promptLogprobs: req.promptLogprobs !== undefined,
      });
    },
  });
}

/**
 * `echo` puts the prompt's text first (and, with logprobs, its tokens' logprobs, the first null);
 * `promptLogprobs` adds vLLM's `prompt_logprobs` to the choice (the first streamed chunk carries it).
 */
function completionChoice(
  index: number,
  prompt: { readonly text: string; readonly ids: readonly number[] },
  texts: TokenTexts,
  opts: { readonly wantLogprobs: boolean; readonly echo: boolean; readonly promptLogprobs: boolean },
): ChoiceFormatter {
  const echo = prompt.text;
  let unsentEcho = echo;
  let offset = codePoints(echo);
  let text = '';
  const tokens: GeneratedToken[] = [];
  let finishReason: string | null = null;
  let promptEntries: ChoiceUpdate['promptLogprobs'];
  const echoed = (lp: CompletionLogprobs, entries: ChoiceUpdate['promptLogprobs']): CompletionLogprobs =>
    opts.echo && entries !== undefined ? concatLogprobs(echoLogprobs(prompt.ids, entries, texts), lp) : lp;
  const promptField = (entries: ChoiceUpdate['promptLogprobs']): Record<string, unknown> =>
    opts.promptLogprobs && entries !== undefined ? { prompt_logprobs: vllmPromptLogprobs(prompt.ids, entries, texts) } : {};
  return {
    opening: () => undefined,
    chunk(ev: ChoiceUpdate) {
      let logprobs = null;
      if (opts.wantLogprobs) {
        const lp = completionLogprobs(ev.tokens, texts, offset);
        offset = lp.endOffset;
        logprobs = echoed(lp.logprobs, ev.promptLogprobs);
      }
      const out = {
        index,
        text: unsentEcho + ev.text,
        logprobs,
        finish_reason: ev.kind === 'finish' ? ev.reason : null,
        ...promptField(ev.promptLogprobs),
      };
      unsentEcho = '';
      return out;
    },
    add(ev: ChoiceUpdate) {
      text += ev.text;
      tokens.push(...ev.tokens);
      promptEntries ??= ev.promptLogprobs;
      if (ev.kind === 'finish') finishReason = ev.reason;
    },
    result: () => ({
      index,
      text: echo + text,
      logprobs: opts.wantLogprobs ? echoed(completionLogprobs(tokens, texts, codePoints(echo)).logprobs, promptEntries) : null,
      finish_reason: finishReason,
      ...promptField(promptEntries),
    }),
  };
}
