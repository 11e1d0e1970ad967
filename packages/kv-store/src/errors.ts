// One error type for every failure the store reports to a caller; `code` maps 1:1 to a gRPC status.

export type KvStoreErrorCode =
  | 'invalid_argument' // malformed request: bad hash, bad bytes, oversized block, bad ttl
  | 'not_found' // unknown put id, or a model this store does not serve
  | 'resource_exhausted' // the memory tier cannot make room for a put
  | 'failed_precondition' // a valid request in the wrong state: committing a put with blocks missing
  | 'permission_denied' // the caller, or the sink it names, is not a service registered in the cluster
  | 'unavailable' // the store is closed
  | 'data_loss'; // blocks failed their checksum at the reader (dropped here if corrupt here): get again

/** gRPC status number per code, for the service that wraps the store. */
export const GRPC_STATUS: Readonly<Record<KvStoreErrorCode, number>> = {
  invalid_argument: 3,
  not_found: 5,
  resource_exhausted: 8,
  failed_precondition: 9,
  permission_denied: 7,
  unavailable: 14,
  data_loss: 15,
};

export class KvStoreError extends Error {
  override readonly name = 'KvStoreError';

  constructor(
    readonly code: KvStoreErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export const invalidArgument = (message: string): KvStoreError => new KvStoreError('invalid_argument', message);
