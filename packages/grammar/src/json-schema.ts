// JSON Schema (and "any JSON object") to xgrammar EBNF. Our own converter, not xgrammar's: its 0.1.27
// converter lets bounded strings hold raw control characters and quotes (invalid JSON), writes numbers
// like 1e999 (Infinity when parsed), and silently drops allOf, not, contains, uniqueItems, multipleOf and
// format, so outputs fail validation (docs/grammar.md). Here every keyword is either enforced exactly
// or refused with an error that names it and where it is.
//
// Output is compact JSON with Python's json.dumps separators (", " and ": "), no other whitespace:
// a model cannot pad forever, and every value is written one way.
import { RuleSet, lit } from './ebnf';
import { GrammarError } from './errors';
import { integerNode, numberNode, type NumberBounds } from './numbers';
import { alt, chars, emitRegular, EMPTY, literal, MAX_REPEAT, parsePattern, rep, seq, type RegularNode } from './regular';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Schema = Record<string, unknown>;

export interface SchemaOptions {
  /**
   * true: an object schema without `additionalProperties` generates only its listed properties (as
   * xgrammar's strict mode and OpenAI's strict schemas do); false: JSON Schema's default, any extra
   * property is allowed.
   */
  readonly strict: boolean;
}

/** Keywords that only annotate: ignored. */
const ANNOTATIONS = new Set([
  'title',
  'description',
  '$schema',
  '$id',
  '$comment',
  'default',
  'examples',
  'deprecated',
  'readOnly',
  'writeOnly',
  '$defs',
  'definitions',
  '$anchor',
]);
const BY_TYPE: Record<string, readonly string[]> = {
  string: ['minLength', 'maxLength', 'pattern'],
  number: ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'],
  integer: ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'],
  object: ['properties', 'required', 'additionalProperties', 'minProperties', 'maxProperties'],
  array: ['items', 'prefixItems', 'minItems', 'maxItems', 'uniqueItems', 'additionalItems'],
  boolean: [],
  null: [],
};
const TYPES = Object.keys(BY_TYPE);
const COMBINATORS = ['type', 'enum', 'const', 'anyOf', 'allOf', '$ref', 'nullable'];
const SUPPORTED = new Set([...ANNOTATIONS, ...COMBINATORS, ...Object.values(BY_TYPE).flat()]);

/** Any character of a JSON string: unescaped, or one of the escapes models write most (\" \\ \n \t). */
const STRING_CHAR = chars(
  [
    [0x09, 0x0a],
    [0x20, 0x10ffff],
  ],
  true,
);
/** For counted strings only the unescaped characters: each count is a rule, and fewer alternatives compile faster. */
const PLAIN_CHAR = chars([[0x20, 0x10ffff]], false);

export function jsonSchemaGrammar(schema: unknown, opts: SchemaOptions): string {
  if (typeof schema !== 'object' && typeof schema !== 'boolean')
    throw new GrammarError('invalid_schema', 'a JSON schema must be an object or a boolean');
  const c = new Converter(schema as Schema | boolean, opts);
  return c.rules.toString(c.value(schema as Schema | boolean, '#'));
}

/** `response_format: json_object`: any JSON object. */
export function jsonObjectGrammar(): string {
  const c = new Converter({}, { strict: true });
  return c.rules.toString(c.anyObject());
}

class Converter {
  readonly rules = new RuleSet();
  private readonly refs = new Map<string, string>();
  private anyValueRule: string | undefined;
  private anyObjectRule: string | undefined;
  private stringRule: string | undefined;

  constructor(
    private readonly root: Schema | boolean,
    private readonly opts: SchemaOptions,
  ) {}

