import { Ajv2020 } from 'ajv/dist/2020.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureTinyModel, JSON_SCHEMA_CASES } from '@pdserve/testkit';
import { Tokenizer } from '@pdserve/tokenizer';
import { GrammarCompiler, GrammarError, grammarFor, maskAllows, type GrammarMatcher } from './index';

const EOS = 2; // the tiny model's Llama-2 </s>
const V = 32000;
let compiler: GrammarCompiler;
let tokenizer: Tokenizer;
/** Tokens whose text closes something: a random walk that prefers them finishes. */
let closers: Set<number>;

beforeAll(async () => {
  const dir = await ensureTinyModel();
  compiler = await GrammarCompiler.forModel(dir, V, [EOS]);
  tokenizer = await Tokenizer.fromDir(dir);
  closers = new Set();
  for (let id = 3; id < V; id++) if (/["\]}]/.test(tokenizer.decode([id]))) closers.add(id);
});

/** Walks the grammar choosing allowed tokens at random (seeded), EOS and closers half the time. */
function walk(m: GrammarMatcher, seed: number, maxSteps = 2000): number[] {
  let s = seed >>> 0;
  const rnd = (): number => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0), s / 2 ** 32);
  const mask = new Int32Array(compiler.maskWords);
  const out: number[] = [];
  for (let step = 0; step < maxSteps && !m.isTerminated; step++) {
    m.fillNextTokenMask(mask);
    const allowed: number[] = [];
    for (let id = 0; id < V; id++) if (maskAllows(mask, id)) allowed.push(id);
    expect(allowed.length).toBeGreaterThan(0);
    const close = allowed.filter((id) => closers.has(id));
    let tok: number;
    if (allowed.includes(EOS) && rnd() < 0.5) tok = EOS;
    else if (close.length > 0 && rnd() < 0.5) tok = close[Math.floor(rnd() * close.length)]!;
    else tok = allowed[Math.floor(rnd() * allowed.length)]!;
    expect(m.accept(tok)).toBe(true);
    out.push(tok);
  }
  return out;
}

/** Token ids for exact vocabulary pieces (encode() would prepend Llama's '▁'). */
function pieces(...texts: string[]): number[] {
  return texts.map((t) => {
    const id = tokenizer.tokenToId(t);
    if (id === undefined) throw new Error(`no token ${t}`);
    return id;
  });
}

function text(tokens: number[]): string {
  return tokenizer.decode(tokens.filter((t) => t !== EOS));
}

describe('random walks through the mask always give valid JSON', () => {
  const ajv = new Ajv2020({ strict: false });
  for (const { name, schema } of JSON_SCHEMA_CASES) {
    it(name, () => {
      const validate = ajv.compile(schema);
      const compiled = compiler.compile({ kind: 'json_schema', schema });
      for (let seed = 1; seed <= 12; seed++) {
        const m = compiled.matcher();
        try {
          const out = walk(m, seed);
          expect(m.isTerminated).toBe(true);
          let value: unknown;
          try {
            value = JSON.parse(text(out));
          } catch (e) {
            throw new Error(
              `${(e as Error).message}: ${JSON.stringify(text(out))} ${JSON.stringify(out.map((t) => tokenizer.decode([t])))}`,
            );
          }
          expect(validate(value), `${text(out)} ${JSON.stringify(validate.errors)}`).toBe(true);
        } finally {
          m.dispose();
        }
      }
    });
  }

  it('json_object', () => {
    const compiled = compiler.compile({ kind: 'json_object' });
    for (let seed = 1; seed <= 12; seed++) {
      const m = compiled.matcher();
      const out = walk(m, seed);
      m.dispose();
      const value: unknown = JSON.parse(text(out));
      expect(typeof value === 'object' && value !== null && !Array.isArray(value)).toBe(true);
    }
  });
});

