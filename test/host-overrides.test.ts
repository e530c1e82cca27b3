import { createHash, randomBytes } from 'node:crypto'
import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { graphScope, throughOverride } from '../src/graph/clouds.ts'
import { MailboxClient } from '../src/graph/mailbox-client.ts'
import { TokenProvider, type AppRegistration } from '../src/graph/token-provider.ts'
import { bearer, buildTestApp, type TestApp } from './support/app.ts'
import { FakeMicrosoft, type FakeApp, type FakeTenant } from './support/fake-microsoft.ts'
import { mailSetup } from './support/mail.ts'

/**
 * AUTHORITY_HOST / GRAPH_HOST pointing at hosts that are not Microsoft's (a proxy, a sandbox):
 * what the sandbox and every proxied deployment depend on. The hosts below are on none of the
 * Graph SDK's lists, so these tests fail if the token is attached by host list again.
 */

const SECRET = 'override-secret'
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex')

function registrationFor(tenant: FakeTenant, app: FakeApp): AppRegistration {
  return {
    integrationId: `i-${app.clientId}`,
    configHash: 'h',
    tenant: tenant.id,
    clientId: app.clientId,
    cloud: 'global',
    credential: { kind: 'clientSecret', clientSecret: SECRET },
  }
}

describe('which host and which token resource', () => {
  it('a proxy or stand-in gets every URL and tokens stay for the cloud; a sovereign Graph host is that cloud', () => {
    const upload = "https://outlook.office.com/api/v2.0/Users('a@b')/Messages('m')/AttachmentSessions('s')?authtoken=t"
    expect(graphScope('global', { graph: 'graph.mailgate.test:8443' })).toBe('https://graph.microsoft.com/.default')
    expect(graphScope('usgov', { graph: '127.0.0.1:9443' })).toBe('https://graph.microsoft.us/.default')
    expect(throughOverride(upload, { graph: '127.0.0.1:9443' })).toBe("https://127.0.0.1:9443/api/v2.0/Users('a@b')/Messages('m')/AttachmentSessions('s')?authtoken=t")
    expect(graphScope('global', { graph: 'graph.microsoft.us' })).toBe('https://graph.microsoft.us/.default')
    expect(throughOverride(upload, { graph: 'graph.microsoft.us' })).toBe(upload)
    expect(throughOverride(upload, {})).toBe(upload)
  })
})

describe('stand-in hosts outside the Graph SDK list', () => {
  const fake = new FakeMicrosoft()
  let t: TestApp
  let tenant: FakeTenant
  let entraApp: FakeApp
  const hosts = { authority: 'login.mailgate.test', graph: 'graph.mailgate.test:8443' }

  beforeAll(async () => {
    fake.start().serveAs(hosts.authority).serveAs(hosts.graph)
    tenant = fake.addTenant()
    entraApp = fake.registerApp(tenant, { secrets: [{ value: SECRET, expiresAt: new Date(Date.now() + 86_400_000) }] })
    const support = fake.addMailbox(tenant, 'support@contoso.com', { extraTopLevel: 12 })
    fake.addFolder(support, 'Inbox/Invoices')
    fake.addMailbox(tenant, 'customer@contoso.com')
    t = await buildTestApp({ tokenProvider: new TokenProvider({ hostOverrides: hosts, timeoutMs: 2_000 }), dispatcher: { autostart: false } })
  })
  afterAll(async () => {
    await t.close()
    fake.stop()
  })

  it('asks for tokens for the cloud Graph resource at the sign-in override, and sends them to the Graph override', async () => {
    const tokensBefore = fake.tokenRequests.length
    const graphBefore = fake.graphRequests.length
    const setup = mailSetup(t)
    const integrationId = await setup.integration(tenant.id, entraApp.clientId, SECRET)
    const connectorId = await setup.outgoing(integrationId, 'support@contoso.com')
    expect(connectorId).toBeDefined()
    // The fake answers 401 to a Graph call without a bearer token, and refuses a token for
    // any scope but https://graph.microsoft.com/.default: the test message went out.
    expect(fake.mailboxes.get('support@contoso.com')!.sent.at(-1)).toMatchObject({ subject: 'Mailgate connection test' })
    expect(new Set(fake.tokenRequests.slice(tokensBefore).map((request) => request.host))).toEqual(new Set([hosts.authority]))
    expect(fake.tokenRequests.slice(tokensBefore).every((request) => request.outcome === 'issued')).toBe(true)
    expect(new Set(fake.graphRequests.slice(graphBefore).map((request) => request.host))).toEqual(new Set([hosts.graph]))
  })

  it('follows absolute nextLinks through the override', async () => {
    const client = new MailboxClient(new TokenProvider({ hostOverrides: hosts }), registrationFor(tenant, entraApp))
    const last = fake.mailboxes.get('support@contoso.com')!.folders.at(-1)!
    const before = fake.graphRequests.length
    expect((await client.resolveFolderPath('support@contoso.com', last.displayName)).id).toBe(last.id)
    const requests = fake.graphRequests.slice(before)
    expect(requests).toHaveLength(2) // two pages of 10: the second one from Graph's own nextLink
    expect(requests.every((request) => request.host === hosts.graph && request.status === 200)).toBe(true)
  })

  it('uploads large attachments to the upload URL through the override, without our token', async () => {
    const sender = await t.keyWith('mail:send')
    const big = randomBytes(3_500_000)
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/messages',
      headers: bearer(sender),
      payload: {
        from: 'support@contoso.com',
        to: ['customer@contoso.com'],
        subject: 'through the stand-in',
        body: { contentType: 'text', content: 'hi' },
        attachments: [{ name: 'big.bin', contentBytes: big.toString('base64') }],
      },
    })
    expect(response.statusCode, response.body).toBe(202)
    const before = fake.graphRequests.length
    expect(await t.app.dispatcher.runOnce()).toBe(1)
    const status = await t.app.inject({ method: 'GET', url: `/v1/messages/${response.json().id}`, headers: bearer(t.adminKey) })
    expect(status.json().status).toBe('sent')
    const requests = fake.graphRequests.slice(before)
    const puts = requests.filter((request) => request.method === 'PUT')
    expect(puts.length).toBeGreaterThan(0)
    expect(requests.every((request) => request.host === hosts.graph)).toBe(true)
    expect(puts.every((request) => request.hadAuthorization === false && request.status < 300)).toBe(true)
    const delivered = fake.mailboxes.get('customer@contoso.com')!.received.find((mail) => mail.subject === 'through the stand-in')
    expect(delivered?.attachments).toEqual([expect.objectContaining({ name: 'big.bin', sha256: sha256(big) })])
  })
})

