// The gRPC plumbing every control service shares: where the contracts live, how they are loaded, and
// the channel settings. Each service keeps its own hand-kept message types and drift test.
import { fileURLToPath } from 'node:url';
import { Metadata, status, type ChannelOptions, type Client, type ServiceDefinition, type ServiceError } from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** The repository's proto/ folder: the only contract between services. */
export const PROTO_ROOT = fileURLToPath(new URL('../../../proto', import.meta.url));

/** Field names as in the .proto; 64-bit fields as JS numbers (counts and ids far below 2^53). */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
};

/** Control messages only (KV bytes ride the transfer engine): 16 MiB is far above any of them. */
export const MAX_CONTROL_MESSAGE_BYTES = 16 * 1024 * 1024;

/** Channel and server options of every control service: message caps and keepalive to notice dead peers. */
export const CONTROL_GRPC_OPTIONS: ChannelOptions = {
  'grpc.max_receive_message_length': MAX_CONTROL_MESSAGE_BYTES,
  'grpc.max_send_message_length': MAX_CONTROL_MESSAGE_BYTES,
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
};

const packages = new Map<string, protoLoader.PackageDefinition>();

/** Loads (once) a .proto under proto/, e.g. 'pdserve/v1/worker.proto'. */
export function loadProto(file: string): protoLoader.PackageDefinition {
  let def = packages.get(file);
  if (!def) {
    def = protoLoader.loadSync(file, LOADER_OPTIONS);
    packages.set(file, def);
  }
  return def;
}

/**
 * A service definition typed by its hand-kept methods `M`: the one cast from proto-loader's untyped
 * definition, checked to be a service that has `probe` among its methods.
 */
export function loadService<M>(file: string, service: string, probe: keyof M & string): ServiceDefinition & M {
  const def = loadProto(file)[service];
  if (def === undefined || !(probe in def)) throw new Error(`${file} has no ${service} service`);
  return def as unknown as ServiceDefinition & M;
}

/**
 * What a failed call says: its gRPC status name (INVALID_ARGUMENT, UNAVAILABLE, ...; UNKNOWN for what is not
 * a gRPC error) and its message. Each service wraps it in its own error type.
 */
export function callFailure(err: unknown): { code: string; message: string } {
  const e = err as Partial<ServiceError>;
  const code = typeof e.code === 'number' ? (status[e.code] ?? String(e.code)) : 'UNKNOWN';
  return { code, message: e.details || e.message || String(err) };
}

/** A host as compared with another: an IPv4 address as itself, not IPv4-mapped IPv6 (a dual-stack socket reports that). */
export function plainHost(host: string): string {
  return host.startsWith('::ffff:') ? host.slice(7) : host;
}

/** The host of a grpc-js peer string (ipv4:10.0.0.5:4242, ipv6:[::1]:4242), as `call.getPeer()` gives it. */
export function peerHost(peer: string): string {
  const rest = peer.replace(/^(ipv4|ipv6|unix):/, '');
  const at = rest.lastIndexOf(':');
  const host = at > 0 ? rest.slice(0, at) : rest;
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/** A generated client's unary method, as grpc-js makes it. */
export type UnaryMethod<Req, Res> = (
  req: Req,
  meta: Metadata,
  opts: { deadline: number },
  cb: (err: ServiceError | null, res?: Res) => void,
) => { cancel(): void };

/**
 * Calls a unary method with a deadline; aborting `signal` cancels the call. Errors come out through
 * `toError`, the service's own error type.
 */
export function callUnary<Req, Res>(
  client: Client,
  fn: UnaryMethod<Req, Res>,
  req: Req,
  deadlineMs: number,
  toError: (err: unknown) => Error,
  signal?: AbortSignal,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(toError(Object.assign(new Error('aborted before the call'), { code: status.CANCELLED })));
    const call = fn.call(client, req, new Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) => {
      signal?.removeEventListener('abort', onAbort);
      if (err) reject(toError(err));
      else resolve(res as Res);
    });
    const onAbort = (): void => call.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export {
  TLS_FILES,
  channelCredentials,
  makeThrowawayCa,
  readTlsDir,
  serverCredentials,
  tlsChannelOptions,
  tlsClientOptions,
  tlsServerOptions,
  type TlsMaterial,
} from './tls';