describe('matcher', () => {
  const schema = { type: 'object', properties: { n: { type: 'integer', minimum: 0, maximum: 99 } }, required: ['n'] };

  it('compiles once per constraint (cached)', () => {
    const a = compiler.compile({ kind: 'json_schema', schema });
    expect(compiler.compile({ kind: 'json_schema', schema })).toBe(a);
    expect(compiler.compile({ kind: 'json_schema', schema, strict: false })).not.toBe(a);
  });

  it('allows EOS only when the value is complete, then terminates', () => {
    const m = compiler.compile({ kind: 'json_schema', schema }).matcher();
    const mask = new Int32Array(compiler.maskWords);
    const ids = pieces('{', '"', 'n', '":', '▁', '4', '2', '}');
    for (const id of ids) {
      m.fillNextTokenMask(mask);
      expect(maskAllows(mask, EOS)).toBe(false);
      expect(maskAllows(mask, id)).toBe(true);
      expect(m.accept(id)).toBe(true);
    }
    m.fillNextTokenMask(mask);
    expect(maskAllows(mask, EOS)).toBe(true);
    expect(m.isTerminated).toBe(false);
    expect(m.accept(EOS)).toBe(true);
    expect(m.isTerminated).toBe(true);
    m.dispose();
  });

  it('rejects a token the grammar does not allow, state unchanged', () => {
    const m = compiler.compile({ kind: 'json_schema', schema }).matcher();
    const [x, brace] = pieces('x', '{');
    expect(m.accept(x!)).toBe(false);
    expect(m.numAccepted).toBe(0);
    expect(m.accept(brace!)).toBe(true);
    m.dispose();
  });

  it('rolls back N tokens to the same mask, and rebuilds from a token list', () => {
    const compiled = compiler.compile({ kind: 'json_schema', schema });
    const ids = pieces('{', '"', 'n', '":', '▁', '4');
    const m = compiled.matcher();
    const masks: Int32Array[] = [];
    for (const id of ids) {
      const mask = new Int32Array(compiler.maskWords);
      m.fillNextTokenMask(mask);
      masks.push(mask);
      m.accept(id);
    }
    m.rollback(3);
    expect(m.numAccepted).toBe(ids.length - 3);
    const again = new Int32Array(compiler.maskWords);
    m.fillNextTokenMask(again);
    expect(again).toEqual(masks[ids.length - 3]);
    expect(() => m.rollback(ids.length)).toThrow(RangeError);

    const rebuilt = compiled.matcher(ids.slice(0, ids.length - 3));
    const fromRebuilt = new Int32Array(compiler.maskWords);
    rebuilt.fillNextTokenMask(fromRebuilt);
    expect(fromRebuilt).toEqual(again);
    expect(() => compiled.matcher([...ids, ...pieces('x')])).toThrow(GrammarError);
    m.dispose();
    rebuilt.dispose();
  });
});

describe('unsupported schemas are refused, naming the part', () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ type: 'string', format: 'email' }, /#: the keyword "format" is not supported/],
    [{ type: 'object', properties: { a: { type: 'array', uniqueItems: true } } }, /#\/properties\/a: "uniqueItems" is not supported/],
    [{ not: { type: 'string' } }, /"not" is not supported/],
    [{ type: 'string', pattern: '(?=a)b' }, /lookaround/],
    [{ type: 'string', pattern: '(a)\\1' }, /backreference/],
    [{ type: 'string', maxLength: 1000 }, /maxLength 1000 is above 32/],
    [{ type: 'integer', multipleOf: 3 }, /"multipleOf" is not supported/],
    [{ $ref: 'https://example.com/s.json' }, /only references inside the schema/],
    [{ oneOf: [{ type: 'string' }, { type: 'integer' }] }, /"oneOf" is not supported/],
    [{ allOf: [{ type: 'object' }, { required: ['a'] }] }, /"allOf" with more than one schema/],
    [{ type: 'bogus' }, /unknown type "bogus"/],
  ];
  for (const [schema, message] of cases) {
    it(JSON.stringify(schema), () => {
      expect(() => grammarFor({ kind: 'json_schema', schema })).toThrow(message);
      expect(() => grammarFor({ kind: 'json_schema', schema })).toThrow(GrammarError);
    });
  }

  it("a schema nested past the converter's stack (20,000 objects deep, or a pattern of 20,000 groups)", () => {
    let deep: Record<string, unknown> = { type: 'string' };
    for (let i = 0; i < 20_000; i++) deep = { type: 'object', properties: { a: deep }, required: ['a'] };
    expect(() => grammarFor({ kind: 'json_schema', schema: deep })).toThrow(/nested too deeply/);
    const pattern = '('.repeat(20_000) + 'a' + ')'.repeat(20_000);
    expect(() => grammarFor({ kind: 'json_schema', schema: { type: 'string', pattern } })).toThrow(GrammarError);
  });
});
