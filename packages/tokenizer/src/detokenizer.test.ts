import { describe, expect, it } from 'vitest';
import { IncrementalDetokenizer } from './detokenizer';
import type { ChatMessage, DecodeOptions, EncodeOptions, TextTokenizer } from './types';

/**
 * A toy SentencePiece tokenizer with byte fallback, decoded the way Llama's tokenizer.json does it:
 * special tokens removed, '▁' → ' ', byte tokens fused into UTF-8, then ONE leading space stripped.
 * Characters without a piece become one byte token per UTF-8 byte, so emoji and CJK split across tokens.
 */
class ToySentencePiece implements TextTokenizer {
  static readonly UNK = 0;
  static readonly BOS = 1;
  static readonly EOS = 2;
  private static readonly BYTE0 = 3;
  private static readonly SPECIALS = ['<unk>', '<s>', '</s>'];
  private readonly pieces = ['▁Hello', '▁world', 'Hello', '▁', '!', ',', '.', '▁the', '▁cat', '▁sat', 'wor', 'ld', '▁a', 'b', '▁b'];
  readonly vocabSize = ToySentencePiece.BYTE0 + 256 + this.pieces.length;
  readonly bosTokenId = ToySentencePiece.BOS;
  readonly eosTokenIds = [ToySentencePiece.EOS];
  readonly hasChatTemplate = false;
  /** Lengths of every decode call, to check the window stays bounded. */
  readonly decodeLengths: number[] = [];

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const ids: number[] = opts.addSpecialTokens === false ? [] : [ToySentencePiece.BOS];
    const s = '▁' + text.replaceAll(' ', '▁');
    let i = 0;
    while (i < s.length) {
      let best = -1;
      for (let p = 0; p < this.pieces.length; p++) {
        if (s.startsWith(this.pieces[p]!, i) && (best === -1 || this.pieces[p]!.length > this.pieces[best]!.length)) best = p;
      }
      if (best !== -1) {
        ids.push(ToySentencePiece.BYTE0 + 256 + best);
        i += this.pieces[best]!.length;
        continue;
      }
      const ch = String.fromCodePoint(s.codePointAt(i)!);
      for (const b of Buffer.from(ch.replaceAll('▁', ' '), 'utf8')) ids.push(ToySentencePiece.BYTE0 + b);
      i += ch.length;
    }
    return ids;
  }

  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    this.decodeLengths.push(ids.length);
    const skip = opts.skipSpecialTokens ?? true;
    let out = '';
    let bytes: number[] = [];
    const fuse = (): void => {
      if (bytes.length > 0) out += new TextDecoder('utf-8', { fatal: false }).decode(Uint8Array.from(bytes));
      bytes = [];
    };
    for (const id of ids) {
      if (id < ToySentencePiece.BYTE0) {
        if (!skip) {
          fuse();
          out += ToySentencePiece.SPECIALS[id];
        }
      } else if (id < ToySentencePiece.BYTE0 + 256) {
        bytes.push(id - ToySentencePiece.BYTE0);
      } else {
        fuse();
        out += this.pieces[id - ToySentencePiece.BYTE0 - 256]!.replaceAll('▁', ' ');
      }
    }
    fuse();
    return out.startsWith(' ') ? out.slice(1) : out;
  }

  applyChatTemplate(_messages: readonly ChatMessage[]): string {
    throw new Error('no chat template');
  }
}

function stream(tok: TextTokenizer, ids: readonly number[], prompt?: readonly number[]): string[] {
  const detok = new IncrementalDetokenizer(tok, { promptTokenIds: prompt });
  const deltas = ids.map((id) => detok.push(id));
  deltas.push(detok.flush());
  return deltas;
}

const TEXTS = [
  'Hello world!',
  'Hello 😀 world',
  '你好，世界。 the cat sat',
  '😀😀👩‍👩‍👧 ok',
  '  leading spaces and  double  spaces ',
  'ab b,b.wor ld',
  'é ñ ü — “quotes” 𝄞 music',
];

describe('IncrementalDetokenizer', () => {
  it('streams text whose concatenation equals decode(all), with no half characters', () => {
    const tok = new ToySentencePiece();
    for (const text of TEXTS) {
      const ids = tok.encode(text, { addSpecialTokens: false });
      const deltas = stream(tok, ids);
      expect(deltas.join('')).toBe(tok.decode(ids));
      for (const d of deltas) {
        expect(d).not.toContain('\uFFFD');
        expect(d).not.toMatch(/[\uD800-\uDBFF]$/); // never ends in half a surrogate pair
      }
    }
  });

  it('holds a 4-byte emoji until its last byte arrives', () => {
    const tok = new ToySentencePiece();
    const ids = tok.encode('Hello 😀', { addSpecialTokens: false });
    const deltas = stream(tok, ids);
    // ▁Hello, ▁ (byte-fallback space is a piece), then 4 byte tokens.
    expect(deltas.slice(-5)).toEqual(['', '', '', '😀', '']);
  });

  it('keeps the leading space of the first output token when given the prompt', () => {
    const tok = new ToySentencePiece();
    const prompt = tok.encode('Hello');
    const out = tok.encode(' world 你好', { addSpecialTokens: false }).slice(1); // drop the dummy-prefix '▁'
    const deltas = stream(tok, out, prompt);
    const all = tok.decode([...prompt, ...out]);
    expect(deltas.join('')).toBe(all.slice(tok.decode(prompt).length));
    expect(deltas[0]).toBe(' world');
  });

  it('skips special tokens and emits nothing for EOS', () => {
    const tok = new ToySentencePiece();
    const ids = [...tok.encode('Hello world'), ToySentencePiece.EOS];
    const deltas = stream(tok, ids);
    expect(deltas.join('')).toBe('Hello world');
    expect(deltas.at(-2)).toBe('');
  });

  it('keeps special tokens when asked', () => {
    const tok = new ToySentencePiece();
    const detok = new IncrementalDetokenizer(tok, { skipSpecialTokens: false });
    const text = [...tok.encode('Hello', { addSpecialTokens: false }), ToySentencePiece.EOS].map((id) => detok.push(id)).join('');
    expect(text + detok.flush()).toBe('Hello</s>');
  });

  it('flush emits a trailing incomplete character as U+FFFD', () => {
    const tok = new ToySentencePiece();
    const ids = tok.encode('Hello 😀', { addSpecialTokens: false }).slice(0, -2);
    const deltas = stream(tok, ids);
    expect(deltas.slice(0, -1).join('')).toBe('Hello ');
    expect(deltas.at(-1)).toBe('\uFFFD');
  });

  it('decodes a bounded window per token on long streams, including invalid bytes and special tokens', () => {
    const tok = new ToySentencePiece();
    const text = 'Hello world, the cat sat 😀 你好. '.repeat(200);
    const ids = tok.encode(text, { addSpecialTokens: false });
    const noisy: number[] = [];
    ids.forEach((id, i) => {
      noisy.push(id);
      if (i % 97 === 0) noisy.push(ToySentencePiece.BOS); // invisible tokens
    });
    for (let i = 0; i < 100; i++) noisy.push(3 + 0x80); // lone continuation bytes: invalid UTF-8
    noisy.push(...tok.encode('Hello', { addSpecialTokens: false }));
    tok.decodeLengths.length = 0;
    const deltas = stream(tok, noisy);
    expect(Math.max(...tok.decodeLengths)).toBeLessThanOrEqual(18);
    const joined = deltas.join('');
    expect(joined.startsWith(tok.decode(ids))).toBe(true);
    expect(joined.endsWith('Hello')).toBe(true);
  });
});
