import { generateKeyPairSync } from 'node:crypto'
import forge from 'node-forge'

export interface TestCertificate {
  certificatePem: string
  privateKeyPem: string
  /** Base64 PFX holding certificate and key, protected by `password`. */
  pfx: string
  password: string
}

const DAY = 86_400_000

/**
 * A self-signed RSA certificate as Entra app registrations use them. The key comes from
 * Node's native generator (fast); node-forge builds the certificate and the PFX.
 */
export function makeCertificate(
  options: { subject?: string; notBefore?: Date; notAfter?: Date; password?: string; includeKey?: boolean } = {},
): TestCertificate {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const privateKeyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  const forgeKey = forge.pki.privateKeyFromPem(privateKeyPem)
  const cert = forge.pki.createCertificate()
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString())
  cert.serialNumber = '01' + forge.util.bytesToHex(forge.random.getBytesSync(8))
  cert.validity.notBefore = options.notBefore ?? new Date(Date.now() - DAY)
  cert.validity.notAfter = options.notAfter ?? new Date(Date.now() + 365 * DAY)
  const attrs = [{ name: 'commonName', value: options.subject ?? 'mailgate-test' }]
  cert.setSubject(attrs)
  cert.setIssuer(attrs)
  cert.sign(forgeKey, forge.md.sha256.create())
  const password = options.password ?? 'pfx-password'
  const p12 = forge.pkcs12.toPkcs12Asn1(options.includeKey === false ? null : forgeKey, [cert], password, {
    algorithm: 'aes256',
  })
  const pfx = Buffer.from(forge.asn1.toDer(p12).getBytes(), 'binary').toString('base64')
  return { certificatePem: forge.pki.certificateToPem(cert), privateKeyPem, pfx, password }
}