describe('a Microsoft host whose certificate this server does not trust', () => {
  const fake = new FakeMicrosoft()
  let tenant: FakeTenant
  let entraApp: FakeApp
  let untrusted: { host: string; close(): Promise<void> }

  beforeAll(async () => {
    fake.start().serveAs('login.mailgate.test')
    tenant = fake.addTenant()
    entraApp = fake.registerApp(tenant, { secrets: [{ value: SECRET, expiresAt: new Date(Date.now() + 86_400_000) }] })
    fake.addMailbox(tenant, 'support@contoso.com')
    untrusted = await fake.listen()
  })
  afterAll(async () => {
    await untrusted.close()
    fake.stop()
  })

  it('is reported as TLS_UNTRUSTED by token requests, with how to trust a private CA', async () => {
    const tokens = new TokenProvider({ hostOverrides: { authority: untrusted.host }, timeoutMs: 5_000 })
    const error = await tokens.acquire(registrationFor(tenant, entraApp)).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'TLS_UNTRUSTED', message: expect.stringContaining(untrusted.host), hint: expect.stringContaining('NODE_EXTRA_CA_CERTS') })
  })

  it('is reported as TLS_UNTRUSTED by Graph calls, and by a connector test', async () => {
    const hostOverrides = { authority: 'login.mailgate.test', graph: untrusted.host }
    const client = new MailboxClient(new TokenProvider({ hostOverrides }), registrationFor(tenant, entraApp))
    await expect(client.folder('support@contoso.com', 'inbox')).rejects.toMatchObject({ code: 'TLS_UNTRUSTED', hint: expect.stringContaining('NODE_EXTRA_CA_CERTS') })

    const t = await buildTestApp({ tokenProvider: new TokenProvider({ hostOverrides, timeoutMs: 5_000 }) })
    try {
      const setup = mailSetup(t)
      const integrationId = await setup.integration(tenant.id, entraApp.clientId, SECRET)
      const connector = (await setup.admin('POST', '/v1/connectors', { integrationId, name: 'o', direction: 'outgoing', primaryAddress: 'support@contoso.com' })).body
      const tested = (await setup.admin('POST', `/v1/connectors/${connector.id}/test`)).body
      expect(tested.ok).toBe(false)
      expect(tested.steps.find((step: { name: string }) => step.name === 'test_message_sent')).toMatchObject({ code: 'TLS_UNTRUSTED' })
    } finally {
      await t.close()
    }
  })
})

