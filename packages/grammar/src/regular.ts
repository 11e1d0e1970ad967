// Regular languages over characters (JSON Schema `pattern`s, string lengths, number ranges) and their
// emission as right-linear xgrammar rules, written inside a JSON string with JSON's escapes.
import { charClass, lit, normalizeRanges, intersectRanges, RuleSet, type Range } from './ebnf';
import { GrammarError } from './errors';

export type RegularNode =
  /** One character from `ranges`. `exact`: members that JSON must escape are kept (as escapes); else dropped. */
  | { readonly t: 'set'; readonly ranges: readonly Range[]; readonly exact: boolean }
  | { readonly t: 'seq'; readonly items: readonly RegularNode[] }
  | { readonly t: 'alt'; readonly options: readonly RegularNode[] }
  /** max may be Infinity. */
  | { readonly t: 'rep'; readonly node: RegularNode; readonly min: number; readonly max: number };

/** Largest finite repeat count unrolled (`{0,40}`, maxLength 40): each count is a rule xgrammar compiles over the whole vocabulary. */
export const MAX_REPEAT = 32;
/** Rules one constraint may produce; beyond it compilation would take seconds. */
export const MAX_RULES = 4000;

export const EMPTY: RegularNode = { t: 'seq', items: [] };

export function chars(ranges: readonly Range[], exact = true): RegularNode {
  return { t: 'set', ranges: normalizeRanges(ranges), exact };
}
export function literal(text: string): RegularNode {
  return { t: 'seq', items: [...text].map((c) => chars([[c.codePointAt(0)!, c.codePointAt(0)!]])) };
}
export function seq(...items: RegularNode[]): RegularNode {
  return items.length === 1 ? items[0]! : { t: 'seq', items };
}
export function alt(...options: RegularNode[]): RegularNode {
  return options.length === 1 ? options[0]! : { t: 'alt', options };
}
export function rep(node: RegularNode, min: number, max: number): RegularNode {
  return { t: 'rep', node, min, max };
}
export const DIGIT = chars([[0x30, 0x39]]);

/** ASCII characters a JSON string holds without an escape. */
const UNESCAPED_ASCII: readonly Range[] = [
  [0x20, 0x21],
  [0x23, 0x5b],
  [0x5d, 0x7f],
];
const NON_ASCII: readonly Range[] = [[0x80, 0x10ffff]];
/** Non-ASCII members listed one by one (a class cannot hold them, see charClass); more is refused. */
const MAX_LISTED_CHARS = 256;
const SHORT_ESCAPES = new Map<number, string>([
  [0x22, '\\"'],
  [0x5c, '\\\\'],
  [0x08, '\\b'],
  [0x0c, '\\f'],
  [0x0a, '\\n'],
  [0x0d, '\\r'],
  [0x09, '\\t'],
]);

/** The terminal pieces (EBNF expressions) that write one character of `set` in JSON; where names the schema part. */
function pieces(set: Extract<RegularNode, { t: 'set' }>, where: string): string[] {
  const out: string[] = [];
  const plain = intersectRanges(set.ranges, UNESCAPED_ASCII);
  const high = intersectRanges(set.ranges, NON_ASCII);
  if (high.length === 1 && high[0]![0] === 0x80 && high[0]![1] === 0x10ffff) {
    // Every non-ASCII character: written as "all but these ASCII ones".
    out.push(charClass(complementAscii(plain), true));
  } else {
    if (plain.length > 0) out.push(charClass(plain));
    const count = high.reduce((n, [lo, hi]) => n + hi - lo + 1, 0);
    if (count <= MAX_LISTED_CHARS) {
      for (const [lo, hi] of high)
        for (let cp = lo; cp <= hi; cp++) if (cp < 0xd800 || cp > 0xdfff) out.push(lit(String.fromCodePoint(cp)));
    } else if (set.exact) {
      throw new GrammarError(
        'unsupported_schema',
        `${where}: a character class with more than ${MAX_LISTED_CHARS} non-ASCII characters (but not all of them) is not supported`,
      );
    } // else: a negated class or an escape like \S: the ASCII part alone is a valid subset
  }
  if (set.exact) {
    for (const [lo, hi] of set.ranges) {
      for (let cp = lo; cp <= Math.min(hi, 0x5c); cp++) {
        if (cp >= 0x20 && cp !== 0x22 && cp !== 0x5c) continue;
        out.push(lit(SHORT_ESCAPES.get(cp) ?? `\\u${cp.toString(16).padStart(4, '0')}`));
      }
    }
  }
  return out;
}

