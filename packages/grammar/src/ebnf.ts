// Writing xgrammar EBNF: literals, character classes, and a set of named rules.
//
// Shapes xgrammar 0.1.27 matches fast, measured on the Llama-2 vocab (docs/grammar.md): a right-recursive
// rule whose alternatives each end in the recursion (`s ::= "\"" | [^"\\] s | "\\" e s`) masks in ~0.1 ms;
// the same set written as a group under a repeat (`(a | b)*`, `(a | b) s`) takes 30-80 ms per mask. So
// every repetition here is a flat right-recursive rule, and bounded counts are chains of such rules.

/** A code point range, both ends included. */
export type Range = readonly [number, number];

const MAX_CODE_POINT = 0x10ffff;

/** An EBNF string literal for `text` (escaped so the parser reads it back byte for byte). */
export function lit(text: string): string {
  let out = '"';
  for (const ch of text) out += escapeChar(ch.codePointAt(0)!, '"\\');
  return `${out}"`;
}

/**
 * An EBNF character class of ASCII `ranges` (sorted, disjoint, non-empty); `negated`: all characters
 * but those. ASCII only: xgrammar 0.1.27 misreads classes with non-ASCII members (`[^é]` matched é,
 * `[\u0100-\u0200]` matched nothing, `[\ue000-\U0010ffff]` matched a quote), measured token by token.
 */
export function charClass(ranges: readonly Range[], negated = false): string {
  if (ranges.some(([, hi]) => hi > 0x7f)) throw new Error('charClass takes ASCII ranges only');
  let out = negated ? '[^' : '[';
  for (const [lo, hi] of ranges) {
    out += escapeChar(lo, ']\\-^');
    if (hi > lo) out += `-${escapeChar(hi, ']\\-^')}`;
  }
  return `${out}]`;
}

function escapeChar(cp: number, special: string): string {
  if (cp >= 0x20 && cp < 0x7f) {
    const ch = String.fromCharCode(cp);
    return special.includes(ch) ? `\\${ch}` : ch;
  }
  if (cp <= 0xff) return `\\x${cp.toString(16).padStart(2, '0')}`;
  if (cp <= 0xffff) return `\\u${cp.toString(16).padStart(4, '0')}`;
  return `\\U${cp.toString(16).padStart(8, '0')}`;
}

/**
 * Sorts and merges ranges. Surrogates stay in (they never occur in UTF-8 text, and xgrammar 0.1.27
 * misreads a class that splits around them: `[\]-\ud7ff\ue000-\U0010ffff]` matched a quote).
 */
export function normalizeRanges(ranges: readonly Range[]): Range[] {
  const split = ranges.filter(([lo, hi]) => lo <= hi).map(([lo, hi]): Range => [lo, hi]);
  split.sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const [lo, hi] of split) {
    const last = out[out.length - 1];
    if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else out.push([lo, hi]);
  }
  return out;
}

export function complementRanges(ranges: readonly Range[]): Range[] {
  const out: Range[] = [];
  let next = 0;
  for (const [lo, hi] of normalizeRanges(ranges)) {
    if (lo > next) out.push([next, lo - 1]);
    next = hi + 1;
  }
  if (next <= MAX_CODE_POINT) out.push([next, MAX_CODE_POINT]);
  return normalizeRanges(out);
}

export function intersectRanges(a: readonly Range[], b: readonly Range[]): Range[] {
  const out: Range[] = [];
  for (const [alo, ahi] of normalizeRanges(a)) {
    for (const [blo, bhi] of normalizeRanges(b)) {
      const lo = Math.max(alo, blo);
      const hi = Math.min(ahi, bhi);
      if (lo <= hi) out.push([lo, hi]);
    }
  }
  return normalizeRanges(out);
}

/** Named rules; `root` is the start. Bodies are EBNF expressions. */
export class RuleSet {
  private readonly bodies = new Map<string, string>();
  private readonly byBody = new Map<string, string>();
  private counter = 0;

  /** A fresh rule name starting with `hint` (defined later with define()). */
  reserve(hint: string): string {
    const base = hint.replace(/[^A-Za-z0-9_]/g, '_').replace(/^_+|_+$/g, '') || 'r';
    let name = base;
    while (this.bodies.has(name) || name === 'root') name = `${base}_${++this.counter}`;
    this.bodies.set(name, '');
    return name;
  }

  define(name: string, body: string): string {
    this.bodies.set(name, body);
    return name;
  }

  /** A rule with this body: an existing one if an identical body was added before. */
  add(hint: string, body: string): string {
    const existing = this.byBody.get(body);
    if (existing !== undefined) return existing;
    const name = this.define(this.reserve(hint), body);
    this.byBody.set(body, name);
    return name;
  }

  get size(): number {
    return this.bodies.size;
  }

  toString(root: string): string {
    const lines = [`root ::= ${root}`];
    for (const [name, body] of this.bodies) lines.push(`${name} ::= ${body}`);
    return `${lines.join('\n')}\n`;
  }
}
