// Anthropic's Messages API (POST /v1/messages) over the same engine path as chat completions: the request
// is translated into an OpenAI chat body and checked by the one chat parser, the prompt goes through the
// chat template, and the output is split into text and tool_use blocks by the same tool-call extractors.
import { randomUUID } from 'node:crypto';
import { ApiError, toApiError } from './errors';
import { runChoice, startChoices } from './generate';
import { SseStream, finishWithin, sendJson } from './http';
import { choiceSpecs, prepareChatPrompt, type ServedModel } from './prompt';
import { parseChatRequest, type ChatRequest } from './requests';
import type { RequestContext } from './serve';
import { toolCallExtractor, type Extracted } from './tool-calls';

type Json = Readonly<Record<string, unknown>>;

export interface MessagesRequest {
  readonly model?: string;
  readonly stream: boolean;
  /** The request as a chat completion (what the engine path takes). */
  readonly chat: ChatRequest;
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function invalid(message: string, param: string): never {
  throw ApiError.invalid(message, param);
}

/** Text of a string or of an array of text blocks (`system`, `tool_result.content`). */
function textOf(v: unknown, param: string): string {
  if (typeof v === 'string') return v;
  if (!Array.isArray(v)) return invalid(`'${param}' must be a string or an array of text blocks.`, param);
  return v
    .map((b: unknown, i) => {
      if (!isObject(b) || b['type'] !== 'text' || typeof b['text'] !== 'string')
        return invalid(`'${param}[${i}]' must be a text block; only text is supported here.`, `${param}[${i}]`);
      return b['text'];
    })
    .join('\n');
}

/**
 * One Anthropic message as OpenAI chat messages: a user turn's tool_result blocks become tool messages
 * (before its text, as they answer the previous turn), an assistant turn's tool_use blocks its tool_calls.
 */
function toOpenAiMessages(m: unknown, i: number): Json[] {
  const param = `messages[${i}]`;
  if (!isObject(m)) return invalid(`'${param}' must be an object.`, param);
  const role = m['role'];
  if (role !== 'user' && role !== 'assistant') return invalid(`'${param}.role' must be "user" or "assistant".`, `${param}.role`);
  const content = m['content'];
  if (typeof content === 'string') return [{ role, content }];
  if (!Array.isArray(content)) return invalid(`'${param}.content' must be a string or an array of content blocks.`, `${param}.content`);
  const texts: string[] = [];
  const toolResults: Json[] = [];
  const toolCalls: Json[] = [];
  content.forEach((b: unknown, j) => {
    const p = `${param}.content[${j}]`;
    if (!isObject(b)) return invalid(`'${p}' must be an object.`, p);
    switch (b['type']) {
      case 'text':
        if (typeof b['text'] !== 'string') return invalid(`'${p}.text' must be a string.`, `${p}.text`);
        texts.push(b['text']);
        return;
      case 'tool_use':
        if (role !== 'assistant') return invalid(`'${p}': tool_use blocks belong to assistant messages.`, p);
        if (typeof b['id'] !== 'string' || typeof b['name'] !== 'string' || !isObject(b['input']))
          return invalid(`'${p}' needs an id, a name and an input object.`, p);
        toolCalls.push({ id: b['id'], type: 'function', function: { name: b['name'], arguments: JSON.stringify(b['input']) } });
        return;
      case 'tool_result': {
        if (role !== 'user') return invalid(`'${p}': tool_result blocks belong to user messages.`, p);
        if (typeof b['tool_use_id'] !== 'string') return invalid(`'${p}.tool_use_id' must be a string.`, `${p}.tool_use_id`);
        const result = b['content'] === undefined ? '' : textOf(b['content'], `${p}.content`);
        toolResults.push({ role: 'tool', tool_call_id: b['tool_use_id'], content: b['is_error'] === true ? `Error: ${result}` : result });
        return;
      }
      default:
        return invalid(
          `Unsupported content block type ${JSON.stringify(b['type'] ?? null)} in '${p}'; this server takes text, tool_use and tool_result.`,
          `${p}.type`,
        );
    }
  });
  const text = texts.join('\n');
  if (role === 'assistant') return [toolCalls.length > 0 ? { role, content: text, tool_calls: toolCalls } : { role, content: text }];
  return [...toolResults, ...(text !== '' || toolResults.length === 0 ? [{ role, content: text }] : [])];
}

/** Anthropic tool_choice → OpenAI's: auto, any → required, tool → named, none. */
function toolChoiceOf(v: unknown): unknown {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) return invalid(`'tool_choice' must be an object.`, 'tool_choice');
  switch (v['type']) {
    case 'auto':
    case 'none':
      return v['type'];
    case 'any':
      return 'required';
    case 'tool':
      if (typeof v['name'] !== 'string') return invalid(`'tool_choice.name' is required with type "tool".`, 'tool_choice.name');
      return { type: 'function', function: { name: v['name'] } };
    default:
      return invalid(`'tool_choice.type' must be auto, any, tool or none.`, 'tool_choice.type');
  }
}

