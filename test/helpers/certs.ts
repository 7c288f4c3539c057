// Test PKI built with the `openssl` CLI. EC P-256 keys keep it fast (~10 ms
// per cert). Every extension comes from a config file we write ourselves, so
// the result does not depend on the distribution's openssl.cnf defaults.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export interface KeyPair {
  cert: string; // path to PEM certificate
  key: string; // path to PEM private key (PKCS#8, unencrypted, mode 0600)
}

export interface CertNames {
  dns?: string[];
  ip?: string[];
  /** Subject CN; defaults to the first DNS name, else the file name. */
  cn?: string;
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

/** Creates `<dir>/ca.crt` + `<dir>/ca.key`, a self-signed test CA. */
export function makeCA(dir: string, cn = 'Sluice Test CA'): KeyPair {
  fs.mkdirSync(dir, { recursive: true });
  const cert = path.join(dir, 'ca.crt');
  const key = path.join(dir, 'ca.key');
  const cnf = path.join(dir, 'ca.cnf');
  fs.writeFileSync(
    cnf,
    [
      '[req]',
      'distinguished_name = dn',
      'x509_extensions = v3_ca',
      'prompt = no',
      '[dn]',
      `CN = ${cn}`,
      '[v3_ca]',
      'basicConstraints = critical, CA:TRUE',
      'keyUsage = critical, keyCertSign, cRLSign',
      'subjectKeyIdentifier = hash',
      '',
    ].join('\n'),
  );
  openssl(['req', '-x509', '-new', ...EC, '-config', cnf, '-days', '3650',
    '-keyout', key, '-out', cert]);
  fs.chmodSync(key, 0o600);
  return { cert, key };
}

/**
 * Issues `<dir>/<name>.crt` + `<dir>/<name>.key` signed by `ca`, with the
 * given SANs (hostname checks use SANs only, never the CN) and both
 * serverAuth and clientAuth EKUs so the same helper serves mTLS tests.
 */
export function issueCert(
  ca: KeyPair,
  dir: string,
  name: string,
  names: CertNames = { dns: ['localhost'], ip: ['127.0.0.1'] },
): KeyPair {
  fs.mkdirSync(dir, { recursive: true });
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  const csr = path.join(dir, `${name}.csr`);
  const cnf = path.join(dir, `${name}.cnf`);
  const dns = names.dns ?? [];
  const ip = names.ip ?? [];
  const san = [...dns.map((d) => `DNS:${d}`), ...ip.map((i) => `IP:${i}`)];
  const cn = names.cn ?? dns[0] ?? name;
  fs.writeFileSync(
    cnf,
    [
      '[req]',
      'distinguished_name = dn',
      'prompt = no',
      '[dn]',
      `CN = ${cn}`,
      '[v3_leaf]',
      'basicConstraints = critical, CA:FALSE',
      'keyUsage = critical, digitalSignature',
      'extendedKeyUsage = serverAuth, clientAuth',
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid, issuer',
      ...(san.length ? [`subjectAltName = ${san.join(', ')}`] : []),
      '',
    ].join('\n'),
  );
  openssl(['req', '-new', ...EC, '-config', cnf, '-keyout', key, '-out', csr]);
  // A random serial instead of -CAcreateserial: no shared serial file, so
  // parallel test processes can issue from the same CA safely.
  openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key,
    '-set_serial', `0x${randomBytes(12).toString('hex')}`, '-days', '825',
    '-sha256', '-extfile', cnf, '-extensions', 'v3_leaf', '-out', cert]);
  fs.chmodSync(key, 0o600);
  fs.rmSync(csr, { force: true });
  return { cert, key };
}
