// One transfer on the sending side, over one Transfer call: Begin → bytes → Commit → Admitted (tcp:
// Begin names the offer the receiver pulls; the pulled bytes are the commit). Everything races the
// transfer's signal, which aborts on the caller's signal, the deadline, or the receiver ending the
// call with an error; then the call is cancelled, the offer withdrawn and any shm segment removed.
import { Metadata, status, type Client, type ClientDuplexStream, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { raceSignal, reasonOf } from './abort';
import { TransferError, fromGrpcError } from './errors';
import { pushChunks } from './grpc-transport';
import type { KvTransferMethods } from './proto';
import type { ShmSite } from './shm-site';
import { removeSegment, segmentPath, writeSegment } from './shm-transport';
import type { TcpOffer, TcpSource } from './tcp-source';
import { PROTOCOL_VERSION, type KvBlock, type TransferMeta, type TransportKind } from './types';
import { packBlocks, type Admitted, type Commit, type Ready, type ShmSegment, type TransferDown, type TransferUp } from './wire';

export interface SendPlan {
  readonly transferId: string;
  readonly transport: TransportKind;
  readonly blocks: readonly KvBlock[];
  readonly meta: TransferMeta;
  readonly totalBytes: number;
  readonly deadlineAt: number;
  /** Aborts with a TransferError as its reason. */
  readonly ctl: AbortController;
}

export interface SendDeps {
  readonly client: Client;
  readonly methods: KvTransferMethods;
  /** This sender's data port (started on first use). */
  readonly source: () => Promise<TcpSource>;
  readonly shm: ShmSite | null;
  readonly grpcChunkBytes: number;
}

/** Runs the transfer; resolves with the receiver's Admitted, or rejects with a TransferError. */
export async function runSendSession(plan: SendPlan, deps: SendDeps): Promise<Admitted> {
  const { ctl } = plan;
  const signal = ctl.signal;
  const m = deps.methods.Transfer;
  const call: ClientDuplexStream<TransferUp, TransferDown> = deps.client.makeBidiStreamRequest(
    m.path,
    m.requestSerialize,
    m.responseDeserialize,
    new Metadata(),
    { deadline: plan.deadlineAt },
  );
  let ready: (r: Ready) => void = () => undefined;
  const readyP = new Promise<Ready>((resolve) => {
    ready = resolve;
  });
  let admitted: Admitted | null = null;
  let finished: () => void = () => undefined;
  const finishedP = new Promise<void>((resolve) => {
    finished = resolve;
  });
  let gotReady = false;
  call.on('data', (d: TransferDown) => {
    if (d.kind === 'ready') {
      gotReady = true;
      ready(d.ready);
    } else {
      // Admitted is the receiver's word that it took every block: done, without waiting for the status.
      admitted = d.admitted;
      finished();
    }
  });
  call.on('error', (e: ServiceError) => {
    const err = fromGrpcError(e);
    // Before Ready, a lost stream means the receiver could not be reached at all.
    ctl.abort(!gotReady && err.code === 'CONNECTION_LOST' ? new TransferError('UNAVAILABLE', err.message, { cause: e }) : err);
  });
  call.on('status', (s: StatusObject) => {
    if (s.code !== status.OK) return; // 'error' reports it
    if (admitted === null) ctl.abort(new TransferError('PROTOCOL', 'receiver ended the call without Admitted'));
    else finished();
  });
  const onAbort = (): void => call.cancel();
  signal.addEventListener('abort', onAbort, { once: true });

  let shmPath: string | null = null;
  let offer: TcpOffer | null = null;
  try {
    let tcpSource = '';
    if (plan.transport === 'tcp') {
      const source = await raceSignal(deps.source(), signal);
      offer = source.offer(plan.blocks, signal);
      tcpSource = source.address;
    }
    call.write({
      kind: 'begin',
      begin: {
        protocol_version: PROTOCOL_VERSION,
        transfer_id: plan.transferId,
        transport: plan.transport,
        meta: plan.meta,
        ...packBlocks(plan.blocks),
        total_bytes: plan.totalBytes,
        tcp_source: tcpSource,
        tcp_token: offer?.token ?? new Uint8Array(0),
      },
    });
    if (offer !== null) {
      // The receiver pulls as soon as Begin reaches it; once every block arrived verified it admits.
      try {
        await raceSignal(offer.written, signal);
      } catch (e) {
        // A broken pull: the receiver's verdict on the call (checksum, closed, refused) says why.
        if (!signal.aborted) await raceSignal(Promise.race([finishedP, delay(VERDICT_GRACE_MS)]), signal);
        throw e;
      }
      // Admitted: said on the data connection (sooner) and on the call, whichever comes first.
      await raceSignal(Promise.race([finishedP, offer.admitted]), signal);
      call.end();
      return admitted ?? { bytes: plan.totalBytes };
    }
    const isReady = raceSignal(readyP, signal);
    isReady.catch(() => undefined); // awaited below; a failure meanwhile surfaces through `signal`
    let shm: ShmSegment | null = null;
    if (plan.transport === 'shm') {
      // The segment is written while Begin makes its round trip.
      const site = deps.shm as ShmSite;
      shmPath = segmentPath(site.dir, plan.transferId);
      const seg = await writeSegment(shmPath, plan.blocks, signal);
      shm = { path: shmPath, size: seg.size, checksums: seg.checksums };
    } else {
      // Chunks follow Begin on the same stream, without waiting for Ready.
      await pushChunks(plan.blocks, (msg) => writeUp(call, msg, signal), deps.grpcChunkBytes);
    }
    await isReady;
    const commit: Commit = { block_count: plan.blocks.length, shm };
    await writeUp(call, { kind: 'commit', commit }, signal);
    call.end();
    await raceSignal(finishedP, signal);
    shmPath = null; // the receiver consumed and removed it
    return admitted ?? { bytes: plan.totalBytes };
  } catch (e) {
    if (signal.aborted) throw reasonOf(signal);
    const err = e instanceof TransferError ? e : new TransferError('PROTOCOL', String(e), { cause: e });
    ctl.abort(err);
    throw err;
  } finally {
    signal.removeEventListener('abort', onAbort);
    offer?.withdraw();
    if (shmPath !== null) await removeSegment(shmPath);
  }
}

/** How long a sender whose data connection broke waits for the receiver to say why (ms). */
const VERDICT_GRACE_MS = 2_000;

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** Writes a message on the call, waiting for drain when grpc-js buffers too much. */
async function writeUp(call: ClientDuplexStream<TransferUp, TransferDown>, msg: TransferUp, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted();
  if (call.write(msg)) return;
  await raceSignal(new Promise<void>((resolve) => call.once('drain', resolve)), signal);
}
