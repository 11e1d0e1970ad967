import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { ChatTemplate, ChatTemplateError, isRecord, selectChatTemplate, specialTokenText } from './chat';
import type { TemplateTokens } from './chat';
import type { ChatMessage, ChatRenderOptions, DecodeOptions, EncodeOptions, TextTokenizer } from './types';

type JsonObject = Record<string, unknown>;

/** The parsed files of a Hugging Face model directory that the tokenizer reads. */
export interface TokenizerFiles {
  readonly tokenizer: JsonObject;
  readonly tokenizerConfig: JsonObject;
  readonly generationConfig?: JsonObject;
  readonly config?: JsonObject;
  /** `chat_template.jinja`, which newer transformers save instead of tokenizer_config's `chat_template`. */
  readonly chatTemplate?: string;
}

/** A model's tokenizer and chat template, with Hugging Face semantics (encode/decode via tokenizers.js). */
export class Tokenizer implements TextTokenizer {
  readonly vocabSize: number;
  readonly bosTokenId: number | undefined;
  readonly eosTokenIds: readonly number[];
  readonly hasChatTemplate: boolean;
  private readonly hf: HfTokenizer;
  private readonly chat: ChatTemplate | undefined;

  /** Loads `tokenizer.json` and `tokenizer_config.json` (required), `generation_config.json` and `config.json`. */
  static async fromDir(dir: string): Promise<Tokenizer> {
    // The required files first, in order, so that a directory missing both names tokenizer.json.
    const tokenizer = await readRequiredJson(dir, 'tokenizer.json');
    const tokenizerConfig = await readRequiredJson(dir, 'tokenizer_config.json');
    const [generationConfig, config, chatTemplate] = await Promise.all([
      readOptionalJson(dir, 'generation_config.json'),
      readOptionalJson(dir, 'config.json'),
      readText(dir, 'chat_template.jinja'),
    ]);
    return new Tokenizer({ tokenizer, tokenizerConfig, generationConfig, config, chatTemplate });
  }

  constructor(files: TokenizerFiles) {
    this.hf = buildHfTokenizer(files.tokenizer, files.tokenizerConfig);
    this.vocabSize = maxId(this.hf.get_vocab(true)) + 1;
    const tokens = templateTokens(files.tokenizerConfig);
    this.eosTokenIds = this.collectEosIds(files, tokens.eos_token);
    this.bosTokenId = this.findBosId(files, tokens.bos_token);
    const source = selectChatTemplate(files.tokenizerConfig['chat_template']) ?? files.chatTemplate;
    this.chat = source === undefined ? undefined : new ChatTemplate(source, tokens);
    this.hasChatTemplate = this.chat !== undefined;
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    return this.hf.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
  }

  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    // tokenizers.js rejects an empty list; HF returns "".
    if (ids.length === 0) return '';
    // decode only reads the array; the cast avoids copying on the per-token streaming path.
    return this.hf.decode(ids as number[], { skip_special_tokens: opts.skipSpecialTokens ?? true });
  }

  applyChatTemplate(messages: readonly ChatMessage[], opts: ChatRenderOptions = {}): string {
    if (!this.chat) throw new ChatTemplateError('model has no chat template');
    return this.chat.render(messages, opts);
  }

  /** The id of a token string (special tokens included), or undefined. */
  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  // Union, in file order: generation_config.json, config.json, then tokenizer_config's eos_token.
  private collectEosIds(files: TokenizerFiles, eosToken: string | undefined): number[] {
    const ids = new Set<number>([...tokenIds(files.generationConfig?.['eos_token_id']), ...tokenIds(files.config?.['eos_token_id'])]);
    const fromTokenizer = eosToken === undefined ? undefined : this.tokenToId(eosToken);
    if (fromTokenizer !== undefined) ids.add(fromTokenizer);
    return [...ids];
  }

  // The tokenizer's own BOS wins (it is what encode adds); the config files are fallbacks.
  private findBosId(files: TokenizerFiles, bosToken: string | undefined): number | undefined {
    const fromTokenizer = bosToken === undefined ? undefined : this.tokenToId(bosToken);
    return fromTokenizer ?? tokenIds(files.generationConfig?.['bos_token_id'])[0] ?? tokenIds(files.config?.['bos_token_id'])[0];
  }
}

function buildHfTokenizer(tokenizer: JsonObject, tokenizerConfig: JsonObject): HfTokenizer {
  try {
    return new HfTokenizer(tokenizer, tokenizerConfig);
  } catch (err) {
    const reason = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new Error(`tokenizer.json: unsupported or malformed tokenizer (${reason})`, { cause: err });
  }
}

function templateTokens(config: JsonObject): TemplateTokens {
  const out: Record<string, string> = {};
  for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token'] as const) {
    const text = specialTokenText(config[key]);
    if (text !== undefined) out[key] = text;
  }
  return out;
}

/** `eos_token_id` may be a number, a list of numbers, or absent/null. */
function tokenIds(value: unknown): number[] {
  const list = Array.isArray(value) ? (value as unknown[]) : [value];
  return list.filter((v): v is number => Number.isInteger(v) && (v as number) >= 0);
}

function maxId(vocab: ReadonlyMap<string, number>): number {
  let max = -1;
  for (const id of vocab.values()) if (id > max) max = id;
  return max;
}

async function readRequiredJson(dir: string, file: string): Promise<JsonObject> {
  const json = await readOptionalJson(dir, file);
  if (json === undefined) throw new Error(`${file} not found in ${dir}`);
  return json;
}

async function readOptionalJson(dir: string, file: string): Promise<JsonObject | undefined> {
  const text = await readText(dir, file);
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: invalid JSON`, { cause: err });
  }
  if (!isRecord(value)) throw new Error(`${file}: expected a JSON object`);
  return value;
}

/** The file's text, or undefined when it does not exist; other I/O errors name the file. */
async function readText(dir: string, file: string): Promise<string | undefined> {
  try {
    return await readFile(join(dir, file), 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    throw new Error(`${file}: cannot read in ${dir} (${code ?? String(err)})`, { cause: err });
  }
}
