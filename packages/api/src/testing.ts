// Test doubles for the API's unit tests: a toy tokenizer and a scripted engine. Not exported by index.ts.
import {
  ChatTemplateError,
  EngineError,
  type ChatMessage,
  type ChatRenderOptions,
  type DecodeOptions,
  type EncodeOptions,
  type EngineClient,
  type GenerateOutput,
  type GenerateRequest,
  type TextTokenizer,
} from './deps';
import { createApiServer, type ApiServer, type ApiServerOptions } from './server';
import type { ToolCallParserName } from './tool-calls';

/**
 * A byte-level tokenizer (GPT-2 style, no space stripping) with a few whole-word tokens.
 * ids: 0 <bos>, 1 <eos>, 2..257 the bytes 0..255, then WORDS. Characters outside WORDS become one token per
 * UTF-8 byte, so emoji and CJK are split across tokens.
 */
export class ToyTokenizer implements TextTokenizer {
  static readonly BOS = 0;
  static readonly EOS = 1;
  static readonly WORDS: readonly string[] = [
    ' Hello',
    ' world',
    'Hello',
    '!',
    ' the',
    ' cat',
    ' sat',
    'STOP',
    '<|',
    '|>',
    ' on',
    ' mat',
    '.',
  ];
  readonly vocabSize = 2 + 256 + ToyTokenizer.WORDS.length;
  readonly bosTokenId = ToyTokenizer.BOS;
  readonly eosTokenIds = [ToyTokenizer.EOS];
  readonly hasChatTemplate: boolean;

  constructor(opts: { readonly hasChatTemplate?: boolean } = {}) {
    this.hasChatTemplate = opts.hasChatTemplate ?? true;
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const ids = opts.addSpecialTokens === false ? [] : [ToyTokenizer.BOS];
    let i = 0;
    while (i < text.length) {
      let best = -1;
      ToyTokenizer.WORDS.forEach((w, k) => {
        if (text.startsWith(w, i) && (best === -1 || w.length > ToyTokenizer.WORDS[best]!.length)) best = k;
      });
      if (best !== -1) {
        ids.push(258 + best);
        i += ToyTokenizer.WORDS[best]!.length;
        continue;
      }
      const ch = String.fromCodePoint(text.codePointAt(i)!);
      for (const b of Buffer.from(ch, 'utf8')) ids.push(2 + b);
      i += ch.length;
    }
    return ids;
  }

  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    const skip = opts.skipSpecialTokens ?? true;
    let out = '';
    let bytes: number[] = [];
    const fuse = (): void => {
      out += new TextDecoder().decode(Uint8Array.from(bytes));
      bytes = [];
    };
    for (const id of ids) {
      if (id < 2) {
        fuse();
        if (!skip) out += id === ToyTokenizer.BOS ? '<bos>' : '<eos>';
      } else if (id < 258) {
        bytes.push(id - 2);
      } else {
        fuse();
        out += ToyTokenizer.WORDS[id - 258]!;
      }
    }
    fuse();
    return out;
  }

  /** Lists tool names, an assistant's calls and a tool turn's call id, so tests can see what reached the template. */
  applyChatTemplate(messages: readonly ChatMessage[], opts: ChatRenderOptions = {}): string {
    if (messages.some((m) => m.content === 'RAISE')) throw new ChatTemplateError('Conversation roles must alternate');
    const names = (opts.tools ?? []).map((t) => (t as { function: { name: string } }).function.name);
    const tools = names.length > 0 ? `<|system|>tools: ${names.join(',')}\n` : '';
    const turn = (m: ChatMessage): string => {
      const calls = (m.toolCalls ?? []).map((c) => ` calls ${c.name}(${JSON.stringify(c.arguments)})`).join('');
      const id = m.toolCallId === undefined ? '' : `[${m.toolCallId}]`;
      return `<|${m.role}|>${id}${m.content}${calls}\n`;
    };
    const kwargs = opts.kwargs === undefined ? '' : `<|kwargs|>${JSON.stringify(opts.kwargs)}\n`;
    let text = kwargs + tools + messages.map(turn).join('') + (opts.addGenerationPrompt ? '<|assistant|>' : '');
    if (opts.continueFinalMessage)
      text = text.slice(0, text.lastIndexOf(messages[messages.length - 1]!.content) + messages[messages.length - 1]!.content.length);
    return text;
  }
}

export interface FakeEngineOptions {
  readonly modelId?: string;
  readonly maxModelLen?: number;
  /** The tokens to generate for a request (EOS is appended unless maxTokens cuts it off). */
  readonly reply?: (req: GenerateRequest) => readonly number[];
  /** Tokens per output chunk; default 1. */
  readonly chunkSize?: number;
  /** Wait before each chunk, in ms; default 0 (a macrotask turn). */
  readonly delayMs?: number;
  /** Generate forever (until aborted or maxTokens), repeating the reply. */
  readonly endless?: boolean;
  /** Prompt tokens reported as served from the prefix cache. */
  readonly cachedTokens?: number;
}

