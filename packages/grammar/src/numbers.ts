// JSON numbers as regular languages: every number the grammar lets a model write parses to a finite
// double that satisfies the schema's bounds when JavaScript (ajv, JSON.parse) reads it back.
import { GrammarError } from './errors';
import { alt, chars, DIGIT, EMPTY, literal, rep, seq, type RegularNode } from './regular';

/** Integer-part digits at most: below 10^15 every integer is exact in a double (2^53 ≈ 9.007e15). */
export const MAX_INT_DIGITS = 15;
/** Fraction digits at most; a 16th would be rounded away by the double anyway. */
export const MAX_FRACTION_DIGITS = 15;
/** Exponent digits at most (unbounded numbers only): 10^15 × 10^99 is still finite, 1e400 is not. */
export const MAX_EXPONENT_DIGITS = 2;

const LIMIT = 10 ** MAX_INT_DIGITS; // every generated number's magnitude is below this

export interface NumberBounds {
  readonly minimum?: number;
  readonly maximum?: number;
  readonly exclusiveMinimum?: number;
  readonly exclusiveMaximum?: number;
}

/** `0 | -?[1-9][0-9]{0,14}` within the bounds (rounded inwards to integers). */
export function integerNode(b: NumberBounds, where: string): RegularNode {
  let lo = Math.max(
    b.minimum === undefined ? -Infinity : Math.ceil(b.minimum),
    b.exclusiveMinimum === undefined ? -Infinity : Math.floor(b.exclusiveMinimum) + 1,
  );
  let hi = Math.min(
    b.maximum === undefined ? Infinity : Math.floor(b.maximum),
    b.exclusiveMaximum === undefined ? Infinity : Math.ceil(b.exclusiveMaximum) - 1,
  );
  lo = Math.max(lo, -(LIMIT - 1));
  hi = Math.min(hi, LIMIT - 1);
  if (lo > hi)
    throw new GrammarError('unsupported_schema', `${where}: no integer of at most ${MAX_INT_DIGITS} digits lies within the bounds`);
  const parts: RegularNode[] = [];
  if (hi >= 0) parts.push(uintRange(Math.max(lo, 0), hi));
  if (lo < 0) parts.push(seq(literal('-'), uintRange(Math.max(1, -hi), -lo)));
  return alt(...parts);
}

/** A JSON number: with bounds, plain decimals between them; without, also an exponent of ≤ 2 digits. */
export function numberNode(b: NumberBounds, where: string): RegularNode {
  const bounded =
    b.minimum !== undefined || b.maximum !== undefined || b.exclusiveMinimum !== undefined || b.exclusiveMaximum !== undefined;
  if (!bounded) {
    const int = alt(literal('0'), seq(chars([[0x31, 0x39]]), rep(DIGIT, 0, MAX_INT_DIGITS - 1)));
    const frac = seq(literal('.'), rep(DIGIT, 1, MAX_FRACTION_DIGITS));
    const exp = seq(
      chars([
        [0x45, 0x45],
        [0x65, 0x65],
      ]),
      rep(
        chars([
          [0x2b, 0x2b],
          [0x2d, 0x2d],
        ]),
        0,
        1,
      ),
      rep(DIGIT, 1, MAX_EXPONENT_DIGITS),
    );
    return seq(rep(literal('-'), 0, 1), int, rep(frac, 0, 1), rep(exp, 0, 1));
  }
  // Exclusive bounds become inclusive ones on the neighbouring double, so that a decimal strictly
  // above the bound cannot round back onto it when parsed.
  const lo = Math.max(b.minimum ?? -Infinity, b.exclusiveMinimum === undefined ? -Infinity : nextUp(b.exclusiveMinimum));
  const hi = Math.min(b.maximum ?? Infinity, b.exclusiveMaximum === undefined ? Infinity : -nextUp(-b.exclusiveMaximum));
  if (lo > hi) throw new GrammarError('unsupported_schema', `${where}: the bounds leave no number`);
  if (lo >= LIMIT || hi <= -LIMIT)
    throw new GrammarError('unsupported_schema', `${where}: numbers of ${MAX_INT_DIGITS}+ integer digits are not generated`);
  const loB = lo <= -LIMIT ? undefined : lo;
  const hiB = hi >= LIMIT ? undefined : hi;
  const parts: RegularNode[] = [];
  if (hiB === undefined || hiB >= 0) {
    const m = magnitude(toDecimal(Math.max(loB ?? 0, 0)), hiB === undefined ? undefined : toDecimal(hiB));
    if (m) parts.push(m);
  }
  if (loB === undefined || loB < 0) {
    const m = magnitude(toDecimal(hiB !== undefined && hiB < 0 ? -hiB : 0), loB === undefined ? undefined : toDecimal(-loB));
    if (m) parts.push(seq(literal('-'), m));
  }
  if (parts.length === 0)
    throw new GrammarError(
      'unsupported_schema',
      `${where}: no number of at most ${MAX_FRACTION_DIGITS} fraction digits lies within the bounds`,
    );
  return alt(...parts);
}

/** The next double above x. */
function nextUp(x: number): number {
  if (Number.isNaN(x) || x === Infinity) return x;
  if (x === 0) return Number.MIN_VALUE;
  const buf = new DataView(new ArrayBuffer(8));
  buf.setFloat64(0, x);
  const bits = buf.getBigUint64(0);
  buf.setBigUint64(0, x > 0 ? bits + 1n : bits - 1n);
  return buf.getFloat64(0);
}

interface Decimal {
  /** Integer digits, no leading zeros ('0' for zero). */
  readonly int: string;
  /** Fraction digits, no trailing zeros. */
  readonly frac: string;
}

