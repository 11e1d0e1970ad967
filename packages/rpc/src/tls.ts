// Mutual TLS inside the cluster, in one place: every gRPC server and channel and the transfer data port
// take their credentials from here. The material is a folder in cert-manager's (and a Kubernetes TLS
// Secret's) layout: ca.crt, tls.crt, tls.key. Trust is the CA: a peer is in the cluster when its
// certificate is signed by it (host names are not checked: peers dial registry addresses, pod IPs that no
// certificate names), so the CA must be the cluster's own, not a shared one.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ConnectionOptions, TlsOptions } from 'node:tls';
import { ChannelCredentials, ServerCredentials, credentials, type ChannelOptions } from '@grpc/grpc-js';
import { makeThrowawayCertificates } from './throwaway-ca';

/** A service's certificate, its key and the CA its peers' certificates must be signed by (PEM). */
export interface TlsMaterial {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
}

/** The file names in a TLS folder, as cert-manager and `kubectl create secret tls` (plus ca.crt) mount them. */
export const TLS_FILES = { ca: 'ca.crt', cert: 'tls.crt', key: 'tls.key' } as const;

/** Reads ca.crt, tls.crt and tls.key from `dir`; says which is missing. */
export function readTlsDir(dir: string): TlsMaterial {
  const read = (name: string): Buffer => {
    try {
      return readFileSync(join(dir, name));
    } catch (e) {
      throw new Error(`TLS folder ${dir}: cannot read ${name} (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
  };
  return { ca: read(TLS_FILES.ca), cert: read(TLS_FILES.cert), key: read(TLS_FILES.key) };
}

/** Chain checked against our CA; the name is not (see the header). */
const noHostCheck = (): undefined => undefined;

/** A gRPC server's credentials: mTLS that refuses clients without a certificate from our CA; plaintext without `tls`. */
export function serverCredentials(tls: TlsMaterial | undefined): ServerCredentials {
  if (tls === undefined) return ServerCredentials.createInsecure();
  return ServerCredentials.createSsl(tls.ca, [{ private_key: tls.key, cert_chain: tls.cert }], true);
}

/** A gRPC channel's credentials: presents our certificate, accepts servers signed by our CA; plaintext without `tls`. */
export function channelCredentials(tls: TlsMaterial | undefined): ChannelCredentials {
  if (tls === undefined) return credentials.createInsecure();
  return credentials.createSsl(tls.ca, tls.key, tls.cert, { checkServerIdentity: noHostCheck });
}

/**
 * TLS 1.3 suites of the data port, fastest first: AES-128-GCM moves KV bytes with ~15 % less CPU than
 * OpenSSL's default AES-256-GCM here (docs/benchmarks.md), at a strength still well beyond the P-256 keys.
 */
const DATA_PORT_CIPHERS = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256';

/**
 * Channel options to add with `channelCredentials(tls)`: the name TLS announces (SNI) is the cluster's, not
 * the peer's IP address (which TLS forbids there); it is not checked either way (see the header).
 */
export function tlsChannelOptions(tls: TlsMaterial | undefined): ChannelOptions {
  return tls === undefined ? {} : { 'grpc.ssl_target_name_override': 'pdserve' };
}

/** node:tls server options for a data port: client certificates required, signed by our CA. */
export function tlsServerOptions(tls: TlsMaterial): TlsOptions {
  return {
    ca: tls.ca,
    cert: tls.cert,
    key: tls.key,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.3',
    ciphers: DATA_PORT_CIPHERS,
    honorCipherOrder: true,
    // A peer that connects and never finishes its handshake lets go of the socket soon (default 120 s).
    handshakeTimeout: 10_000,
  };
}

/** node:tls connect options for dialing a data port with our certificate. */
export function tlsClientOptions(tls: TlsMaterial): ConnectionOptions {
  return {
    ca: tls.ca,
    cert: tls.cert,
    key: tls.key,
    rejectUnauthorized: true,
    checkServerIdentity: noHostCheck,
    servername: 'pdserve',
    minVersion: 'TLSv1.3',
    ciphers: DATA_PORT_CIPHERS,
  };
}

/** Certificates live as long as a dev cluster could: a day. */
const THROWAWAY_MS = 24 * 60 * 60 * 1000;

/**
 * For a local cluster and tests: a new CA (its key forgotten once it signed) and one certificate for every local
 * service (client and server use), in a fresh 0700 temp folder laid out as --tls-dir wants it.
 */
export function makeThrowawayCa(name = 'pdserve'): string {
  const dir = mkdtempSync(join(tmpdir(), 'pdserve-tls-'));
  const made = makeThrowawayCertificates(name, THROWAWAY_MS);
  writeFileSync(join(dir, TLS_FILES.ca), made.caCert, { mode: 0o600 });
  writeFileSync(join(dir, TLS_FILES.cert), made.cert, { mode: 0o600 });
  writeFileSync(join(dir, TLS_FILES.key), made.key, { mode: 0o600 });
  return dir;
}