/** A scripted engine that records what it was asked and whether it was aborted. */
export class FakeEngine implements EngineClient {
  readonly modelId: string;
  readonly maxModelLen: number;
  readonly requests: GenerateRequest[] = [];
  readonly aborted: string[] = [];
  readonly finished: string[] = [];
  ready = true;
  /** Thrown before the first chunk of the next requests (e.g. queue_full). */
  refuseWith: EngineError | undefined;
  /** Thrown after this many chunks. */
  failAfterChunks: number | undefined;

  constructor(private readonly opts: FakeEngineOptions = {}) {
    this.modelId = opts.modelId ?? 'toy';
    this.maxModelLen = opts.maxModelLen ?? 128;
  }

  isReady(): boolean {
    return this.ready;
  }

  async *generate(req: GenerateRequest): AsyncGenerator<GenerateOutput> {
    this.requests.push(req);
    req.signal?.addEventListener('abort', () => this.aborted.push(req.requestId), { once: true });
    if (this.refuseWith !== undefined) throw this.refuseWith;
    if (!this.ready) throw new EngineError('not_ready', 'engine is loading');
    const reply = this.opts.reply?.(req) ?? [];
    const chunkSize = this.opts.chunkSize ?? 1;
    const script = this.opts.endless ? [] : [...reply, ToyTokenizer.EOS];
    const base = { promptTokens: req.promptTokenIds.length, cachedTokens: this.opts.cachedTokens ?? 0 };
    let produced = 0;
    let chunks = 0;
    for (;;) {
      await new Promise((r) => setTimeout(r, this.opts.delayMs ?? 0));
      if (req.signal?.aborted) {
        yield { ...base, tokenIds: [], finishReason: 'abort' };
        return;
      }
      if (this.failAfterChunks !== undefined && chunks >= this.failAfterChunks) throw new EngineError('internal', 'device lost');
      const take = Math.min(chunkSize, req.sampling.maxTokens - produced);
      const ids: number[] = [];
      for (let k = 0; k < take; k++) {
        const i = produced + k;
        if (this.opts.endless) ids.push(reply.length > 0 ? reply[i % reply.length]! : 2 + (i % 26) + 97);
        else if (i < script.length) ids.push(script[i]!);
      }
      produced += ids.length;
      chunks++;
      const eos = !this.opts.endless && produced >= script.length;
      const length = produced >= req.sampling.maxTokens;
      const logprobs =
        req.sampling.logprobs === undefined
          ? undefined
          : ids.map((id) => ({
              logprob: -0.5,
              top: Array.from({ length: req.sampling.logprobs ?? 0 }, (_, j) => ({ tokenId: j === 0 ? id : 258 + j, logprob: -0.5 - j })),
            }));
      const finishReason = eos ? ('stop' as const) : length ? ('length' as const) : undefined;
      if (finishReason !== undefined) this.finished.push(req.requestId);
      // Prompt logprobs on the first chunk: position i scores -i/10, rank i, alternatives 258 + j.
      const k = req.sampling.promptLogprobs;
      const promptLogprobs =
        k === undefined || chunks > 1
          ? undefined
          : req.promptTokenIds.slice(1).map((tokenId, i) => ({
              tokenId,
              logprob: -(i + 1) / 10,
              rank: i + 1,
              top: Array.from({ length: k }, (_, j) => ({ tokenId: 258 + j, logprob: -0.05 - j })),
            }));
      yield { ...base, tokenIds: ids, logprobs, finishReason, ...(promptLogprobs === undefined ? {} : { promptLogprobs }) };
      if (finishReason !== undefined) return;
    }
  }
}

export interface TestServer {
  readonly url: string;
  readonly engine: FakeEngine;
  readonly tokenizer: ToyTokenizer;
  readonly api: ApiServer;
}

/** Starts an API server on 127.0.0.1 with a free port over one fake engine and the toy tokenizer. */
export async function startTestServer(
  engineOpts: FakeEngineOptions = {},
  serverOpts: Partial<ApiServerOptions> & {
    readonly defaultMaxTokens?: number;
    readonly hasChatTemplate?: boolean;
    readonly toolCallParser?: ToolCallParserName;
  } = {},
): Promise<TestServer> {
  const tokenizer = new ToyTokenizer({ hasChatTemplate: serverOpts.hasChatTemplate });
  const engine = new FakeEngine(engineOpts);
  const api = createApiServer({
    models: [
      {
        id: engine.modelId,
        engine,
        tokenizer,
        maxModelLen: engine.maxModelLen,
        defaultMaxTokens: serverOpts.defaultMaxTokens,
        created: 1700000000,
        toolCallParser: serverOpts.toolCallParser,
      },
    ],
    host: '127.0.0.1',
    port: 0,
    shutdownGraceMs: 200,
    ...serverOpts,
  });
  const { url } = await api.listen();
  return { url, engine, tokenizer, api };
}
