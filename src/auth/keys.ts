/**
 * The keys that verify subscriber tokens, read once at start-up, and the algorithms each may
 * verify (a token's `alg` is accepted only from its key's set: no HS/RS confusion, no `none`).
 *
 *   LP_JWT_SECRET      HS256, HS384, HS512
 *   LP_JWT_PUBLIC_KEY  a PEM public key or X.509 certificate: RSA → RS*, PS*;
 *                      EC P-256/384/521 → ES256/384/512; Ed25519 → EdDSA (and "Ed25519")
 *   LP_JWT_JWKS_URL    any of RS*, PS*, ES*, EdDSA, as the set's keys allow
 */

import { type KeyObject, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../config.js';

export const HMAC_ALGORITHMS: readonly string[] = ['HS256', 'HS384', 'HS512'];
const RSA = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];
const ED25519 = ['EdDSA', 'Ed25519'];
const EC_CURVES: Record<string, string> = { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' };
export const ASYMMETRIC_ALGORITHMS: readonly string[] = [...RSA, 'ES256', 'ES384', 'ES512', ...ED25519];

/** jose refuses smaller RSA keys; say so at start-up rather than on every token. */
const MIN_RSA_BITS = 2048;

export interface PublicKey {
  readonly key: KeyObject;
  readonly algorithms: readonly string[];
  /** For messages: "RSA 2048", "EC P-256 (prime256v1)", "Ed25519". */
  readonly description: string;
}

/** Reads LP_JWT_PUBLIC_KEY: throws ConfigError naming the variable on anything unusable. */
export function readPublicKey(file: string): PublicKey {
  const fail = (why: string): never => {
    throw new ConfigError(`LP_JWT_PUBLIC_KEY=${JSON.stringify(file)} is not valid: ${why}`);
  };
  let pem = '';
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    fail(`cannot read the file (${(err as Error).message})`);
  }
  // createPublicKey would quietly derive the public half; a private key does not belong here.
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) fail('it holds a private key; give the public key (or certificate) only');
  let key: KeyObject | undefined;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    fail(`not a PEM public key or certificate (${(err as Error).message})`);
  }
  const k = key!;
  const details = k.asymmetricKeyDetails ?? {};
  switch (k.asymmetricKeyType) {
    case 'rsa': {
      const bits = details.modulusLength ?? 0;
      if (bits < MIN_RSA_BITS) fail(`an RSA key of ${bits} bits; at least ${MIN_RSA_BITS} are required`);
      return { key: k, algorithms: RSA, description: `RSA ${bits}` };
    }
    case 'rsa-pss':
      // Node cannot hand a PSS-only key to WebCrypto (no JWK form); the same key as plain RSA
      // verifies PS256/384/512 too.
      return fail('an RSA-PSS-only key (OID id-RSASSA-PSS); give the same key as a plain RSA public key ("BEGIN PUBLIC KEY" with rsaEncryption), which verifies PS* tokens too');
    case 'ec': {
      const alg = EC_CURVES[details.namedCurve ?? ''];
      if (!alg) fail(`EC curve ${details.namedCurve} is not one of P-256, P-384, P-521`);
      return { key: k, algorithms: [alg!], description: `EC ${details.namedCurve}` };
    }
    case 'ed25519':
      return { key: k, algorithms: ED25519, description: 'Ed25519' };
    default:
      return fail(`a ${k.asymmetricKeyType} key; use RSA, EC (P-256/384/521) or Ed25519`);
  }
}
