// API keys at the edge: every /v1/* request names one of the server's keys (Authorization: Bearer KEY, or
// x-api-key: KEY). Keys are compared as SHA-256 digests with timingSafeEqual, against every key whatever
// matched, so neither a key's length nor where it first differs shows in the time an answer takes.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** Whether `presented` equals `expected`, in time independent of where they differ and of their lengths. */
export function keysEqual(presented: string, expected: string): boolean {
  return timingSafeEqual(digest(presented), digest(expected));
}

function digest(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

/** Who a request is, once authenticated: an id derived from its key (never the key), for limits and cache isolation. */
export type KeyId = string;

export class ApiKeys {
  private readonly keys: readonly { readonly digest: Buffer; readonly id: KeyId }[];

  constructor(keys: readonly string[]) {
    const unique = [...new Set(keys)];
    if (unique.some((k) => k === '' || /\s/.test(k))) throw new Error('API keys must be non-empty and hold no whitespace');
    this.keys = unique.map((k) => ({ digest: digest(k), id: keyId(k) }));
  }

  get size(): number {
    return this.keys.length;
  }

  /** The id of the key `presented` is, or undefined. Every key is compared, matched or not. */
  match(presented: string): KeyId | undefined {
    const d = digest(presented);
    let found: KeyId | undefined;
    for (const k of this.keys) if (timingSafeEqual(d, k.digest) && found === undefined) found = k.id;
    return found;
  }
}

/** A key's id: a digest in its own domain, so it differs from the digest keys are compared by. */
function keyId(key: string): KeyId {
  return createHash('sha256').update(`pdserve-api-key-id\0${key}`, 'utf8').digest('hex').slice(0, 32);
}

/** The key a request presents: `Authorization: Bearer KEY` (the scheme in any case), else `x-api-key`. */
export function presentedKey(req: IncomingMessage): string | undefined {
  const auth = req.headers.authorization;
  const bearer = auth === undefined ? undefined : /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(auth)?.[1];
  if (bearer !== undefined) return bearer;
  const header = req.headers['x-api-key'];
  const key = Array.isArray(header) ? header[0] : header;
  return key === undefined || key === '' ? undefined : key.trim();
}

/**
 * Keys from a file, one per line, as a mounted Secret holds them: blank lines and lines starting with #
 * are skipped, surrounding whitespace trimmed.
 */
export function parseKeyFile(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}
