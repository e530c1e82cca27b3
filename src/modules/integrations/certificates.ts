import { createPrivateKey, X509Certificate } from 'node:crypto'
import forge from 'node-forge'
import { UnprocessableError } from '../../lib/errors.ts'

export interface ParsedCertificate {
  certificatePem: string
  privateKeyPem: string
  /** Hex, upper case, as the Entra portal shows it. */
  thumbprintSha1: string
  thumbprintSha256: string
  subject: string
  notBefore: Date
  notAfter: Date
}

export type CertificateProblem =
  | 'CERTIFICATE_NOT_PFX'
  | 'CERTIFICATE_WRONG_PASSWORD'
  | 'CERTIFICATE_NO_PRIVATE_KEY'
  | 'CERTIFICATE_INVALID_PEM'
  | 'CERTIFICATE_KEY_MISMATCH'
  | 'CERTIFICATE_EXPIRED'
  | 'CERTIFICATE_NOT_YET_VALID'

const titles: Record<CertificateProblem, string> = {
  CERTIFICATE_NOT_PFX: 'The file is not a PFX (PKCS#12) certificate',
  CERTIFICATE_WRONG_PASSWORD: 'The PFX password is wrong',
  CERTIFICATE_NO_PRIVATE_KEY: 'The certificate has no private key',
  CERTIFICATE_INVALID_PEM: 'The PEM certificate or key cannot be read',
  CERTIFICATE_KEY_MISMATCH: 'The private key does not belong to the certificate',
  CERTIFICATE_EXPIRED: 'The certificate has expired',
  CERTIFICATE_NOT_YET_VALID: 'The certificate is not valid yet',
}

export class CertificateError extends UnprocessableError {
  override readonly code: CertificateProblem
  override readonly title: string

  constructor(code: CertificateProblem, field: string, detail: string) {
    super(detail, { field })
    this.code = code
    this.title = titles[code]
  }
}

const hex = (fingerprint: string) => fingerprint.replaceAll(':', '').toUpperCase()

function describe(certificatePem: string, privateKeyPem: string, field: string, now: Date): ParsedCertificate {
  let certificate: X509Certificate
  try {
    certificate = new X509Certificate(certificatePem)
  } catch {
    throw new CertificateError('CERTIFICATE_INVALID_PEM', field, 'The certificate is not a valid X.509 certificate.')
  }
  let privateKey
  try {
    privateKey = createPrivateKey(privateKeyPem)
  } catch {
    throw new CertificateError(
      'CERTIFICATE_INVALID_PEM',
      field,
      'The private key cannot be read. Give an unencrypted PEM private key (BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY).',
    )
  }
  if (!certificate.checkPrivateKey(privateKey)) {
    throw new CertificateError(
      'CERTIFICATE_KEY_MISMATCH',
      field,
      'The private key does not match the certificate. Export both from the same certificate.',
    )
  }
  const notBefore = new Date(certificate.validFrom)
  const notAfter = new Date(certificate.validTo)
  if (notAfter <= now) {
    throw new CertificateError(
      'CERTIFICATE_EXPIRED',
      field,
      `The certificate expired on ${notAfter.toISOString()}. Create a new certificate, upload its public part to the app registration in Entra ID, and give it here.`,
    )
  }
  if (notBefore > now) {
    throw new CertificateError(
      'CERTIFICATE_NOT_YET_VALID',
      field,
      `The certificate is valid only from ${notBefore.toISOString()}. Check the clock of the machine that made it, or wait.`,
    )
  }
  return {
    certificatePem: certificate.toString(),
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    thumbprintSha1: hex(certificate.fingerprint),
    thumbprintSha256: hex(certificate.fingerprint256),
    subject: certificate.subject.replaceAll('\n', ', '),
    notBefore,
    notAfter,
  }
}

/** Reads a base64 PFX; the private key is taken out so the PFX and its password need not be kept. */
export function parsePfx(pfxBase64: string, password: string, now = new Date()): ParsedCertificate {
  const field = 'certificate.pfx'
  const der = Buffer.from(pfxBase64, 'base64')
  let p12: forge.pkcs12.Pkcs12Pfx
  try {
    const asn1 = forge.asn1.fromDer(forge.util.createBuffer(der.toString('binary')))
    p12 = forge.pkcs12.pkcs12FromAsn1(asn1, password)
  } catch (error) {
    if (/MAC could not be verified|Invalid password/i.test((error as Error).message)) {
      throw new CertificateError('CERTIFICATE_WRONG_PASSWORD', 'certificate.password', 'The PFX password is wrong.')
    }
    throw new CertificateError(
      'CERTIFICATE_NOT_PFX',
      field,
      'The file is not a PFX (PKCS#12). Export the certificate with its private key as .pfx and send it base64-encoded.',
    )
  }
  const keyBags = [
    ...(p12.getBags({ bagType: forge.pki.oids.pkcs8ShroudedKeyBag })[forge.pki.oids.pkcs8ShroudedKeyBag!] ?? []),
    ...(p12.getBags({ bagType: forge.pki.oids.keyBag })[forge.pki.oids.keyBag!] ?? []),
  ]
  const key = keyBags.find((bag) => bag.key)?.key
  if (!key) {
    throw new CertificateError(
      'CERTIFICATE_NO_PRIVATE_KEY',
      field,
      'The PFX holds no private key. Export the certificate again with "Yes, export the private key".',
    )
  }
  const certBags = p12.getBags({ bagType: forge.pki.oids.certBag })[forge.pki.oids.certBag!] ?? []
  const privateKeyPem = forge.pki.privateKeyToPem(key)
  const candidates = certBags.filter((bag) => bag.cert).map((bag) => forge.pki.certificateToPem(bag.cert!))
  if (candidates.length === 0) {
    throw new CertificateError('CERTIFICATE_NOT_PFX', field, 'The PFX holds a private key but no certificate.')
  }
  // A PFX may carry the issuing chain too: the certificate is the one the key belongs to.
  const leaf =
    candidates.find((pem) => {
      try {
        return new X509Certificate(pem).checkPrivateKey(createPrivateKey(privateKeyPem))
      } catch {
        return false
      }
    }) ?? candidates[0]!
  return describe(leaf, privateKeyPem, field, now)
}

export function parsePem(certificatePem: string, privateKeyPem: string, now = new Date()): ParsedCertificate {
  return describe(certificatePem, privateKeyPem, 'certificate.certificatePem', now)
}