function toolsOf(v: unknown): unknown {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) return invalid(`'tools' must be an array.`, 'tools');
  return v.map((t: unknown, i) => {
    if (!isObject(t)) return invalid(`'tools[${i}]' must be an object.`, `tools[${i}]`);
    if (t['type'] !== undefined && t['type'] !== null && t['type'] !== 'custom') {
      return invalid(
        `'tools[${i}]': server tools (${JSON.stringify(t['type'])}) are not supported; define client tools with name and input_schema.`,
        `tools[${i}].type`,
      );
    }
    const fn: Record<string, unknown> = { name: t['name'], parameters: t['input_schema'] };
    if (t['description'] !== undefined) fn['description'] = t['description'];
    return { type: 'function', function: fn };
  });
}

/** output_config.format (structured output: `{type: "json_schema", schema}`) as OpenAI's response_format. */
function responseFormatOf(v: unknown): unknown {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) return invalid(`'output_config' must be an object.`, 'output_config');
  const format = v['format'];
  if (format === undefined || format === null) return undefined;
  if (!isObject(format) || format['type'] !== 'json_schema' || !isObject(format['schema'])) {
    return invalid(`'output_config.format' must be {"type": "json_schema", "schema": {...}}.`, 'output_config.format');
  }
  return { type: 'json_schema', json_schema: { name: 'output', schema: format['schema'] } };
}

/** `countOnly`: /v1/messages/count_tokens, which takes no max_tokens. */
export function parseMessagesRequest(body: unknown, countOnly = false): MessagesRequest {
  if (!isObject(body)) throw ApiError.invalid('The request body must be a JSON object.');
  if (!countOnly && (body['max_tokens'] === undefined || body['max_tokens'] === null)) {
    throw ApiError.invalid(`Missing required parameter: 'max_tokens'.`, 'max_tokens', 'missing_required_parameter');
  }
  const raw = body['messages'];
  if (!Array.isArray(raw) || raw.length === 0) return invalid(`'messages' must be a non-empty array.`, 'messages');
  const messages: Json[] = raw.flatMap(toOpenAiMessages);
  const system = body['system'];
  if (system !== undefined && system !== null) messages.unshift({ role: 'system', content: textOf(system, 'system') });
  const thinking = body['thinking'];
  if (isObject(thinking) && thinking['type'] === 'enabled')
    throw ApiError.invalid(`'thinking' is not supported by this server.`, 'thinking', 'unsupported_parameter');
  // Everything else is checked as a chat completion is: one parser, one set of bounds. temperature, top_p
  // and top_k are those of older API versions (the 1.x SDK no longer sends them).
  const chatBody: Record<string, unknown> = {
    model: body['model'],
    messages,
    max_tokens: countOnly ? undefined : body['max_tokens'],
    temperature: body['temperature'],
    top_p: body['top_p'],
    top_k: body['top_k'],
    stop: body['stop_sequences'],
    stream: body['stream'],
    tools: toolsOf(body['tools']),
    tool_choice: toolChoiceOf(body['tool_choice']),
    parallel_tool_calls: isObject(body['tool_choice']) && body['tool_choice']['disable_parallel_tool_use'] === true ? false : undefined,
    response_format: responseFormatOf(body['output_config']),
  };
  const chat = parseChatRequest(chatBody);
  return { model: chat.model, stream: chat.stream, chat };
}

/** POST /v1/messages/count_tokens: the prompt's tokens as the template renders it (tools and system included). */
export function countMessageTokens(model: ServedModel, req: MessagesRequest): { readonly input_tokens: number } {
  return { input_tokens: prepareChatPrompt(model, req.chat).tokenIds.length };
}

/** Anthropic ids: a prefix and 24 hex digits. */
const idOf = (prefix: string): string => `${prefix}_${randomUUID().replaceAll('-', '').slice(0, 24)}`;

interface ToolUse {
  readonly id: string;
  readonly name: string;
  input: string;
}

