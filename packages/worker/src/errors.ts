// How an engine's failure class crosses the Worker service: the gRPC status says how to treat the call
// (retry elsewhere or not), a trailer carries the exact class and the parameter at fault, so the gateway
// answers the client as a local engine would. Encoded here by the worker, decoded here by its client.
import { Metadata, status, type StatusObject } from '@grpc/grpc-js';
import { EngineError, type EngineErrorCode } from '@pdserve/contracts';

/** Trailers that carry an EngineError's `code` and `param`. */
export const ENGINE_ERROR_TRAILER = 'pdserve-engine-error';
export const ENGINE_PARAM_TRAILER = 'pdserve-engine-param';

/** The gRPC status of each failure class, mapped once. */
const ENGINE_STATUS: Record<EngineErrorCode, status> = {
  invalid_request: status.INVALID_ARGUMENT,
  context_length_exceeded: status.INVALID_ARGUMENT,
  queue_full: status.RESOURCE_EXHAUSTED,
  not_ready: status.UNAVAILABLE,
  internal: status.INTERNAL,
};

const CODES = new Set<string>(Object.keys(ENGINE_STATUS));

/** The status a worker ends a call with: an EngineError keeps its class; anything else is `internal`. */
export function engineErrorStatus(err: unknown): StatusObject {
  const e = err instanceof EngineError ? err : new EngineError('internal', err instanceof Error ? err.message : String(err));
  const metadata = new Metadata();
  metadata.set(ENGINE_ERROR_TRAILER, e.code);
  if (e.param !== undefined) metadata.set(ENGINE_PARAM_TRAILER, e.param);
  return { code: ENGINE_STATUS[e.code], details: e.message, metadata };
}

/** The engine failure a worker reported in a failed call's trailers, if it reported one. */
export function engineErrorOf(metadata: Metadata | undefined, message: string): EngineError | undefined {
  const code = metadata?.get(ENGINE_ERROR_TRAILER)[0];
  if (typeof code !== 'string' || !CODES.has(code)) return undefined;
  const param = metadata?.get(ENGINE_PARAM_TRAILER)[0];
  return new EngineError(code as EngineErrorCode, message, typeof param === 'string' ? param : undefined);
}
