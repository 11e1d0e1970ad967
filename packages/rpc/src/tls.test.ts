// The throwaway CA a local cluster and the tests use: real X.509 a TLS stack accepts, made without openssl.
import { X509Certificate } from 'node:crypto';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeThrowawayCa, readTlsDir } from './index';

describe('makeThrowawayCa', () => {
  it('writes a CA and a client-and-server certificate it signed, in the --tls-dir layout, readable by the owner only', async () => {
    const dir = makeThrowawayCa('unit');
    try {
      const ca = new X509Certificate(readFileSync(join(dir, 'ca.crt')));
      const leaf = new X509Certificate(readFileSync(join(dir, 'tls.crt')));
      expect(ca.ca).toBe(true);
      expect(ca.verify(ca.publicKey)).toBe(true);
      expect(leaf.ca).toBe(false);
      expect(leaf.checkIssued(ca)).toBe(true);
      expect(leaf.verify(ca.publicKey)).toBe(true);
      expect(leaf.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
      expect(leaf.subjectAltName).toBe('DNS:pdserve, DNS:localhost, IP Address:127.0.0.1');
      expect(Date.parse(leaf.validTo) - Date.now()).toBeGreaterThan(23 * 3600_000);
      const tls = readTlsDir(dir);
      expect(new X509Certificate(tls.cert).checkPrivateKey((await import('node:crypto')).createPrivateKey(tls.key))).toBe(true);
      for (const f of ['ca.crt', 'tls.crt', 'tls.key']) expect(statSync(join(dir, f)).mode & 0o777).toBe(0o600);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("makes a new CA each time: one cluster's certificate is not signed by another's CA", () => {
    const [a, b] = [makeThrowawayCa(), makeThrowawayCa()];
    try {
      const leafA = new X509Certificate(readFileSync(join(a, 'tls.crt')));
      const caB = new X509Certificate(readFileSync(join(b, 'ca.crt')));
      expect(leafA.verify(caB.publicKey)).toBe(false);
    } finally {
      for (const d of [a, b]) rmSync(d, { recursive: true, force: true });
    }
  });
});