  /** A rule name (or a terminal) matching one JSON value valid against `s`. */
  value(s: Schema | boolean | unknown, path: string): string {
    if (s === true) return this.anyValue();
    if (s === false) throw new GrammarError('unsupported_schema', `${path}: the schema false allows no value`);
    if (typeof s !== 'object' || s === null || Array.isArray(s))
      throw new GrammarError('invalid_schema', `${path}: a schema must be an object or a boolean`);
    const schema = s as Schema;
    for (const k of Object.keys(schema)) {
      if (!SUPPORTED.has(k)) throw new GrammarError('unsupported_schema', `${path}: the keyword "${k}" is not supported`);
    }
    const constraining = Object.keys(schema).filter((k) => !ANNOTATIONS.has(k));
    if (schema['$ref'] !== undefined) {
      if (constraining.length > 1)
        throw new GrammarError(
          'unsupported_schema',
          `${path}: "$ref" beside other keywords (${constraining.filter((k) => k !== '$ref').join(', ')}) is not supported`,
        );
      return this.ref(schema['$ref'], path);
    }
    if (schema['allOf'] !== undefined) {
      const all = schema['allOf'];
      if (!Array.isArray(all) || all.length === 0) throw new GrammarError('invalid_schema', `${path}/allOf: must be a non-empty array`);
      if (all.length > 1 || constraining.length > 1)
        throw new GrammarError('unsupported_schema', `${path}: "allOf" with more than one schema is not supported`);
      return this.value(all[0], `${path}/allOf/0`);
    }
    if (schema['anyOf'] !== undefined) {
      const any = schema['anyOf'];
      if (!Array.isArray(any) || any.length === 0) throw new GrammarError('invalid_schema', `${path}/anyOf: must be a non-empty array`);
      if (constraining.length > 1)
        throw new GrammarError(
          'unsupported_schema',
          `${path}: "anyOf" beside other keywords (${constraining.filter((k) => k !== 'anyOf').join(', ')}) is not supported`,
        );
      return this.rules.add('any_of', any.map((b, i) => this.value(b, `${path}/anyOf/${i}`)).join(' | '));
    }
    const types = this.typesOf(schema, path);
    if (schema['enum'] !== undefined || schema['const'] !== undefined) return this.enumeration(schema, types, path);
    const alts = types.map((t) => this.typed(t, schema, path));
    return alts.length === 1 ? alts[0]! : this.rules.add('value', alts.join(' | '));
  }

  private typesOf(schema: Schema, path: string): string[] {
    const t = schema['type'];
    let types: string[];
    if (t === undefined) {
      // No type: keywords only constrain their own type; generating only those types is a valid subset.
      types = TYPES.filter((ty) => BY_TYPE[ty]!.some((k) => k in schema) && ty !== 'integer');
      if (types.length === 0) types = ['object', 'array', 'string', 'number', 'boolean', 'null'];
    } else {
      types = Array.isArray(t) ? (t as unknown[]).map(String) : [String(t)];
      for (const ty of types)
        if (!TYPES.includes(ty)) throw new GrammarError('invalid_schema', `${path}/type: unknown type ${JSON.stringify(ty)}`);
    }
    if (schema['nullable'] === true && !types.includes('null')) types.push('null');
    // Keywords that apply to none of the types would be silently meaningless: a likely mistake, but valid.
    return types;
  }

  private enumeration(schema: Schema, types: string[], path: string): string {
    const values = schema['const'] !== undefined ? [schema['const']] : schema['enum'];
    if (!Array.isArray(values)) throw new GrammarError('invalid_schema', `${path}/enum: must be an array`);
    const extra = Object.keys(schema).filter((k) => !ANNOTATIONS.has(k) && !['enum', 'const', 'type', 'nullable'].includes(k));
    if (extra.length > 0)
      throw new GrammarError(
        'unsupported_schema',
        `${path}: "${schema['const'] !== undefined ? 'const' : 'enum'}" beside ${extra.join(', ')} is not supported`,
      );
    const explicitType = schema['type'] !== undefined;
    const kept = (values as Json[]).filter((v) => !explicitType || types.some((t) => jsonType(v, t)));
    if (kept.length === 0) throw new GrammarError('unsupported_schema', `${path}: no enum value matches the type`);
    return this.rules.add('enum', [...new Set(kept.map((v) => lit(jsonText(v))))].join(' | '));
  }

  private typed(type: string, s: Schema, path: string): string {
    switch (type) {
      case 'null':
        return lit('null');
      case 'boolean':
        return this.rules.add('boolean', `${lit('true')} | ${lit('false')}`);
      case 'integer':
        return this.regular(integerNode(this.bounds(s, path), path), '""', 'integer', path);
      case 'number':
        return this.regular(numberNode(this.bounds(s, path), path), '""', 'number', path);
      case 'string':
        return this.string(s, path);
      case 'array':
        return this.array(s, path);
      default:
        return this.object(s, path);
    }
  }

  private regular(node: RegularNode, next: string, hint: string, path = '#'): string {
    const body = emitRegular(this.rules, node, next, hint, path);
    return /^[A-Za-z0-9_]+$/.test(body) ? body : this.rules.add(hint, body);
  }

