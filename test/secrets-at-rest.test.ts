import { readdir, readFile, rm, mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sql } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openEmbeddedDatabase, rowsOf } from '../src/database/index.ts'
import { SecretBox } from '../src/lib/secret-box.ts'
import { createServices } from '../src/modules/services.ts'
import { TokenProvider } from '../src/graph/token-provider.ts'
import { bearer, buildTestApp, randomSecretsKey } from './support/app.ts'
import { makeCertificate } from '../src/sandbox/certificates.ts'
import { createTestDatabase, type TestDatabase } from './support/database.ts'
import { FakeMicrosoft } from './support/fake-microsoft.ts'

const fake = new FakeMicrosoft()
const tenant = fake.addTenant()
const SECRET = 'Plaintext-Client-Secret-Needle-9f8e7d'
const certificate = makeCertificate({ password: 'Pfx-Password-Needle-1a2b3c' })
const entraApp = fake.registerApp(tenant, {
  secrets: [{ value: SECRET, expiresAt: new Date(Date.now() + 86_400_000) }],
  certificates: [certificate.certificatePem],
})
/** A distinctive run from the middle of the private key's base64. */
const keyNeedle = certificate.privateKeyPem.split('\n')[5]!

const secretInput = { name: 's', tenant: tenant.id, clientId: entraApp.clientId, authMethod: 'clientSecret' as const, clientSecret: SECRET }
const certInput = {
  name: 'c',
  tenant: tenant.id,
  clientId: entraApp.clientId,
  authMethod: 'certificate' as const,
  certificate: { pfx: certificate.pfx, password: certificate.password },
}

beforeAll(() => void fake.start())
afterAll(() => fake.stop())

describe('SecretBox', () => {
  const box = new SecretBox(randomSecretsKey())

  it('round-trips, and a value moved to another row or field does not open', () => {
    const sealed = box.seal('s3cret', 'integration:a:clientSecret')
    expect(sealed).toMatch(new RegExp(`^v1\\.${box.currentKeyId}\\.`))
    expect(sealed).not.toContain('s3cret')
    expect(box.open(sealed, 'integration:a:clientSecret')).toBe('s3cret')
    expect(() => box.open(sealed, 'integration:b:clientSecret')).toThrow(/does not open/)
    const tampered = sealed.slice(0, -3) + (sealed.endsWith('AAA') ? 'BBB' : 'AAA')
    expect(() => box.open(tampered, 'integration:a:clientSecret')).toThrow(/does not open/)
  })

  it('fingerprints match the same secret only, and reveal nothing without the key', () => {
    const fingerprint = box.fingerprint('abc')
    expect(box.fingerprintMatches(fingerprint, 'abc')).toBe(true)
    expect(box.fingerprintMatches(fingerprint, 'abd')).toBe(false)
    expect(new SecretBox(randomSecretsKey()).fingerprint('abc')).not.toBe(fingerprint)
  })
})

