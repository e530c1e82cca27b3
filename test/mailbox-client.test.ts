import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MailboxClient } from '../src/graph/mailbox-client.ts'
import { TokenProvider, type AppRegistration } from '../src/graph/token-provider.ts'
import { FakeMicrosoft } from './support/fake-microsoft.ts'

const fake = new FakeMicrosoft()
const tenant = fake.addTenant()
const app = fake.registerApp(tenant, { secrets: [{ value: 's', expiresAt: new Date(Date.now() + 86_400_000) }] })
const sendOnly = fake.registerApp(tenant, { roles: ['Mail.Send'], secrets: [{ value: 's', expiresAt: new Date(Date.now() + 86_400_000) }] })
const mailbox = fake.addMailbox(tenant, 'support@contoso.com', { aliases: ['help@contoso.com'], extraTopLevel: 12 })
const invoices = fake.addFolder(mailbox, 'Inbox/Invoices/2026')
const lastProject = mailbox.folders.at(-1)!

beforeAll(() => void fake.start())
afterAll(() => fake.stop())

const tokens = new TokenProvider({ timeoutMs: 2_000 })
function clientFor(clientId = app.clientId) {
  const registration: AppRegistration = {
    integrationId: `i-${clientId}`,
    configHash: 'h',
    tenant: tenant.id,
    clientId,
    cloud: 'global',
    credential: { kind: 'clientSecret', clientSecret: 's' },
  }
  return new MailboxClient(tokens, registration, { timeoutMs: 1_000 })
}

