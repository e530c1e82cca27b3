import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SecretBox } from '../src/lib/secret-box.ts'
import { buildTestApp, randomSecretsKey, type TestApp } from './support/app.ts'
import { FakeMicrosoft, type FakeApp, type FakeTenant } from './support/fake-microsoft.ts'
import { mailSetup } from './support/mail.ts'

/** The one door to a mailbox, as two instances on one database see it. */

const fake = new FakeMicrosoft()
const secretsKey = randomSecretsKey()
let first: TestApp
let second: TestApp
let tenant: FakeTenant
let entraApp: FakeApp
let integrationId: string
const inAYear = () => new Date(Date.now() + 365 * 86_400_000)

beforeAll(async () => {
  fake.start()
  tenant = fake.addTenant()
  entraApp = fake.registerApp(tenant, { roles: ['Mail.Send'], secrets: [{ value: 'old-secret', expiresAt: inAYear() }] })
  fake.addMailbox(tenant, 'support@contoso.com')
  first = await buildTestApp({ secretBox: new SecretBox(secretsKey) })
  second = await buildTestApp({ secretBox: new SecretBox(secretsKey), database: first.db })
  integrationId = await mailSetup(first).integration(tenant.id, entraApp.clientId, 'old-secret')
})
afterAll(async () => {
  await second.app.close()
  await first.close()
  fake.stop()
})

describe('opening a mailbox', () => {
  it('gives a Graph client with the token roles and what they allow, reusing the client and its token', async () => {
    const access = await first.app.services.mailboxes.open(integrationId)
    expect(access.roles).toEqual(['Mail.Send'])
    expect(access.capabilities).toEqual({ read: false, readWrite: false, send: true })
    await access.client.folder('support@contoso.com', 'inbox').catch(() => {}) // Mail.Send cannot read: any answer will do
    const tokensBefore = fake.tokenRequests.length
    const again = await first.app.services.mailboxes.open(integrationId)
    expect(again.client).toBe(access.client)
    expect(fake.tokenRequests.length).toBe(tokensBefore)
  })

  it('uses a credential another instance saved from the very next open, not a minute later', async () => {
    const before = await first.app.services.mailboxes.open(integrationId)
    entraApp.secrets = [{ value: 'new-secret', expiresAt: inAYear() }] // the old one is revoked in Entra
    const patched = await second.app.inject({
      method: 'PATCH',
      url: `/v1/integrations/${integrationId}`,
      headers: { authorization: `Bearer ${second.adminKey}` },
      payload: { clientSecret: 'new-secret' },
    })
    expect(patched.statusCode, patched.body).toBe(200)
    const tokensBefore = fake.tokenRequests.length
    const after = await first.app.services.mailboxes.open(integrationId)
    expect(after.client).not.toBe(before.client)
    expect(fake.tokenRequests.slice(tokensBefore).map((request) => request.outcome)).toEqual(['issued'])
  })

  it('a fresh open asks Entra even when a token is cached, and reports its refusal as an authentication failure', async () => {
    await first.app.services.mailboxes.open(integrationId)
    entraApp.secrets = []
    const tokensBefore = fake.tokenRequests.length
    await expect(first.app.services.mailboxes.open(integrationId)).resolves.toBeDefined() // cached token
    const error = await first.app.services.mailboxes.open(integrationId, { fresh: true }).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'AUTHENTICATION_FAILED', tokenCode: 'INVALID_CLIENT_SECRET', countsTowardDisable: true, transientAuthentication: false })
    expect(fake.tokenRequests.length).toBe(tokensBefore + 1)
    entraApp.secrets = [{ value: 'new-secret', expiresAt: inAYear() }]
  })

  it('a credential no configured key opens is SECRETS_UNREADABLE, naming the fix', async () => {
    const other = await buildTestApp({ secretBox: new SecretBox(randomSecretsKey()), database: first.db })
    try {
      const error = await other.app.services.mailboxes.open(integrationId).catch((e: unknown) => e)
      expect(error).toMatchObject({ code: 'AUTHENTICATION_FAILED', tokenCode: 'SECRETS_UNREADABLE', hint: expect.stringContaining('SECRETS_KEY_PREVIOUS') })
    } finally {
      await other.app.close()
    }
  })

  it('an integration that is gone is not found', async () => {
    await expect(first.app.services.mailboxes.open('00000000-0000-7000-8000-000000000000')).rejects.toMatchObject({ code: 'NOT_FOUND' })
  })
})
