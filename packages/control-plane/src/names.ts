// Redis keys and NATS subjects, and the identifiers that go into them.

/** Cluster names and instance ids: safe as one NATS subject token and inside a Redis key pattern. */
const TOKEN = /^[A-Za-z0-9_-]{1,128}$/;

export function isToken(value: string): boolean {
  return TOKEN.test(value);
}

export function assertToken(value: string, what: string): void {
  if (!isToken(value)) {
    throw new Error(`${what} must be 1-128 characters of [A-Za-z0-9_-], got ${JSON.stringify(value)}`);
  }
}

export const instanceKeyPrefix = (cluster: string): string => `pdserve:${cluster}:instances:`;
export const instanceKey = (cluster: string, id: string): string => `${instanceKeyPrefix(cluster)}${id}`;

export const kvSubject = (cluster: string, worker: string): string => `pdserve.${cluster}.kv.${worker}`;
export const loadSubject = (cluster: string, worker: string): string => `pdserve.${cluster}.load.${worker}`;
export const ALL_WORKERS = '*';

/** NATS subject matching: `*` matches one token, a trailing `>` matches one or more. */
export function subjectMatches(pattern: string, subject: string): boolean {
  const want = pattern.split('.');
  const have = subject.split('.');
  for (let i = 0; i < want.length; i += 1) {
    const token = want[i];
    if (token === '>') return have.length > i;
    if (i >= have.length) return false;
    if (token !== '*' && token !== have[i]) return false;
  }
  return want.length === have.length;
}
