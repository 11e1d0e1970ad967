import { describe, expect, it } from 'vitest';
import { TransferSender } from './sender';
import { makeBlocks, startHarness, waitFor } from './testkit';

describe('receiver-side cancellation', () => {
  it("aborting the receiver's signal mid-transfer fails the sender promptly; nothing is admitted", async () => {
    const ctl = new AbortController();
    const h = await startHarness({ signal: ctl.signal });
    const tx = new TransferSender({ shmBase: h.shmBase });
    try {
      const p = tx.send({
        peer: { grpcAddress: h.address, advertisement: h.rx.advertisement() },
        transport: 'tcp',
        blocks: makeBlocks(48, 1024 * 1024, 1),
      });
      p.catch(() => undefined);
      await waitFor(() => h.rx.pendingTransfers > 0, 5_000, 'Begin');
      const t0 = performance.now();
      ctl.abort();
      const e: unknown = await p.then(
        () => null,
        (err: unknown) => err,
      );
      expect(performance.now() - t0).toBeLessThan(1_000);
      expect(e).toMatchObject({ name: 'TransferError' });
      expect(['UNAVAILABLE', 'CONNECTION_LOST']).toContain((e as { code: string }).code);
      expect(h.admitted).toEqual([]);
      expect(h.rx.pendingTransfers).toBe(0);
    } finally {
      tx.close();
      await h.close();
    }
  });
});
