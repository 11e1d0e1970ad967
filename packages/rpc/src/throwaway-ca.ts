// A throwaway CA and one certificate signed by it, for a local cluster and tests, made with node:crypto
// alone: an image or a laptop without the `openssl` command still runs with mTLS. The certificates are
// X.509 v3, ECDSA P-256 with SHA-256, DER-encoded here field by field (RFC 5280); the CA's key never leaves
// this function.
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';

/** PEM files in the layout --tls-dir reads. */
export interface ThrowawayCertificates {
  readonly caCert: string;
  readonly cert: string;
  readonly key: string;
}

/** Names the certificate is valid for (not checked by pdserve's peers, but true). */
const DNS_NAMES = ['pdserve', 'localhost'];
const IP_ADDRESSES = [[127, 0, 0, 1]];

export function makeThrowawayCertificates(name: string, validMs: number): ThrowawayCertificates {
  const ca = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const leaf = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const from = new Date(Date.now() - 60 * 60 * 1000); // an hour's slack for clocks that disagree
  const until = new Date(Date.now() + validMs);
  const caName = dn(`${name} local CA`);
  const caKeyId = keyId(ca.publicKey);
  const caCert = certificate({
    serial: serial(),
    issuer: caName,
    subject: caName,
    from,
    until,
    publicKey: ca.publicKey,
    signer: ca.privateKey,
    extensions: [
      extension('2.5.29.19', true, seq(bool(true))), // basicConstraints: CA
      extension('2.5.29.15', true, bitString(Buffer.from([0x06]), 1)), // keyUsage: keyCertSign, cRLSign
      extension('2.5.29.14', false, octet(caKeyId)), // subjectKeyIdentifier
    ],
  });
  const cert = certificate({
    serial: serial(),
    issuer: caName,
    subject: dn('pdserve'),
    from,
    until,
    publicKey: leaf.publicKey,
    signer: ca.privateKey,
    extensions: [
      extension('2.5.29.19', true, seq()), // basicConstraints: not a CA
      extension('2.5.29.15', true, bitString(Buffer.from([0x80]), 7)), // keyUsage: digitalSignature
      extension('2.5.29.37', false, seq(oid('1.3.6.1.5.5.7.3.1'), oid('1.3.6.1.5.5.7.3.2'))), // extKeyUsage: server, client auth
      extension(
        '2.5.29.17',
        false,
        seq(
          // subjectAltName
          ...DNS_NAMES.map((d) => tlv(0x82, Buffer.from(d, 'ascii'))),
          ...IP_ADDRESSES.map((ip) => tlv(0x87, Buffer.from(ip))),
        ),
      ),
      extension('2.5.29.35', false, seq(tlv(0x80, caKeyId))), // authorityKeyIdentifier
      extension('2.5.29.14', false, octet(keyId(leaf.publicKey))),
    ],
  });
  return {
    caCert: pem('CERTIFICATE', caCert),
    cert: pem('CERTIFICATE', cert),
    key: leaf.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

interface CertificateFields {
  readonly serial: Buffer;
  readonly issuer: Buffer;
  readonly subject: Buffer;
  readonly from: Date;
  readonly until: Date;
  readonly publicKey: KeyObject;
  readonly signer: KeyObject;
  readonly extensions: readonly Buffer[];
}

/** ecdsa-with-SHA256 (RFC 5758: no parameters). */
const ecdsaSha256 = (): Buffer => seq(oid('1.2.840.10045.4.3.2'));

function certificate(f: CertificateFields): Buffer {
  const tbs = seq(
    explicit(0, integer(Buffer.from([2]))), // v3
    integer(f.serial),
    ecdsaSha256(),
    f.issuer,
    seq(time(f.from), time(f.until)),
    f.subject,
    f.publicKey.export({ type: 'spki', format: 'der' }),
    explicit(3, seq(...f.extensions)),
  );
  return seq(tbs, ecdsaSha256(), bitString(sign('sha256', tbs, f.signer), 0));
}

// DER, the few types a certificate needs.
function tlv(tag: number, body: Buffer): Buffer {
  const n = body.byteLength;
  const length =
    n < 0x80
      ? Buffer.from([n])
      : (() => {
          const bytes: number[] = [];
          for (let x = n; x > 0; x = Math.floor(x / 256)) bytes.unshift(x & 0xff);
          return Buffer.from([0x80 | bytes.length, ...bytes]);
        })();
  return Buffer.concat([Buffer.from([tag]), length, body]);
}
const seq = (...parts: Buffer[]): Buffer => tlv(0x30, Buffer.concat(parts));
const set = (...parts: Buffer[]): Buffer => tlv(0x31, Buffer.concat(parts));
const bool = (v: boolean): Buffer => tlv(0x01, Buffer.from([v ? 0xff : 0]));
const octet = (b: Buffer): Buffer => tlv(0x04, b);
const explicit = (n: number, body: Buffer): Buffer => tlv(0xa0 + n, body);
const bitString = (b: Buffer, unusedBits: number): Buffer => tlv(0x03, Buffer.concat([Buffer.from([unusedBits]), b]));

/** A non-negative INTEGER: no redundant leading zero, one added where the top bit is set. */
function integer(b: Buffer): Buffer {
  let v = b;
  while (v.byteLength > 1 && v[0] === 0 && ((v[1] as number) & 0x80) === 0) v = v.subarray(1);
  return tlv(0x02, ((v[0] as number) & 0x80) !== 0 ? Buffer.concat([Buffer.from([0]), v]) : v);
}

function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number) as [number, number, ...number[]];
  const out = [40 * a + b];
  for (const v of rest) {
    const enc = [v & 0x7f];
    for (let x = Math.floor(v / 128); x > 0; x = Math.floor(x / 128)) enc.unshift((x & 0x7f) | 0x80);
    out.push(...enc);
  }
  return tlv(0x06, Buffer.from(out));
}

/** A Name with one commonName. */
const dn = (cn: string): Buffer => seq(set(seq(oid('2.5.4.3'), tlv(0x0c, Buffer.from(cn, 'utf8')))));

/** UTCTime through 2049, GeneralizedTime after (RFC 5280 4.1.2.5). */
function time(d: Date): Buffer {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14); // YYYYMMDDHHMMSS
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(`${iso.slice(2)}Z`)) : tlv(0x18, Buffer.from(`${iso}Z`));
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(oid(id), bool(true), octet(value)) : seq(oid(id), octet(value));
}

/** A positive serial of 16 random bytes. */
function serial(): Buffer {
  const b = randomBytes(16);
  b[0] = ((b[0] as number) & 0x7f) | 0x01;
  return b;
}

const keyId = (k: KeyObject): Buffer =>
  createHash('sha1')
    .update(k.export({ type: 'spki', format: 'der' }))
    .digest();

function pem(label: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