/** The shortest decimal that reads back as x (x ≥ 0), without an exponent. */
export function toDecimal(x: number): Decimal {
  const s = String(x);
  const m = /^(\d+)(?:\.(\d+))?(?:e([+-]\d+))?$/.exec(s);
  if (!m) throw new Error(`not a non-negative finite number: ${s}`);
  let digits = m[1]! + (m[2] ?? '');
  let point = m[1]!.length + Number(m[3] ?? 0);
  if (point <= 0) {
    digits = '0'.repeat(1 - point) + digits;
    point = 1;
  }
  if (point > digits.length) digits += '0'.repeat(point - digits.length);
  const int = digits.slice(0, point).replace(/^0+(?=\d)/, '');
  const frac = digits.slice(point).replace(/0+$/, '');
  return { int, frac };
}

/** Magnitudes (no sign) from a to b (b undefined: up to 10^15), as `int ("." frac)?`. */
function magnitude(a: Decimal, b: Decimal | undefined): RegularNode | undefined {
  const ai = Number(a.int);
  const bi = b === undefined ? LIMIT - 1 : Number(b.int);
  if (ai > bi) return undefined;
  const opts: (RegularNode | undefined)[] = [];
  if (b !== undefined && ai === bi) opts.push(withFraction(literal(a.int), fraction(a.frac, b.frac)));
  else {
    opts.push(withFraction(literal(a.int), fraction(a.frac, undefined)));
    const top = b === undefined ? bi : bi - 1;
    if (ai + 1 <= top) opts.push(seq(uintRange(ai + 1, top), fraction('', undefined)!));
    if (b !== undefined) opts.push(withFraction(literal(b.int), fraction('', b.frac)));
  }
  const live = opts.filter((o): o is RegularNode => o !== undefined);
  return live.length === 0 ? undefined : alt(...live);
}

function withFraction(int: RegularNode, frac: RegularNode | undefined): RegularNode | undefined {
  return frac === undefined ? undefined : seq(int, frac);
}

/**
 * `("." digits)?` whose value 0.digits lies in [0.lo, 0.hi] (hi undefined: below 1). Digit by digit:
 * while the digits so far equal a bound's prefix that bound is "tight" and limits the next digit.
 */
function fraction(lo: string, hi: string | undefined): RegularNode | undefined {
  const digitsFrom = (p: number, loTight: boolean, hiTight: boolean, mustTakeOne: boolean): RegularNode | undefined => {
    if (!loTight && !hiTight) return rep(DIGIT, mustTakeOne ? 1 : 0, MAX_FRACTION_DIGITS - p);
    const opts: RegularNode[] = [];
    // Ending here: the value is the digits so far, padded with zeros.
    if (!mustTakeOne && (!loTight || p >= lo.length)) opts.push(EMPTY);
    if (p < MAX_FRACTION_DIGITS) {
      const a = loTight ? Number(lo[p] ?? '0') : 0;
      const b = hiTight ? Number(hi![p] ?? '0') : 9;
      const take = (d: number, lt: boolean, ht: boolean): void => {
        const rest = digitsFrom(p + 1, lt, ht, false);
        if (rest) opts.push(seq(literal(String(d)), rest));
      };
      if (loTight && hiTight && a === b) take(a, true, true);
      else {
        let freeLo = a;
        let freeHi = b;
        if (loTight) {
          take(a, true, false);
          freeLo = a + 1;
        }
        if (hiTight) {
          take(b, false, true);
          freeHi = b - 1;
        }
        if (freeLo <= freeHi) opts.push(seq(chars([[0x30 + freeLo, 0x30 + freeHi]]), rep(DIGIT, 0, MAX_FRACTION_DIGITS - p - 1)));
      }
    }
    return opts.length === 0 ? undefined : alt(...opts);
  };
  const opts: RegularNode[] = [];
  if (lo === '') opts.push(EMPTY);
  const digits = digitsFrom(0, lo !== '', hi !== undefined, true);
  if (digits) opts.push(seq(literal('.'), digits));
  return opts.length === 0 ? undefined : alt(...opts);
}

/** Non-negative integers lo..hi (no leading zeros). */
function uintRange(lo: number, hi: number): RegularNode {
  const opts: RegularNode[] = [];
  for (let len = String(lo).length; len <= String(hi).length; len++) {
    const a = Math.max(lo, len === 1 ? 0 : 10 ** (len - 1));
    const b = Math.min(hi, 10 ** len - 1);
    if (a <= b) opts.push(sameLength(String(a), String(b)));
  }
  return alt(...opts);
}

/** Digit strings of one length from a to b. */
function sameLength(a: string, b: string): RegularNode {
  if (a.length === 0) return EMPTY;
  if (a === b) return literal(a);
  const a0 = Number(a[0]);
  const b0 = Number(b[0]);
  const restA = a.slice(1);
  const restB = b.slice(1);
  const n = restA.length;
  if (a0 === b0) return seq(literal(a[0]!), sameLength(restA, restB));
  const opts: RegularNode[] = [];
  let midLo = a0;
  let midHi = b0;
  if (!/^0*$/.test(restA)) {
    opts.push(seq(literal(a[0]!), sameLength(restA, '9'.repeat(n))));
    midLo = a0 + 1;
  }
  if (!/^9*$/.test(restB)) {
    opts.push(seq(literal(b[0]!), sameLength('0'.repeat(n), restB)));
    midHi = b0 - 1;
  }
  if (midLo <= midHi) opts.push(seq(chars([[0x30 + midLo, 0x30 + midHi]]), rep(DIGIT, n, n)));
  return alt(...opts);
}
