// Small helpers for waiting under an AbortSignal whose reason is a TransferError.
import { TransferError } from './errors';

/** `p`, or a rejection with the signal's reason as soon as it aborts. */
export function raceSignal<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(reasonOf(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(reasonOf(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/** The signal's reason as a TransferError (ABORTED when it is anything else). */
export function reasonOf(signal: AbortSignal): TransferError {
  const r: unknown = signal.reason;
  return r instanceof TransferError ? r : new TransferError('ABORTED', 'aborted', { cause: r });
}
