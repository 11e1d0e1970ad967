import type { ChoiceSpec, GeneratedToken } from './generate';
import { TokenTexts, chatLogprobs, vllmPromptLogprobs, type VllmPromptLogprob } from './logprobs';
import { choiceSpecs, prepareChatPrompt, type ServedModel } from './prompt';
import type { ChatRequest } from './requests';
import { serveGeneration, type ChoiceFormatter, type ChoiceUpdate, type RequestContext } from './serve';
import { toolCallExtractor, type Extracted, type ToolCallDelta, type ToolCallExtractor } from './tool-calls';

/** POST /v1/chat/completions, after the body is parsed and the model resolved. */
export async function serveChat(ctx: RequestContext, model: ServedModel, req: ChatRequest): Promise<void> {
  const prompt = prepareChatPrompt(model, req);
  const texts = new TokenTexts(model.tokenizer);
  const topN = req.sampling.logprobs;
  // vLLM's prompt_logprobs: top-level in a whole response, on the first chunk that has them in a stream.
  let promptLogprobs: VllmPromptLogprob[] | undefined;
  const onPrompt = (entries: ChoiceUpdate['promptLogprobs']): Record<string, unknown> => {
    if (req.promptLogprobs === undefined || entries === undefined) return {};
    promptLogprobs ??= vllmPromptLogprobs(prompt.tokenIds, entries, texts);
    return { prompt_logprobs: promptLogprobs };
  };
  await serveGeneration(ctx, {
    model,
    prompts: [prompt],
    specs: choiceSpecs([prompt], req, ctx),
    stream: req.stream,
    includeUsage: req.includeUsage,
    idPrefix: 'chatcmpl',
    object: 'chat.completion',
    chunkObject: 'chat.completion.chunk',
    formatter: (spec: ChoiceSpec) =>
      chatChoice(
        spec.index,
        texts,
        topN,
        toolCallExtractor(req.toolChoice, model.toolCallParser ?? 'hermes', req.parallelToolCalls ? Infinity : 1),
        onPrompt,
      ),
    extra: () => (promptLogprobs === undefined ? {} : { prompt_logprobs: promptLogprobs }),
  });
}

/** An OpenAI `tool_calls[]` entry, whole. */
interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** Streamed deltas folded into whole calls, by index. */
function foldCalls(calls: ToolCall[], deltas: readonly ToolCallDelta[]): void {
  for (const d of deltas) {
    const c = calls[d.index];
    if (c === undefined)
      calls[d.index] = { id: d.id ?? '', type: 'function', function: { name: d.function.name ?? '', arguments: d.function.arguments } };
    else c.function.arguments += d.function.arguments;
  }
}

/**
 * `topN` undefined: no logprobs; a number: logprobs with that many alternatives per token. `tools` splits
 * the text into content and tool calls; a generation that stopped after a call finishes with "tool_calls".
 */
function chatChoice(
  index: number,
  texts: TokenTexts,
  topN: number | undefined,
  tools: ToolCallExtractor,
  onPrompt: (entries: ChoiceUpdate['promptLogprobs']) => Record<string, unknown>,
): ChoiceFormatter {
  let content = '';
  const calls: ToolCall[] = [];
  const tokens: GeneratedToken[] = [];
  let finishReason: string | null = null;
  const logprobs = (ts: readonly GeneratedToken[]) => (topN === undefined ? null : chatLogprobs(ts, texts, topN));
  const extract = (ev: ChoiceUpdate): Extracted => {
    const x = tools.push(ev.text);
    if (ev.kind !== 'finish') return x;
    const rest = tools.finish();
    return { content: x.content + rest.content, calls: [...x.calls, ...rest.calls] };
  };
  const reason = (ev: ChoiceUpdate): string | null =>
    ev.kind !== 'finish' ? null : ev.reason === 'stop' && tools.called ? 'tool_calls' : ev.reason;
  return {
    opening: () => ({ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }),
    chunk: (ev: ChoiceUpdate) => {
      const x = extract(ev);
      return {
        index,
        delta: { ...(x.content === '' ? {} : { content: x.content }), ...(x.calls.length === 0 ? {} : { tool_calls: x.calls }) },
        logprobs: logprobs(ev.tokens),
        finish_reason: reason(ev),
        ...onPrompt(ev.promptLogprobs),
      };
    },
    add(ev: ChoiceUpdate) {
      const x = extract(ev);
      content += x.content;
      foldCalls(calls, x.calls);
      onPrompt(ev.promptLogprobs);
      tokens.push(...ev.tokens);
      if (ev.kind === 'finish') finishReason = reason(ev);
    },
    result: () => ({
      index,
      // OpenAI's shape: content null when the reply is only tool calls.
      message:
        calls.length === 0
          ? { role: 'assistant', content }
          : { role: 'assistant', content: content === '' ? null : content, tool_calls: calls },
      logprobs: logprobs(tokens),
      finish_reason: finishReason,
    }),
  };
}