describe('the server process against a local HTTPS stand-in of Microsoft', () => {
  const fake = new FakeMicrosoft()
  const adminKey = 'override-admin-key-0123456789abcdefghijklmnop'
  let standIn: { host: string; caPem: string; close(): Promise<void> }
  let dir: string

  beforeAll(async () => {
    standIn = await fake.listen()
    dir = await mkdtemp(join(tmpdir(), 'mailgate-override-'))
    await writeFile(join(dir, 'ca.pem'), standIn.caPem)
  })
  afterAll(async () => {
    await standIn.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('signs in, tests, sends and uploads through GRAPH_HOST and AUTHORITY_HOST, trusting the CA given in NODE_EXTRA_CA_CERTS', async () => {
    const tenant = fake.addTenant()
    const entraApp = fake.registerApp(tenant, { secrets: [{ value: SECRET, expiresAt: new Date(Date.now() + 86_400_000) }] })
    fake.addMailbox(tenant, 'support@contoso.com', { extraTopLevel: 12 })
    fake.addMailbox(tenant, 'customer@contoso.com')
    const child = spawn(process.execPath, [fileURLToPath(new URL('../src/server.ts', import.meta.url))], {
      env: {
        PATH: process.env.PATH,
        HOST: '127.0.0.1',
        PORT: '0',
        DATA_DIR: join(dir, 'data'),
        ADMIN_API_KEY: adminKey,
        AUTHORITY_HOST: standIn.host,
        GRAPH_HOST: standIn.host,
        NODE_EXTRA_CA_CERTS: join(dir, 'ca.pem'),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    child.stdout.on('data', (chunk) => (output += chunk))
    child.stderr.on('data', (chunk) => (output += chunk))
    const exited = new Promise((resolve) => child.on('exit', resolve))
    try {
      const baseUrl = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`server did not start:\n${output}`)), 30_000)
        child.stdout.on('data', () => {
          const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output)
          if (match) {
            clearTimeout(timer)
            resolve(match[1]!)
          }
        })
      })
      const call = async (method: string, path: string, body?: unknown) => {
        const response = await fetch(`${baseUrl}${path}`, {
          method,
          headers: { authorization: `Bearer ${adminKey}`, ...(body ? { 'content-type': 'application/json' } : {}) },
          body: body ? JSON.stringify(body) : undefined,
        })
        return { status: response.status, body: (await response.json()) as any }
      }

      const integration = (await call('POST', '/v1/integrations', { name: 'sandbox', tenant: tenant.id, clientId: entraApp.clientId, authMethod: 'clientSecret', clientSecret: SECRET })).body
      expect((await call('POST', `/v1/integrations/${integration.id}/test`)).body, output).toMatchObject({ ok: true })
      const incoming = (await call('POST', '/v1/connectors', {
        integrationId: integration.id,
        name: 'in',
        direction: 'incoming',
        primaryAddress: 'support@contoso.com',
        folderPaths: [fake.mailboxes.get('support@contoso.com')!.folders.at(-1)!.displayName],
        fallbackRoute: { workItemType: 'ticket', processId: 'p' },
      })).body
      expect((await call('POST', `/v1/connectors/${incoming.id}/test`)).body).toMatchObject({ ok: true })
      const outgoing = (await call('POST', '/v1/connectors', { integrationId: integration.id, name: 'out', direction: 'outgoing', primaryAddress: 'support@contoso.com' })).body
      expect((await call('POST', `/v1/connectors/${outgoing.id}/test`)).body).toMatchObject({ ok: true })
      expect((await call('POST', `/v1/connectors/${outgoing.id}/enable`)).body).toMatchObject({ enabled: true })

      const big = randomBytes(3_200_000)
      const queued = await call('POST', '/v1/messages', {
        from: 'support@contoso.com',
        to: ['customer@contoso.com'],
        subject: 'over https',
        body: { contentType: 'text', content: 'hi' },
        attachments: [{ name: 'big.bin', contentBytes: big.toString('base64') }],
      })
      expect(queued.status).toBe(202)
      let status = ''
      for (let i = 0; i < 100 && status !== 'sent'; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100))
        status = (await call('GET', `/v1/messages/${queued.body.id}`)).body.status
      }
      expect(status, output).toBe('sent')
      const delivered = fake.mailboxes.get('customer@contoso.com')!.received.find((mail) => mail.subject === 'over https')
      expect(delivered?.attachments).toEqual([expect.objectContaining({ name: 'big.bin', sha256: sha256(big) })])
      expect(fake.graphRequests.some((request) => request.method === 'PUT' && request.hadAuthorization === false)).toBe(true)
      expect(new Set(fake.graphRequests.map((request) => request.host))).toEqual(new Set([standIn.host]))
      expect(fake.graphRequests.every((request) => request.status !== 401)).toBe(true)
    } finally {
      child.kill('SIGTERM')
      await exited
    }
  })
})