describe('no plaintext secret at rest', () => {
  it('no row of any table holds the client secret, the PFX password or the private key', async () => {
    const t = await buildTestApp()
    try {
      for (const payload of [secretInput, certInput]) {
        const created = await t.app.inject({ method: 'POST', url: '/v1/integrations', headers: bearer(t.adminKey), payload })
        expect(created.statusCode).toBe(201)
        await t.app.inject({ method: 'POST', url: `/v1/integrations/${created.json().id}/test`, headers: bearer(t.adminKey) })
      }
      // A webhook's signing secret, and the one that replaced it.
      const webhook = await t.app.inject({ method: 'POST', url: '/v1/webhooks', headers: bearer(t.adminKey), payload: { url: 'https://hooks.example.com/in', eventTypes: ['*'] } })
      const rotated = await t.app.inject({ method: 'POST', url: `/v1/webhooks/${webhook.json().endpoint.id}/rotate-secret`, headers: bearer(t.adminKey), payload: {} })
      const signing = [webhook.json().secret as string, rotated.json().secret as string].map((secret) => secret.slice('whsec_'.length))
      expect(signing.every((secret) => secret.length > 40)).toBe(true)
      const db = t.db.database.db
      const tables = rowsOf<{ table_schema: string; table_name: string }>(
        await db.execute(
          sql`select table_schema, table_name from information_schema.tables where table_schema in ('public', 'drizzle')`,
        ),
      )
      expect(tables.map((row) => row.table_name)).toEqual(expect.arrayContaining(['integrations', 'connection_tests', 'audit_events', 'webhook_endpoints']))
      for (const { table_schema, table_name } of tables) {
        const dump = JSON.stringify(rowsOf(await db.execute(sql.raw(`select * from "${table_schema}"."${table_name}"`))))
        for (const needle of [SECRET, certificate.password, keyNeedle, certificate.pfx.slice(100, 160), ...signing]) {
          expect(dump.includes(needle), `${table_name} holds a secret`).toBe(false)
        }
      }
    } finally {
      await t.close()
    }
  })

  it('the embedded database files on disk hold none of them', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mailgate-at-rest-'))
    try {
      const database = await openEmbeddedDatabase(dir)
      await database.migrate()
      const services = createServices({ db: database.db, secretBox: new SecretBox(randomSecretsKey()), tokens: new TokenProvider() })
      // The name is the control: it must be found on disk, or the search proves nothing.
      await services.integrations.create({ keyId: null }, { ...secretInput, name: 'Visible-Name-Needle-42' })
      await services.integrations.create({ keyId: null }, certInput)
      await database.db.execute(sql`checkpoint`)
      await database.close()
      const files = (await readdir(dir, { recursive: true, withFileTypes: true })).filter((entry) => entry.isFile())
      expect(files.length).toBeGreaterThan(10)
      let controlFound = false
      for (const file of files) {
        const content = await readFile(join(file.parentPath, file.name))
        if (content.includes(Buffer.from('Visible-Name-Needle-42'))) controlFound = true
        for (const needle of [SECRET, certificate.password, keyNeedle]) {
          expect(content.includes(Buffer.from(needle)), `${file.name} holds a secret`).toBe(false)
        }
      }
      expect(controlFound).toBe(true)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('rotating SECRETS_KEY', () => {
  let db: TestDatabase
  const oldKey = randomSecretsKey()
  const newKey = randomSecretsKey()
  beforeAll(async () => {
    db = await createTestDatabase()
  })
  afterAll(() => db.drop())

  function servicesWith(box: SecretBox) {
    return createServices({ db: db.database.db, secretBox: box, tokens: new TokenProvider({ timeoutMs: 2_000 }) })
  }

  it('old values stay readable under the previous key, reseal moves them, and then the old key can go', async () => {
    const before = servicesWith(new SecretBox(oldKey))
    const secretOne = await before.integrations.create({ keyId: null }, secretInput)
    const certOne = await before.integrations.create({ keyId: null }, certInput)

    const withoutOldKey = servicesWith(new SecretBox(newKey))
    const unreadable = await withoutOldKey.integrations.test({ keyId: null }, secretOne.id)
    expect(unreadable.steps[0]).toMatchObject({ ok: false, code: 'SECRETS_UNREADABLE', hint: expect.stringContaining('SECRETS_KEY_PREVIOUS') })
    // A start without the old key neither fails nor damages anything: it reports the rows.
    const skipped = await withoutOldKey.integrations.resealSecrets()
    expect(skipped).toEqual({ resealed: 0, unreadable: expect.arrayContaining([expect.objectContaining({ integrationId: secretOne.id })]) })

    const during = servicesWith(new SecretBox(newKey, [oldKey]))
    expect((await during.integrations.test({ keyId: null }, secretOne.id)).ok).toBe(true)
    expect((await during.integrations.test({ keyId: null }, certOne.id)).ok).toBe(true)
    expect(await during.integrations.resealSecrets()).toEqual({ resealed: 2, unreadable: [] })
    expect(await during.integrations.resealSecrets()).toEqual({ resealed: 0, unreadable: [] })

    const after = servicesWith(new SecretBox(newKey))
    expect((await after.integrations.test({ keyId: null }, secretOne.id)).ok).toBe(true)
    expect((await after.integrations.test({ keyId: null }, certOne.id)).ok).toBe(true)
    // Resealing keeps the configuration identical, so verification survives the rotation.
    expect((await after.integrations.get(secretOne.id)).verified).toBe(true)
  })
})