/** ASCII code points not in `ranges`. */
function complementAscii(ranges: readonly Range[]): Range[] {
  const out: Range[] = [];
  let next = 0;
  for (const [lo, hi] of normalizeRanges(ranges)) {
    if (lo > 0x7f) break;
    if (lo > next) out.push([next, lo - 1]);
    next = hi + 1;
  }
  if (next <= 0x7f) out.push([next, 0x7f]);
  return out;
}

/**
 * Adds rules matching `node` then `next` (an EBNF expression: a rule name or a terminal), and returns
 * the body of alternatives, each a terminal followed by a rule, or `next` itself when node can be empty.
 */
export function emitRegular(rules: RuleSet, node: RegularNode, next: string, hint: string, where = hint): string {
  const named = (body: string): string => {
    if (rules.size > MAX_RULES) throw new GrammarError('unsupported_schema', `the grammar needs more than ${MAX_RULES} rules`);
    return /^[A-Za-z0-9_]+$/.test(body) ? body : rules.add(hint, body);
  };
  const emit = (n: RegularNode, k: string): string => {
    switch (n.t) {
      case 'set': {
        const ps = pieces(n, where);
        if (ps.length === 0)
          throw new GrammarError('unsupported_schema', `${where}: a character class matches no character that JSON text can hold`);
        return ps.map((p) => `${p} ${k}`).join(' | ');
      }
      case 'seq': {
        let cont = k;
        for (let i = n.items.length - 1; i >= 0; i--) cont = i === 0 ? emit(n.items[i]!, cont) : named(emit(n.items[i]!, cont));
        return cont;
      }
      case 'alt':
        return [...new Set(n.options.map((o) => emit(o, k)))].join(' | ');
      case 'rep': {
        if (n.max !== Infinity && n.max > MAX_REPEAT) {
          throw new GrammarError('unsupported_schema', `${where}: a repeat of up to ${n.max} (more than ${MAX_REPEAT}) is not supported`);
        }
        if (n.min > MAX_REPEAT)
          throw new GrammarError(
            'unsupported_schema',
            `${where}: a repeat of at least ${n.min} (more than ${MAX_REPEAT}) is not supported`,
          );
        let cont = k;
        if (n.max === Infinity) {
          // loop ::= k | node loop
          const loop = rules.reserve(hint);
          rules.define(loop, `${k} | ${emit(n.node, loop)}`);
          cont = loop;
        } else {
          for (let i = n.max - n.min; i > 0; i--) cont = named(`${k} | ${emit(n.node, cont)}`);
        }
        for (let i = 0; i < n.min; i++) cont = named(emit(n.node, cont));
        return cont;
      }
    }
  };
  return emit(node, next);
}

// ---- ECMAScript patterns (JSON Schema `pattern`, matched with the `u` flag as ajv does) ----

const D: Range[] = [[0x30, 0x39]];
const W: Range[] = [
  [0x30, 0x39],
  [0x41, 0x5a],
  [0x5f, 0x5f],
  [0x61, 0x7a],
];
const S: Range[] = [
  [0x09, 0x0d],
  [0x20, 0x20],
  [0xa0, 0xa0],
  [0x1680, 0x1680],
  [0x2000, 0x200a],
  [0x2028, 0x2029],
  [0x202f, 0x202f],
  [0x205f, 0x205f],
  [0x3000, 0x3000],
  [0xfeff, 0xfeff],
];
const LINE_TERMINATORS: Range[] = [
  [0x0a, 0x0a],
  [0x0d, 0x0d],
  [0x2028, 0x2029],
];
const ANY: Range[] = [[0, 0x10ffff]];

