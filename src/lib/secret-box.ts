import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto'

/**
 * Seals secrets at rest with AES-256-GCM. Every sealed value names the key that sealed it,
 * so SECRETS_KEY can rotate: the new key seals, previous keys still open, and reseal()
 * moves old values to the new key.
 *
 * Format: `v1.<keyId>.<iv>.<ciphertext>.<tag>` (base64url parts). The caller passes a
 * context (e.g. `integration:<id>:clientSecret`) bound in as associated data, so a sealed
 * value copied into another row or field does not open.
 */
export class SecretBox {
  readonly currentKeyId: string
  private readonly keys: Map<string, Buffer>

  constructor(currentKey: string, previousKeys: string[] = []) {
    const current = decodeKey(currentKey)
    this.currentKeyId = keyIdOf(current)
    this.keys = new Map([[this.currentKeyId, current]])
    for (const previous of previousKeys) {
      const key = decodeKey(previous)
      if (!this.keys.has(keyIdOf(key))) this.keys.set(keyIdOf(key), key)
    }
  }

  seal(plaintext: string, context: string): string {
    const iv = randomBytes(12)
    const cipher = createCipheriv('aes-256-gcm', this.keys.get(this.currentKeyId)!, iv)
    cipher.setAAD(Buffer.from(context, 'utf8'))
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()])
    return ['v1', this.currentKeyId, iv, ciphertext, cipher.getAuthTag()]
      .map((part) => (typeof part === 'string' ? part : part.toString('base64url')))
      .join('.')
  }

  open(sealed: string, context: string): string {
    const [version, keyId, iv, ciphertext, tag] = sealed.split('.')
    if (version !== 'v1' || !keyId || !iv || ciphertext === undefined || !tag) {
      throw new SecretUnreadableError('not a sealed value', keyId)
    }
    const key = this.keys.get(keyId)
    if (!key) throw new SecretUnreadableError(`sealed with key ${keyId}, which this server does not have`, keyId)
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'))
      decipher.setAAD(Buffer.from(context, 'utf8'))
      decipher.setAuthTag(Buffer.from(tag, 'base64url'))
      return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString('utf8')
    } catch {
      throw new SecretUnreadableError('the sealed value does not open (altered, or moved from another field)', keyId)
    }
  }

  isCurrent(sealed: string): boolean {
    return sealed.split('.')[1] === this.currentKeyId
  }

  /**
   * A keyed fingerprint: equal secrets give equal fingerprints under one key, and the
   * fingerprint reveals nothing without the key. Tagged with the key id, like sealed values.
   */
  fingerprint(secret: string): string {
    return `${this.currentKeyId}:${this.hmac(this.currentKeyId, secret)}`
  }

  fingerprintMatches(fingerprint: string, secret: string): boolean {
    const [keyId, digest] = fingerprint.split(':')
    if (!keyId || !digest || !this.keys.has(keyId)) return false
    return this.hmac(keyId, secret) === digest
  }

  private hmac(keyId: string, secret: string): string {
    // A key derived for this one purpose, so fingerprints never use the sealing key itself.
    const macKey = Buffer.from(hkdfSync('sha256', this.keys.get(keyId)!, Buffer.alloc(0), 'mailgate fingerprint', 32))
    return createHmac('sha256', macKey).update(secret, 'utf8').digest('hex')
  }
}

export class SecretUnreadableError extends Error {
  readonly keyId: string | undefined

  constructor(reason: string, keyId: string | undefined) {
    super(`stored secret unreadable: ${reason}`)
    this.name = 'SecretUnreadableError'
    this.keyId = keyId
  }
}

function decodeKey(base64: string): Buffer {
  const key = Buffer.from(base64, 'base64')
  if (key.length !== 32) throw new Error('a secrets key must be 32 bytes, base64-encoded')
  return key
}

export function keyIdOf(key: Buffer): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 8)
}
