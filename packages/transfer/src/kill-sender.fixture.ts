// A sender in a child process, for the kill -9 tests: node --import tsx kill-sender.fixture.ts <json>
// Modes: 'send' runs a real TransferSender; 'stall-shm' writes a segment, sends Begin, then hangs.
import { TransferSender } from './sender';
import { segmentPath, writeSegment } from './shm-transport';
import { probeShmSite } from './shm-site';
import { makeBlocks, rawTransferCall } from './testkit';
import { PROTOCOL_VERSION, type TransferAdvertisement, type TransportKind } from './types';
import { packBlocks } from './wire';

interface Args {
  readonly mode: 'send' | 'stall-shm';
  readonly address: string;
  readonly advertisement: TransferAdvertisement;
  readonly transport: TransportKind;
  readonly blocks: number;
  readonly blockBytes: number;
  readonly shmBase: string;
}

const args = JSON.parse(process.argv[2] ?? '{}') as Args;
const blocks = makeBlocks(args.blocks, args.blockBytes, 7);

if (args.mode === 'send') {
  const tx = new TransferSender({ shmBase: args.shmBase });
  process.stdout.write('sending\n');
  tx.send({ peer: { grpcAddress: args.address, advertisement: args.advertisement }, transport: args.transport, blocks }).then(
    () => process.stdout.write('admitted\n'),
    (e: unknown) => process.stdout.write(`failed ${String(e)}\n`),
  );
} else {
  const site = await probeShmSite(args.shmBase);
  if (site === null) throw new Error('no shm site');
  const transferId = `stalled-${process.pid}`;
  await writeSegment(segmentPath(site.dir, transferId), blocks, new AbortController().signal);
  const raw = rawTransferCall(args.address);
  raw.call.write({
    kind: 'begin',
    begin: {
      protocol_version: PROTOCOL_VERSION,
      transfer_id: transferId,
      transport: 'shm',
      meta: {},
      ...packBlocks(blocks),
      total_bytes: blocks.reduce((n, b) => n + b.data.byteLength, 0),
      tcp_source: '',
      tcp_token: new Uint8Array(0),
    },
  });
  raw.call.on('data', () => process.stdout.write('stalled\n'));
  setInterval(() => undefined, 60_000); // hang until killed
}