  private bounds(s: Schema, path: string): NumberBounds {
    const num = (k: string): number | undefined => {
      const v = s[k];
      if (v === undefined) return undefined;
      if (typeof v === 'boolean') throw new GrammarError('unsupported_schema', `${path}/${k}: the draft-4 boolean form is not supported`);
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new GrammarError('invalid_schema', `${path}/${k}: must be a number`);
      return v;
    };
    return {
      minimum: num('minimum'),
      maximum: num('maximum'),
      exclusiveMinimum: num('exclusiveMinimum'),
      exclusiveMaximum: num('exclusiveMaximum'),
    };
  }

  private count(s: Schema, k: string, path: string): number | undefined {
    const v = s[k];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0)
      throw new GrammarError('invalid_schema', `${path}/${k}: must be a non-negative integer`);
    return v;
  }

  private string(s: Schema, path: string): string {
    const min = this.count(s, 'minLength', path) ?? 0;
    const max = this.count(s, 'maxLength', path) ?? Infinity;
    if (min > max) throw new GrammarError('unsupported_schema', `${path}: minLength ${min} is above maxLength ${max}`);
    const pattern = s['pattern'];
    let node: RegularNode;
    if (pattern !== undefined) {
      if (typeof pattern !== 'string') throw new GrammarError('invalid_schema', `${path}/pattern: must be a string`);
      if ('minLength' in s || 'maxLength' in s)
        throw new GrammarError('unsupported_schema', `${path}: "pattern" together with minLength/maxLength is not supported`);
      try {
        new RegExp(pattern, 'u');
      } catch (err) {
        throw new GrammarError('invalid_schema', `${path}/pattern: not a valid regular expression (${(err as Error).message})`);
      }
      node = parsePattern(pattern, `${path}/pattern`);
    } else if (min === 0 && max === Infinity) {
      return this.plainString();
    } else {
      if (max !== Infinity && max > MAX_REPEAT) {
        throw new GrammarError(
          'unsupported_schema',
          `${path}: maxLength ${max} is above ${MAX_REPEAT}, the longest counted string this engine compiles`,
        );
      }
      node = max === Infinity ? seq(rep(PLAIN_CHAR, min, min), rep(STRING_CHAR, 0, Infinity)) : rep(PLAIN_CHAR, min, max);
    }
    return this.rules.add('string', `${lit('"')} ${this.regular(node, lit('"'), 'str', path)}`);
  }

  private plainString(): string {
    this.stringRule ??= this.rules.add('string', `${lit('"')} ${this.regular(rep(STRING_CHAR, 0, Infinity), lit('"'), 'chars')}`);
    return this.stringRule;
  }

  private array(s: Schema, path: string): string {
    const min = this.count(s, 'minItems', path) ?? 0;
    const max = this.count(s, 'maxItems', path) ?? Infinity;
    if (min > max) throw new GrammarError('unsupported_schema', `${path}: minItems ${min} is above maxItems ${max}`);
    if (s['uniqueItems'] === true) throw new GrammarError('unsupported_schema', `${path}: "uniqueItems" is not supported`);
    let prefix: unknown[] = [];
    let rest: unknown = s['items'];
    if (Array.isArray(s['items'])) {
      // Draft 4-2019 tuple form: items is the prefix, additionalItems the rest.
      prefix = s['items'] as unknown[];
      rest = s['additionalItems'];
    } else if (s['prefixItems'] !== undefined) {
      if (!Array.isArray(s['prefixItems'])) throw new GrammarError('invalid_schema', `${path}/prefixItems: must be an array`);
      prefix = s['prefixItems'] as unknown[];
    } else if ('additionalItems' in s) {
      throw new GrammarError('unsupported_schema', `${path}: "additionalItems" without a tuple "items" is not supported`);
    }
    if (rest === undefined) rest = prefix.length > 0 && this.opts.strict ? false : true;
    const restMax = rest === false ? prefix.length : max;
    if (min > restMax) throw new GrammarError('unsupported_schema', `${path}: minItems ${min} exceeds the ${prefix.length} items allowed`);
    const hi = Math.min(max, restMax);
    if (hi !== Infinity && hi > MAX_REPEAT && hi > prefix.length) {
      throw new GrammarError(
        'unsupported_schema',
        `${path}: maxItems ${hi} is above ${MAX_REPEAT}, the most counted items this engine compiles`,
      );
    }
    if (min > MAX_REPEAT) throw new GrammarError('unsupported_schema', `${path}: minItems ${min} is above ${MAX_REPEAT}`);
    const item = (i: number): string =>
      i < prefix.length
        ? this.value(prefix[i], `${path}/${Array.isArray(s['items']) ? 'items' : 'prefixItems'}/${i}`)
        : this.value(rest, `${path}/${Array.isArray(s['items']) ? 'additionalItems' : 'items'}`);
    // after(j): the rest of the array once j items are written (the first item takes no comma).
    const memo = new Map<number, string>();
    let loop: string | undefined;
    const after = (j: number): string => {
      const known = memo.get(j);
      if (known) return known;
      let body: string;
      if (j >= prefix.length && j >= min && hi === Infinity) {
        if (loop === undefined) {
          loop = this.rules.reserve('items');
          this.rules.define(loop, `${lit(']')} | ${lit(', ')} ${item(Math.max(j, 1))} ${loop}`);
        }
        if (j > 0) return loop;
        body = `${lit(']')} | ${item(0)} ${loop}`;
      } else {
        const alts: string[] = [];
        if (j >= min) alts.push(lit(']'));
        if (j < hi) alts.push(`${j === 0 ? '' : `${lit(', ')} `}${item(j)} ${after(j + 1)}`);
        body = alts.join(' | ');
      }
      const name = this.rules.add('items', body);
      memo.set(j, name);
      return name;
    };
    return this.rules.add('array', `${lit('[')} ${after(0)}`);
  }

  private object(s: Schema, path: string): string {
    const props = s['properties'] ?? {};
    if (typeof props !== 'object' || props === null || Array.isArray(props))
      throw new GrammarError('invalid_schema', `${path}/properties: must be an object`);
    const names = Object.keys(props);
    const required = s['required'] ?? [];
    if (!Array.isArray(required)) throw new GrammarError('invalid_schema', `${path}/required: must be an array`);
    for (const r of required) {
      if (!names.includes(String(r)))
        throw new GrammarError('unsupported_schema', `${path}/required: "${String(r)}" is required but not in properties`);
    }
    let extra = s['additionalProperties'];
    if (extra === undefined) extra = !this.opts.strict;
    const minP = this.count(s, 'minProperties', path);
    const maxP = this.count(s, 'maxProperties', path);
    if (minP !== undefined && minP > required.length)
      throw new GrammarError('unsupported_schema', `${path}: "minProperties" above the number of required properties is not supported`);
    if (maxP !== undefined && (extra !== false || maxP < names.length))
      throw new GrammarError('unsupported_schema', `${path}: "maxProperties" below the number of possible properties is not supported`);
    const kv = (name: string): string =>
      `${lit(`${JSON.stringify(name)}: `)} ${this.value((props as Schema)[name], `${path}/properties/${escapePointer(name)}`)}`;
    // first(i)/more(i): properties from i on, when none / some were written before (then each needs ", ").
    let first: string;
    let more: string;
    if (extra === false) {
      first = lit('}');
      more = lit('}');
    } else {
      const key = this.keyExcept(names);
      const pair = `${key} ${this.value(extra, `${path}/additionalProperties`)}`;
      more = this.rules.reserve('extra');
      this.rules.define(more, `${lit('}')} | ${lit(', ')} ${pair} ${more}`);
      first = this.rules.add('extra', `${lit('}')} | ${pair} ${more}`);
    }
    for (let i = names.length - 1; i >= 0; i--) {
      const req = required.includes(names[i]!);
      const written = kv(names[i]!);
      const f = [`${written} ${more}`, ...(req ? [] : [first])].join(' | ');
      const m = [`${lit(', ')} ${written} ${more}`, ...(req ? [] : [more])].join(' | ');
      first = this.rules.add('props', f);
      more = this.rules.add('props', m);
    }
    return this.rules.add('object', `${lit('{')} ${first}`);
  }

  /** `"key": ` for any key but the listed ones (JSON.parse keeps the last duplicate, which would override a listed value). */
  private keyExcept(names: readonly string[]): string {
    const any = rep(STRING_CHAR, 0, Infinity);
    const build = (prefix: string): RegularNode => {
      const next = new Set<number>();
      for (const n of names) if (n.startsWith(prefix) && n.length > prefix.length) next.add(n.codePointAt(prefix.length)!);
      const opts: RegularNode[] = [];
      if (!names.includes(prefix)) opts.push(EMPTY);
      for (const cp of next) opts.push(seq(literal(String.fromCodePoint(cp)), build(prefix + String.fromCodePoint(cp))));
      const others = [...next].sort((a, b) => a - b);
      const ranges: [number, number][] = [];
      let lo = 0;
      for (const cp of others) {
        if (cp > lo) ranges.push([lo, cp - 1]);
        lo = cp + 1;
      }
      ranges.push([lo, 0x10ffff]);
      opts.push(seq(chars(ranges, false), any));
      return alt(...opts);
    };
    const node = names.length === 0 ? any : build('');
    return this.rules.add('key', `${lit('"')} ${this.regular(node, lit('": '), 'key')}`);
  }

  private ref(ref: unknown, path: string): string {
    if (typeof ref !== 'string') throw new GrammarError('invalid_schema', `${path}/$ref: must be a string`);
    const known = this.refs.get(ref);
    if (known) return known;
    if (ref !== '#' && !ref.startsWith('#/'))
      throw new GrammarError(
        'unsupported_schema',
        `${path}/$ref: only references inside the schema ("#/...") are supported, not ${JSON.stringify(ref)}`,
      );
    let target: unknown = this.root;
    for (const part of ref === '#' ? [] : ref.slice(2).split('/')) {
      const key = decodeURIComponent(part).replace(/~1/g, '/').replace(/~0/g, '~');
      if (typeof target !== 'object' || target === null || !(key in target))
        throw new GrammarError('invalid_schema', `${path}/$ref: ${ref} points at nothing`);
      target = (target as Record<string, unknown>)[key];
    }
    // Reserved before the body so a recursive schema refers to itself.
    const name = this.rules.reserve('ref');
    this.refs.set(ref, name);
    this.rules.define(name, this.value(target, ref));
    return name;
  }

  anyValue(): string {
    if (this.anyValueRule) return this.anyValueRule;
    this.anyValueRule = this.rules.reserve('value');
    const number = this.regular(numberNode({}, 'value'), '""', 'number');
    const array = this.rules.reserve('array');
    const arrayMore = this.rules.reserve('array_more');
    this.rules.define(arrayMore, `${lit(']')} | ${lit(', ')} ${this.anyValueRule} ${arrayMore}`);
    this.rules.define(array, `${lit('[')} ${lit(']')} | ${lit('[')} ${this.anyValueRule} ${arrayMore}`);
    this.rules.define(
      this.anyValueRule,
      [this.anyObject(), array, this.plainString(), number, lit('true'), lit('false'), lit('null')].join(' | '),
    );
    return this.anyValueRule;
  }

  anyObject(): string {
    if (this.anyObjectRule) return this.anyObjectRule;
    this.anyObjectRule = this.rules.reserve('object');
    const value = this.anyValue();
    const key = this.keyExcept([]);
    const more = this.rules.reserve('members');
    this.rules.define(more, `${lit('}')} | ${lit(', ')} ${key} ${value} ${more}`);
    this.rules.define(this.anyObjectRule, `${lit('{')} ${lit('}')} | ${lit('{')} ${key} ${value} ${more}`);
    return this.anyObjectRule;
  }
}

function jsonType(v: Json, t: string): boolean {
  switch (t) {
    case 'null':
      return v === null;
    case 'boolean':
      return typeof v === 'boolean';
    case 'integer':
      return typeof v === 'number' && Number.isInteger(v);
    case 'number':
      return typeof v === 'number';
    case 'string':
      return typeof v === 'string';
    case 'array':
      return Array.isArray(v);
    default:
      return typeof v === 'object' && v !== null && !Array.isArray(v);
  }
}

/** JSON text with the grammar's separators. */
function jsonText(v: Json): string {
  if (Array.isArray(v)) return `[${v.map(jsonText).join(', ')}]`;
  if (typeof v === 'object' && v !== null)
    return `{${Object.entries(v)
      .map(([k, x]) => `${JSON.stringify(k)}: ${jsonText(x)}`)
      .join(', ')}}`;
  return JSON.stringify(v);
}

function escapePointer(s: string): string {
  return s.replace(/~/g, '~0').replace(/\//g, '~1');
}