describe('MailboxClient against the fake Graph', () => {
  it('resolves the inbox by its well-known name, nested paths, and folders beyond the first page', async () => {
    const client = clientFor()
    const inbox = await client.resolveFolderPath('support@contoso.com', 'Inbox')
    expect(inbox.id).toBe(mailbox.folders[0]!.id)
    expect((await client.resolveFolderPath('support@contoso.com', 'inbox/invoices/2026')).id).toBe(invoices.id)
    const before = fake.graphRequests.length
    expect((await client.resolveFolderPath('support@contoso.com', lastProject.displayName)).id).toBe(lastProject.id)
    expect(fake.graphRequests.length - before).toBe(2) // two pages of 10
  })

  it('names what is wrong', async () => {
    const client = clientFor()
    await expect(client.resolveFolderPath('support@contoso.com', 'Inbox/Nope')).rejects.toMatchObject({ code: 'FOLDER_NOT_FOUND' })
    await expect(client.resolveFolderPath('nobody@contoso.com', 'Inbox')).rejects.toMatchObject({ code: 'MAILBOX_NOT_FOUND' })
    mailbox.allowedApps = new Set(['someone-else'])
    await expect(client.resolveFolderPath('support@contoso.com', 'Inbox')).rejects.toMatchObject({ code: 'ACCESS_POLICY_BLOCKED' })
    mailbox.allowedApps = undefined
    await expect(clientFor(sendOnly.clientId).resolveFolderPath('support@contoso.com', 'Inbox')).rejects.toMatchObject({ code: 'PERMISSION_MISSING' })
    fake.failNextGraphRequests({ kind: 'status', status: 429, retryAfter: 7 })
    await expect(client.folder('support@contoso.com', 'inbox')).rejects.toMatchObject({ code: 'THROTTLED', retryAfterSeconds: 7 })
    // Retry-After holds off the whole mailbox: the next request never leaves.
    const sent = fake.graphRequests.length
    const paused = await client.markRead('SUPPORT@contoso.com', 'any').catch((error: unknown) => error)
    expect(paused).toMatchObject({ code: 'THROTTLED', message: expect.stringContaining('Retry-After') })
    expect((paused as { retryAfterSeconds: number }).retryAfterSeconds).toBeLessThanOrEqual(7)
    expect(fake.graphRequests.length).toBe(sent)
    await expect(client.folder('other@contoso.com', 'inbox')).rejects.toMatchObject({ code: 'MAILBOX_NOT_FOUND' }) // other mailboxes go on
    fake.failNextGraphRequests({ kind: 'status', status: 503 })
    await expect(clientFor().folder('support@contoso.com', 'inbox')).rejects.toMatchObject({ code: 'GRAPH_UNAVAILABLE' })
    const fresh = clientFor()
    fake.failNextGraphRequests({ kind: 'network' })
    await expect(fresh.folder('support@contoso.com', 'inbox')).rejects.toMatchObject({ code: 'NETWORK_ERROR' })
    fake.failNextGraphRequests({ kind: 'delay', ms: 1_500 })
    await expect(fresh.folder('support@contoso.com', 'inbox')).rejects.toMatchObject({ code: 'GRAPH_TIMEOUT' })
  })

  it('a token failure during a mailbox call is an authentication failure that counts toward automatic disable', async () => {
    const registration: AppRegistration = {
      integrationId: 'expired',
      configHash: 'h',
      tenant: tenant.id,
      clientId: app.clientId,
      cloud: 'global',
      credential: { kind: 'clientSecret', clientSecret: 'no-longer-valid' },
    }
    const error = await new MailboxClient(tokens, registration).folder('support@contoso.com', 'inbox').catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'AUTHENTICATION_FAILED', message: expect.stringContaining('INVALID_CLIENT_SECRET'), countsTowardDisable: true })
  })

  it('uses the operator host overrides for both sign-in and Graph, whatever the cloud says', async () => {
    const govTenant = fake.addTenant({ cloud: 'usgov' })
    const govApp = fake.registerApp(govTenant, { secrets: [{ value: 's', expiresAt: new Date(Date.now() + 86_400_000) }] })
    fake.addMailbox(govTenant, 'support@agency.gov')
    const overridden = new TokenProvider({ hostOverrides: { authority: 'login.microsoftonline.us', graph: 'graph.microsoft.us' } })
    const registration: AppRegistration = {
      integrationId: 'override',
      configHash: 'h',
      tenant: govTenant.id,
      clientId: govApp.clientId,
      cloud: 'global',
      credential: { kind: 'clientSecret', clientSecret: 's' },
    }
    const tokensBefore = fake.tokenRequests.length
    const graphBefore = fake.graphRequests.length
    await new MailboxClient(overridden, registration).folder('support@agency.gov', 'inbox')
    expect(fake.tokenRequests.slice(tokensBefore).map((r) => r.host)).toEqual(['login.microsoftonline.us'])
    expect(fake.graphRequests.slice(graphBefore).map((r) => r.host)).toEqual(['graph.microsoft.us'])
  })

  it('sends once per call, from an alias only with Send As rights, and never retries a failed send', async () => {
    const client = clientFor()
    await client.sendMail('support@contoso.com', {
      from: 'help@contoso.com',
      to: ['support@contoso.com'],
      subject: 'hello',
      body: { contentType: 'text', content: 'hi' },
      headers: { 'x-mailgate-test': '1' },
    })
    expect(mailbox.received.at(-1)).toMatchObject({ from: 'help@contoso.com', subject: 'hello', headers: [{ name: 'x-mailgate-test', value: '1' }] })
    await expect(
      client.sendMail('support@contoso.com', { from: 'ceo@contoso.com', to: ['a@b.com'], subject: 's', body: { contentType: 'text', content: '' } }),
    ).rejects.toMatchObject({ code: 'SEND_AS_DENIED' })
    const sentBefore = mailbox.sent.length
    const requestsBefore = fake.graphRequests.length
    fake.failNextGraphRequests({ kind: 'status', status: 503 })
    await expect(
      client.sendMail('support@contoso.com', { to: ['a@b.com'], subject: 's', body: { contentType: 'text', content: '' } }),
    ).rejects.toMatchObject({ code: 'GRAPH_UNAVAILABLE' })
    expect(fake.graphRequests.length - requestsBefore).toBe(1)
    expect(mailbox.sent.length).toBe(sentBefore)
  })
})
