// Where shm segments live on this host, and the id that tells two processes they share it.
// Two ends may use shm only if their ids are equal: same boot, same hostname, and the very same
// directory (path, device and inode), so containers with separate /dev/shm mounts never match.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';

export interface ShmSite {
  readonly dir: string;
  readonly hostId: string;
}

/** /dev/shm when the host has it (tmpfs: segments never touch a disk), else the temp dir. */
export function defaultShmBase(): string {
  try {
    if (existsSync('/dev/shm') && statSync('/dev/shm').isDirectory()) return '/dev/shm';
  } catch {
    // fall through to the temp dir
  }
  return tmpdir();
}

const probes = new Map<string, Promise<ShmSite | null>>();

/** The usable shm site under `base`, or null when a write-read-delete probe fails there. Memoized. */
export function probeShmSite(base: string = defaultShmBase()): Promise<ShmSite | null> {
  let p = probes.get(base);
  if (p === undefined) {
    p = probe(base);
    probes.set(base, p);
  }
  return p;
}

async function probe(base: string): Promise<ShmSite | null> {
  const dir = join(base, 'pdserve-kv');
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const file = join(dir, `probe-${process.pid}-${randomBytes(4).toString('hex')}`);
    const token = randomBytes(16);
    await writeFile(file, token, { mode: 0o600, flag: 'wx' });
    const back = await readFile(file);
    await unlink(file);
    if (!back.equals(token)) return null;
    const st = await stat(dir);
    const bootId = await readFile('/proc/sys/kernel/random/boot_id', 'utf8').then(
      (s) => s.trim(),
      () => '',
    );
    const hostId = createHash('sha256').update(`${bootId}\n${hostname()}\n${dir}\n${st.dev}:${st.ino}`).digest('hex').slice(0, 32);
    return { dir, hostId };
  } catch {
    return null;
  }
}