/** POST /v1/messages, after the body is parsed and the model resolved. */
export async function serveMessages(ctx: RequestContext, model: ServedModel, req: MessagesRequest): Promise<void> {
  const { chat } = req;
  const prompt = prepareChatPrompt(model, chat);
  const [spec] = choiceSpecs([prompt], chat, ctx);
  const { cachedTokens, events } = await startChoices([runChoice(model.engine, model.tokenizer, spec!, ctx.signal)]);
  const tools = toolCallExtractor(chat.toolChoice, model.toolCallParser ?? 'hermes', chat.parallelToolCalls ? Infinity : 1);
  const cached = Math.min(cachedTokens[0] ?? 0, prompt.tokenIds.length);
  const usage = (outputTokens: number): Json => ({
    // Anthropic counts cache reads apart from input_tokens.
    input_tokens: prompt.tokenIds.length - cached,
    output_tokens: outputTokens,
    cache_read_input_tokens: cached,
    cache_creation_input_tokens: 0,
  });
  const message = { id: idOf('msg'), type: 'message', role: 'assistant', model: model.id };

  /** Text and tool_use pieces of one event, in order; the finish decides the stop reason. */
  const split = (text: string, last: boolean): Extracted => {
    const x = tools.push(text);
    if (!last) return x;
    const rest = tools.finish();
    return { content: x.content + rest.content, calls: [...x.calls, ...rest.calls] };
  };
  const stopOf = (reason: string, stopString: string | undefined): { stop_reason: string; stop_sequence: string | null } => {
    if (reason === 'length') return { stop_reason: 'max_tokens', stop_sequence: null };
    if (tools.called) return { stop_reason: 'tool_use', stop_sequence: null };
    if (stopString !== undefined) return { stop_reason: 'stop_sequence', stop_sequence: stopString };
    return { stop_reason: 'end_turn', stop_sequence: null };
  };

  if (!req.stream) {
    let text = '';
    const uses: ToolUse[] = [];
    let stop = { stop_reason: 'end_turn', stop_sequence: null as string | null };
    let outputTokens = 0;
    for await (const ev of events) {
      if (ev.kind === 'start') continue;
      const x = split(ev.text, ev.kind === 'finish');
      text += x.content;
      for (const d of x.calls) {
        if (d.id !== undefined)
          uses[d.index] = { id: d.id.replace(/^call_/, 'toolu_'), name: d.function.name ?? '', input: d.function.arguments };
        else uses[d.index]!.input += d.function.arguments;
      }
      if (ev.kind === 'finish') {
        stop = stopOf(ev.reason, ev.stopString);
        outputTokens = ev.completionTokens;
      }
    }
    if (ctx.signal.aborted) return;
    const content = [
      ...(text === '' ? [] : [{ type: 'text', text }]),
      ...uses.map((u) => ({ type: 'tool_use', id: u.id, name: u.name, input: parseInput(u.input) })),
    ];
    sendJson(ctx.res, 200, { ...message, content, ...stop, usage: usage(outputTokens) });
    if (ctx.writeTimeoutMs !== undefined) finishWithin(ctx.res, ctx.writeTimeoutMs, ctx.log);
    return;
  }

  const sse = new SseStream(ctx.res, ctx.writeTimeoutMs, () =>
    ctx.log.warn({ timeoutMs: ctx.writeTimeoutMs }, 'client stopped reading; request aborted'),
  );
  sse.open();
  // Content blocks open in order; the open one is closed when another starts and at the end.
  let block = -1;
  let open: 'text' | 'tool_use' | undefined;
  const toolBlock = new Map<number, number>();
  const close = async (): Promise<void> => {
    if (open !== undefined) await sse.event('content_block_stop', { type: 'content_block_stop', index: block });
    open = undefined;
  };
  try {
    await sse.event('message_start', {
      type: 'message_start',
      message: { ...message, content: [], stop_reason: null, stop_sequence: null, usage: usage(0) },
    });
    await sse.event('ping', { type: 'ping' });
    for await (const ev of events) {
      if (ev.kind === 'start') continue;
      const x = split(ev.text, ev.kind === 'finish');
      if (x.content !== '') {
        if (open !== 'text') {
          await close();
          block++;
          open = 'text';
          await sse.event('content_block_start', { type: 'content_block_start', index: block, content_block: { type: 'text', text: '' } });
        }
        await sse.event('content_block_delta', {
          type: 'content_block_delta',
          index: block,
          delta: { type: 'text_delta', text: x.content },
        });
      }
      for (const d of x.calls) {
        if (d.id !== undefined) {
          await close();
          block++;
          open = 'tool_use';
          toolBlock.set(d.index, block);
          const start = { type: 'tool_use', id: d.id.replace(/^call_/, 'toolu_'), name: d.function.name ?? '', input: {} };
          await sse.event('content_block_start', { type: 'content_block_start', index: block, content_block: start });
        }
        if (d.function.arguments !== '') {
          await sse.event('content_block_delta', {
            type: 'content_block_delta',
            index: toolBlock.get(d.index) ?? block,
            delta: { type: 'input_json_delta', partial_json: d.function.arguments },
          });
        }
      }
      if (ev.kind === 'finish') {
        await close();
        await sse.event('message_delta', {
          type: 'message_delta',
          delta: stopOf(ev.reason, ev.stopString),
          usage: { output_tokens: ev.completionTokens },
        });
      }
    }
  } catch (err) {
    const e = toApiError(err);
    ctx.log.error({ err, status: e.status }, 'generation failed mid-stream');
    await sse.event('error', e.toAnthropicBody());
    sse.end();
    return;
  }
  if (ctx.signal.aborted) return;
  await sse.event('message_stop', { type: 'message_stop' });
  sse.end();
}

/** A tool_use block's input: the arguments object; {} when max_tokens cut it short (stop_reason max_tokens says so). */
function parseInput(s: string): unknown {
  try {
    const v: unknown = JSON.parse(s);
    return isObject(v) ? v : {};
  } catch {
    return {};
  }
}
