// The cluster's mTLS material from the command line: --tls-dir names a folder in cert-manager's layout;
// a local cluster (serve, start) without one makes a throwaway CA and one certificate in a temp folder, so
// that even a laptop cluster never talks plaintext unless told (--tls off).
import { rmSync } from 'node:fs';
import { makeThrowawayCa, readTlsDir, type TlsMaterial } from '@pdserve/rpc';
import { oneOf, UsageError, type Flags, type FlagSpec } from './args';

export const TLS_FLAGS: Readonly<Record<string, FlagSpec>> = {
  'tls-dir': {
    type: 'string',
    help: 'folder with ca.crt, tls.crt and tls.key (a cert-manager or Kubernetes TLS Secret): mTLS on every gRPC channel and the KV data port',
  },
  tls: {
    type: 'string',
    help: 'auto: mTLS when --tls-dir is given (a local cluster without one makes a throwaway CA); on: require it; off: plaintext inside the cluster',
    default: 'auto',
    value: oneOf('auto', 'on', 'off'),
  },
};

/** A single service's material: from --tls-dir, or none (plaintext) unless --tls on demands it. */
export function tlsOf(f: Flags): TlsMaterial | undefined {
  const mode = f.str('tls') ?? 'auto';
  const dir = f.str('tls-dir');
  if (mode === 'off') return undefined;
  if (dir === undefined || dir === '') {
    if (mode === 'on') throw new UsageError('--tls on needs --tls-dir (a folder with ca.crt, tls.crt and tls.key)');
    return undefined;
  }
  try {
    return readTlsDir(dir);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/**
 * A local cluster's material and the folder it is in (for child processes): --tls-dir if given, else (unless
 * --tls off) a throwaway CA made now, removed by `dispose`.
 */
export function localTlsOf(f: Flags): { tls: TlsMaterial | undefined; dir: string | undefined; dispose: () => void } {
  const none = { tls: undefined, dir: undefined, dispose: () => undefined };
  if ((f.str('tls') ?? 'auto') === 'off') return none;
  const given = f.str('tls-dir');
  if (given !== undefined && given !== '') return { tls: tlsOf(f), dir: given, dispose: () => undefined };
  const dir = makeThrowawayCa();
  return { tls: readTlsDir(dir), dir, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}
