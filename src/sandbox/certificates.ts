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
  const key = forgeKeyPair()
  const cert = unsignedCertificate(key.publicKey, '01', options.notBefore ?? new Date(Date.now() - DAY), options.notAfter ?? new Date(Date.now() + 365 * DAY))
  const attrs = [{ name: 'commonName', value: options.subject ?? 'mailgate-test' }]
  cert.setSubject(attrs)
  cert.setIssuer(attrs)
  cert.sign(key.privateKey, forge.md.sha256.create())
  const password = options.password ?? 'pfx-password'
  const p12 = forge.pkcs12.toPkcs12Asn1(options.includeKey === false ? null : key.privateKey, [cert], password, {
    algorithm: 'aes256',
  })
  const pfx = Buffer.from(forge.asn1.toDer(p12).getBytes(), 'binary').toString('base64')
  return { certificatePem: forge.pki.certificateToPem(cert), privateKeyPem: key.privateKeyPem, pfx, password }
}

function forgeKeyPair() {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const privateKeyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  return {
    privateKeyPem,
    privateKey: forge.pki.privateKeyFromPem(privateKeyPem),
    publicKey: forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString()),
  }
}

/** A certificate for `publicKey` with a random serial number after `serialPrefix`, still to be named and signed. */
function unsignedCertificate(publicKey: forge.pki.PublicKey, serialPrefix: string, notBefore: Date, notAfter: Date): forge.pki.Certificate {
  const cert = forge.pki.createCertificate()
  cert.publicKey = publicKey
  cert.serialNumber = serialPrefix + forge.util.bytesToHex(forge.random.getBytesSync(8))
  cert.validity.notBefore = notBefore
  cert.validity.notAfter = notAfter
  return cert
}

/**
 * A TLS server certificate for `names` (IP addresses or DNS names), issued by a private CA
 * made for it: a client trusts it only when told to trust `caPem` (NODE_EXTRA_CA_CERTS).
 */
export function makeServerCertificate(names: string[]): { caPem: string; certPem: string; keyPem: string } {
  const ca = forgeKeyPair()
  const caCert = unsignedCertificate(ca.publicKey, '01', new Date(Date.now() - DAY), new Date(Date.now() + 30 * DAY))
  const caName = [{ name: 'commonName', value: 'Mailgate test CA' }]
  caCert.setSubject(caName)
  caCert.setIssuer(caName)
  caCert.setExtensions([
    { name: 'basicConstraints', cA: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true },
  ])
  caCert.sign(ca.privateKey, forge.md.sha256.create())

  const leaf = forgeKeyPair()
  const cert = unsignedCertificate(leaf.publicKey, '02', new Date(Date.now() - DAY), new Date(Date.now() + 30 * DAY))
  cert.setSubject([{ name: 'commonName', value: names[0] ?? 'localhost' }])
  cert.setIssuer(caName)
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: names.map((name) => (/^[\d.]+$/.test(name) ? { type: 7, ip: name } : { type: 2, value: name })) },
  ])
  cert.sign(ca.privateKey, forge.md.sha256.create())
  return { caPem: forge.pki.certificateToPem(caCert), certPem: forge.pki.certificateToPem(cert), keyPem: leaf.privateKeyPem }
}