function complement(r: readonly Range[]): Range[] {
  const out: Range[] = [];
  let next = 0;
  for (const [lo, hi] of normalizeRanges(r)) {
    if (lo > next) out.push([next, lo - 1]);
    next = hi + 1;
  }
  if (next <= 0x10ffff) out.push([next, 0x10ffff]);
  return out;
}

/**
 * The strings a JSON Schema `pattern` accepts, as a regular node (unanchored ends match anything).
 * Unsupported syntax (lookaround, backreferences, \b, \p{...}, anchors inside) is a GrammarError that
 * names it.
 */
export function parsePattern(pattern: string, where: string): RegularNode {
  const src = [...pattern];
  let pos = 0;
  const fail = (what: string): never => {
    throw new GrammarError('unsupported_schema', `${where}: pattern ${JSON.stringify(pattern)} uses ${what}, which is not supported`);
  };
  const peek = (): string | undefined => src[pos];
  const anyText = rep(chars(ANY, false), 0, Infinity);

  const parseAlt = (top: boolean): RegularNode => {
    const options: RegularNode[] = [parseSeq(top)];
    while (peek() === '|') {
      pos++;
      options.push(parseSeq(top));
    }
    return alt(...options);
  };

  const parseSeq = (top: boolean): RegularNode => {
    const items: RegularNode[] = [];
    let anchoredStart = false;
    let anchoredEnd = false;
    if (peek() === '^') {
      if (!top) fail('an anchor inside a group');
      anchoredStart = true;
      pos++;
    }
    while (pos < src.length && peek() !== '|' && peek() !== ')') {
      if (peek() === '$') {
        pos++;
        if (!top || (pos < src.length && peek() !== '|')) fail('an anchor ($) before the end');
        anchoredEnd = true;
        break;
      }
      if (peek() === '^') fail('an anchor (^) after the start');
      items.push(parseQuantified());
    }
    if (top && !anchoredStart) items.unshift(anyText);
    if (top && !anchoredEnd) items.push(anyText);
    return seq(...items);
  };

  const parseQuantified = (): RegularNode => {
    const atom = parseAtom();
    const q = peek();
    let min: number;
    let max: number;
    if (q === '*') [min, max] = [0, Infinity];
    else if (q === '+') [min, max] = [1, Infinity];
    else if (q === '?') [min, max] = [0, 1];
    else if (q === '{') {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(src.slice(pos).join(''));
      if (!m) fail('a malformed {n,m} quantifier');
      min = Number(m![1]);
      max = m![2] === undefined ? min : m![3] === '' ? Infinity : Number(m![3]);
      if (max < min) fail(`a quantifier {${min},${max}} with max below min`);
      pos += m![0].length - 1;
    } else return atom;
    pos++;
    if (peek() === '?') pos++; // lazy and greedy accept the same strings
    if (peek() === '*' || peek() === '+' || peek() === '?' || peek() === '{') fail('a quantifier on a quantifier');
    return rep(atom, min, max);
  };

  const parseAtom = (): RegularNode => {
    const c = src[pos++]!;
    if (c === '(') {
      if (peek() === '?') {
        const next = src[pos + 1];
        if (next === ':') pos += 2;
        else if (next === '<' && src[pos + 2] !== '=' && src[pos + 2] !== '!') {
          const close = src.indexOf('>', pos);
          if (close < 0) fail('an unterminated group name');
          pos = close + 1;
        } else fail('a lookaround assertion');
      }
      const inner = parseAlt(false);
      if (src[pos++] !== ')') fail('an unbalanced parenthesis');
      return inner;
    }
    if (c === ')') fail('an unbalanced parenthesis');
    if (c === '[') return parseClass();
    if (c === '.') return chars(complement(LINE_TERMINATORS), false);
    if (c === '\\') return parseEscape(false);
    if (c === '*' || c === '+' || c === '?' || c === '{') fail(`a quantifier (${c}) with nothing to repeat`);
    const cp = c.codePointAt(0)!;
    return chars([[cp, cp]]);
  };

  /** After a backslash. In a class, returns ranges via the node too. */
  const parseEscape = (inClass: boolean): Extract<RegularNode, { t: 'set' }> => {
    const c = src[pos++];
    if (c === undefined) fail('a trailing backslash');
    const one = (cp: number): Extract<RegularNode, { t: 'set' }> => ({ t: 'set', ranges: [[cp, cp]], exact: true });
    switch (c) {
      case 'd':
        return { t: 'set', ranges: D, exact: true };
      case 'D':
        return { t: 'set', ranges: complement(D), exact: false };
      case 'w':
        return { t: 'set', ranges: W, exact: true };
      case 'W':
        return { t: 'set', ranges: complement(W), exact: false };
      case 's':
        return { t: 'set', ranges: S, exact: true };
      case 'S':
        return { t: 'set', ranges: complement(S), exact: false };
      case 'n':
        return one(0x0a);
      case 'r':
        return one(0x0d);
      case 't':
        return one(0x09);
      case 'f':
        return one(0x0c);
      case 'v':
        return one(0x0b);
      case '0':
        return one(0);
      case 'b':
        if (inClass) return one(0x08);
        return fail('a word boundary (\\b)');
      case 'x': {
        const h = src.slice(pos, pos + 2).join('');
        if (!/^[0-9a-fA-F]{2}$/.test(h)) fail('a malformed \\x escape');
        pos += 2;
        return one(parseInt(h, 16));
      }
      case 'u': {
        if (peek() === '{') {
          const close = src.indexOf('}', pos);
          const h = src.slice(pos + 1, close).join('');
          if (close < 0 || !/^[0-9a-fA-F]{1,6}$/.test(h)) fail('a malformed \\u{...} escape');
          pos = close + 1;
          return one(parseInt(h, 16));
        }
        const h = src.slice(pos, pos + 4).join('');
        if (!/^[0-9a-fA-F]{4}$/.test(h)) fail('a malformed \\u escape');
        pos += 4;
        return one(parseInt(h, 16));
      }
      case 'p':
      case 'P':
        return fail('a Unicode property escape (\\p{...})');
      case 'c':
        return fail('a control escape (\\c)');
      default:
        if (/[1-9]/.test(c!)) return fail('a backreference');
        if (c === 'B') return fail('a non-word boundary (\\B)');
        if (c === 'k') return fail('a named backreference');
        if (/[A-Za-z]/.test(c!)) return fail(`an unknown escape (\\${c})`);
        return one(c!.codePointAt(0)!);
    }
  };

  const parseClass = (): RegularNode => {
    let negated = false;
    if (peek() === '^') {
      negated = true;
      pos++;
    }
    const ranges: Range[] = [];
    let exact = true;
    while (peek() !== ']') {
      if (pos >= src.length) fail('an unterminated character class');
      const lo = classAtom();
      if (
        lo.ranges.length !== 1 ||
        lo.ranges[0]![0] !== lo.ranges[0]![1] ||
        peek() !== '-' ||
        src[pos + 1] === ']' ||
        src[pos + 1] === undefined
      ) {
        ranges.push(...lo.ranges);
        exact &&= lo.exact;
        continue;
      }
      pos++; // '-'
      const hi = classAtom();
      if (hi.ranges.length !== 1 || hi.ranges[0]![0] !== hi.ranges[0]![1]) fail('a class range ending in a class escape');
      if (hi.ranges[0]![0] < lo.ranges[0]![0]) fail('a class range out of order');
      ranges.push([lo.ranges[0]![0], hi.ranges[0]![0]]);
    }
    pos++; // ']'
    return negated ? chars(complement(ranges), false) : chars(ranges, exact);
  };

  const classAtom = (): Extract<RegularNode, { t: 'set' }> => {
    const c = src[pos++]!;
    if (c === '\\') return parseEscape(true);
    if (c === '[') fail('a nested class');
    const cp = c.codePointAt(0)!;
    return { t: 'set', ranges: [[cp, cp]], exact: true };
  };

  const node = parseAlt(true);
  if (pos < src.length) fail('an unbalanced parenthesis');
  return node;
}
