import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sweepStaleSegments } from './shm-transport';
import { startHarness, waitFor, type Harness } from './testkit';
import type { TransportKind } from './types';

const FIXTURE = fileURLToPath(new URL('./kill-sender.fixture.ts', import.meta.url));
const REPO = fileURLToPath(new URL('../../..', import.meta.url));

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h.close();
});

interface Child {
  readonly proc: ChildProcess;
  readonly lines: string[];
  readonly exited: Promise<void>;
}

function spawnSender(mode: 'send' | 'stall-shm', transport: TransportKind, blocks: number, blockBytes: number): Child {
  const args = { mode, address: h.address, advertisement: h.rx.advertisement(), transport, blocks, blockBytes, shmBase: h.shmBase };
  const proc = spawn(process.execPath, ['--import', 'tsx', FIXTURE, JSON.stringify(args)], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: string[] = [];
  proc.stdout?.setEncoding('utf8').on('data', (s: string) => lines.push(...s.split('\n').filter(Boolean)));
  const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
  return { proc, lines, exited };
}

function segments(): string[] {
  return readdirSync(join(h.shmBase, 'pdserve-kv')).filter((n) => n.endsWith('.seg'));
}

describe('a sender killed mid-transfer', () => {
  it.each<TransportKind>(['tcp', 'grpc'])(
    'over %s: the receiver admits nothing and lets go of everything',
    async (transport) => {
      // Big enough that the kill lands while blocks are still arriving.
      const child = spawnSender('send', transport, 192, 1024 * 1024);
      try {
        await waitFor(() => h.rx.progress().some((p) => p.verifiedBlocks > 0), 20_000, 'first blocks');
        const p = h.rx.progress()[0];
        child.proc.kill('SIGKILL');
        expect(p !== undefined && p.verifiedBlocks < p.blocks).toBe(true);
        await child.exited;
        await waitFor(() => h.rx.pendingTransfers === 0, 5_000, 'receiver to discard');
        expect(h.admitted).toEqual([]);
        expect(h.rx.pendingBytes).toBe(0);
        expect(h.discarded.at(-1)?.error.code).toBe('CONNECTION_LOST');
        expect(child.lines).not.toContain('admitted');
      } finally {
        child.proc.kill('SIGKILL');
      }
    },
    30_000,
  );

  it("over shm: the receiver discards, and the dead sender's segment is swept", async () => {
    const child = spawnSender('stall-shm', 'shm', 16, 64 * 1024);
    try {
      await waitFor(() => child.lines.includes('stalled'), 20_000, 'segment written and Ready');
      expect(segments()).toHaveLength(1);
      child.proc.kill('SIGKILL');
      await child.exited;
      await waitFor(() => h.rx.pendingTransfers === 0, 5_000, 'receiver to discard');
      expect(h.admitted).toEqual([]);
      const dir = join(h.shmBase, 'pdserve-kv');
      const file = join(dir, segments()[0] ?? '');
      expect(await sweepStaleSegments(dir, { deadOwnerGraceMs: 60_000 })).toBe(0); // too young to judge
      expect(await sweepStaleSegments(dir, { deadOwnerGraceMs: 0 })).toBe(1);
      expect(existsSync(file)).toBe(false);
    } finally {
      child.proc.kill('SIGKILL');
    }
  }, 30_000);
});
