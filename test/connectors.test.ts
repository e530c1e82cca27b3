import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MailboxError } from '../src/graph/errors.ts'
import { bearer, buildTestApp, graphql, type TestApp } from './support/app.ts'
import { FakeMicrosoft, type FakeApp, type FakeMailbox, type FakeTenant } from './support/fake-microsoft.ts'

const fake = new FakeMicrosoft()
let t: TestApp
let tenant: FakeTenant
let entraApp: FakeApp
let support: FakeMailbox
let integrationId: string
const SECRET = 'connector-tests-secret'

beforeAll(async () => {
  fake.start()
  tenant = fake.addTenant()
  entraApp = fake.registerApp(tenant, { secrets: [{ value: SECRET, expiresAt: new Date(Date.now() + 86_400_000) }] })
  support = fake.addMailbox(tenant, 'support@contoso.com', { aliases: ['help@contoso.com'], extraTopLevel: 12 })
  fake.addFolder(support, 'Inbox/Invoices')
  fake.addFolder(support, 'Processed')
  t = await buildTestApp({ connectorFailureThreshold: 3 })
  integrationId = await newIntegration()
})
afterAll(async () => {
  await t.close()
  fake.stop()
})

async function call(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: unknown) {
  const response = await t.app.inject({ method, url, headers: bearer(t.adminKey), payload: payload as object })
  return { status: response.statusCode, body: response.body ? response.json() : null }
}

async function newIntegration(test = true): Promise<string> {
  const created = await call('POST', '/v1/integrations', {
    name: 'Contoso',
    tenant: tenant.id,
    clientId: entraApp.clientId,
    authMethod: 'clientSecret',
    clientSecret: SECRET,
  })
  if (test) expect((await call('POST', `/v1/integrations/${created.body.id}/test`)).body.ok).toBe(true)
  return created.body.id
}

let mailboxCounter = 0
function newMailbox(): FakeMailbox {
  mailboxCounter += 1
  const mailbox = fake.addMailbox(tenant, `shared${mailboxCounter}@contoso.com`, { extraTopLevel: 12 })
  fake.addFolder(mailbox, 'Inbox/Invoices')
  return mailbox
}

function incoming(address: string, overrides: Record<string, unknown> = {}) {
  return {
    integrationId,
    name: 'Support inbox',
    direction: 'incoming',
    primaryAddress: address,
    fallbackRoute: { workItemType: 'ticket', processId: 'proc-general' },
    ...overrides,
  }
}

const steps = (result: { steps: { name: string; ok: boolean; code?: string; skipped?: boolean }[] }) =>
  result.steps.map((step) => `${step.name}:${step.ok ? 'ok' : step.skipped ? 'skipped' : step.code}`)

describe('creating connectors', () => {
  it('an incoming connector comes with its fallback route, disabled, defaults filled in', async () => {
    const { status, body } = await call('POST', '/v1/connectors', incoming('Support@Contoso.com'))
    expect(status).toBe(201)
    expect(body).toMatchObject({
      direction: 'incoming',
      primaryAddress: 'support@contoso.com',
      enabled: false,
      folderPaths: ['Inbox'],
      afterProcessing: 'markRead',
      sendAutomatedEmails: true,
      emailClassification: false,
      verified: false,
      integrationVerified: true,
      lastTest: null,
    })
    const audit = await call('GET', `/v1/audit?resourceType=route&action=create`)
    expect(audit.body.items[0].diff.changes).toMatchObject({ kind: { to: 'fallback' }, connectorId: { to: body.id }, processId: { to: 'proc-general' } })
  })

  it('rejects what cannot work, naming the field', async () => {
    const address = newMailbox().address
    const cases: [Record<string, unknown>, number, string][] = [
      [incoming(address, { fallbackRoute: undefined }), 400, 'fallbackRoute'],
      [{ ...incoming(address), direction: 'outgoing' }, 400, 'fallbackRoute'],
      [{ ...incoming(address, { fallbackRoute: undefined }), direction: 'outgoing', folderPaths: ['Inbox'] }, 400, 'folderPaths'],
      [incoming('not-an-address'), 400, 'primaryAddress'],
      [incoming(address, { folderPaths: ['/Inbox'] }), 400, 'folderPaths.0'],
      [incoming(address, { afterProcessing: 'archive' }), 400, 'afterProcessing'],
      [incoming(address, { integrationId: '0190f5e0-0000-7000-8000-000000000000' }), 422, 'integrationId'],
      [incoming('support@contoso.com'), 409, 'primaryAddress'],
    ]
    for (const [payload, status, field] of cases) {
      const response = await call('POST', '/v1/connectors', payload)
      expect(response.status, field).toBe(status)
      const fields = response.body.errors?.map((e: { field: string }) => e.field) ?? [response.body.field]
      expect(fields, field).toContain(field)
    }
  })

  it('two creates of the same address at once: one wins, the other is a 409, never a 500', async () => {
    const address = newMailbox().address
    const results = await Promise.all([1, 2, 3].map(() => call('POST', '/v1/connectors', incoming(address))))
    expect(results.map((r) => r.status).sort()).toEqual([201, 409, 409])
  })

  it('an outgoing connector may share its address with an incoming one', async () => {
    const { status, body } = await call('POST', '/v1/connectors', {
      integrationId,
      name: 'Support sender',
      direction: 'outgoing',
      primaryAddress: 'support@contoso.com',
    })
    expect(status).toBe(201)
    expect(body).toMatchObject({ direction: 'outgoing', folderPaths: null, afterProcessing: null })
  })
})

describe('testing against the mailbox', () => {
  it('incoming: resolves each folder path (inbox by well-known name, nested, beyond the first page) and stores the ids', async () => {
    const mailbox = newMailbox()
    const created = (
      await call('POST', '/v1/connectors', incoming(mailbox.address, { folderPaths: ['Inbox', 'Inbox/Invoices', 'Project 12'], afterProcessing: 'move:Archive' }))
    ).body
    const { status, body } = await call('POST', `/v1/connectors/${created.id}/test`)
    expect(status).toBe(200)
    expect(steps(body)).toEqual(['token_acquired:ok', 'mail_permission:ok', 'mailbox_reachable:ok', 'folders_resolved:ok', 'move_target_resolved:ok'])
    const fetched = (await call('GET', `/v1/connectors/${created.id}`)).body
    expect(fetched.verified).toBe(true)
    expect(fetched.folderIds).toEqual({
      Inbox: mailbox.folders[0]!.id,
      'Inbox/Invoices': mailbox.folders[0]!.children[0]!.id,
      'Project 12': mailbox.folders.find((f) => f.displayName === 'Project 12')!.id,
      Archive: mailbox.folders.find((f) => f.wellKnownName === 'archive')!.id,
    })
  })

  it('incoming: names each way the mailbox can be out of reach', async () => {
    const blocked = newMailbox()
    blocked.allowedApps = new Set(['another-app'])
    const cases: [string, Record<string, unknown>, string[]][] = [
      ['nobody@contoso.com', {}, ['token_acquired:ok', 'mail_permission:ok', 'mailbox_reachable:MAILBOX_NOT_FOUND', 'folders_resolved:skipped']],
      [blocked.address, {}, ['token_acquired:ok', 'mail_permission:ok', 'mailbox_reachable:ACCESS_POLICY_BLOCKED', 'folders_resolved:skipped']],
      [newMailbox().address, { folderPaths: ['Inbox/Missing'] }, ['token_acquired:ok', 'mail_permission:ok', 'mailbox_reachable:ok', 'folders_resolved:FOLDER_NOT_FOUND']],
      [newMailbox().address, { afterProcessing: 'move:Nowhere' }, ['token_acquired:ok', 'mail_permission:ok', 'mailbox_reachable:ok', 'move_target_resolved:FOLDER_NOT_FOUND']],
    ]
    for (const [address, overrides, expected] of cases) {
      const created = (await call('POST', '/v1/connectors', incoming(address, overrides))).body
      const result = (await call('POST', `/v1/connectors/${created.id}/test`)).body
      expect(steps(result), address).toEqual(expected)
      expect(result.steps.find((s: { ok: boolean; skipped?: boolean }) => !s.ok && !s.skipped).hint).toEqual(expect.any(String))
    }
    const throttled = (await call('POST', '/v1/connectors', incoming(newMailbox().address))).body
    fake.failNextGraphRequests({ kind: 'status', status: 429, retryAfter: 30 })
    expect(steps((await call('POST', `/v1/connectors/${throttled.id}/test`)).body)).toContain('mailbox_reachable:THROTTLED')
  })

  it('incoming: an app without a mail-read role is told which permission to add', async () => {
    const sendOnly = fake.registerApp(tenant, { roles: ['Mail.Send'], secrets: [{ value: 'so', expiresAt: new Date(Date.now() + 86_400_000) }] })
    const integration = (
      await call('POST', '/v1/integrations', { name: 'send only', tenant: tenant.id, clientId: sendOnly.clientId, authMethod: 'clientSecret', clientSecret: 'so' })
    ).body
    const created = (await call('POST', '/v1/connectors', incoming(newMailbox().address, { integrationId: integration.id }))).body
    const result = (await call('POST', `/v1/connectors/${created.id}/test`)).body
    expect(steps(result)).toEqual(['token_acquired:ok', 'mail_permission:PERMISSION_MISSING', 'mailbox_reachable:skipped', 'folders_resolved:skipped'])
    expect(result.steps[1].hint).toContain('Mail.ReadWrite')
  })

  it('outgoing: sends a real test message, marked so ingest ignores it, to the mailbox or a given recipient', async () => {
    const mailbox = newMailbox()
    const created = (await call('POST', '/v1/connectors', { integrationId, name: 'out', direction: 'outgoing', primaryAddress: mailbox.address })).body
    const toSelf = (await call('POST', `/v1/connectors/${created.id}/test`)).body
    expect(steps(toSelf)).toEqual(['token_acquired:ok', 'send_permission:ok', 'test_message_sent:ok'])
    expect(mailbox.received.at(-1)).toMatchObject({
      from: mailbox.address,
      subject: 'Mailgate connection test',
      headers: [{ name: 'x-mailgate-test', value: toSelf.id }],
      savedToSentItems: false,
    })
    const other = newMailbox()
    const toOther = (await call('POST', `/v1/connectors/${created.id}/test`, { testRecipient: other.address })).body
    expect(toOther.ok).toBe(true)
    expect(toOther.candidate).toBe(false)
    expect(other.received.at(-1)?.headers).toEqual([{ name: 'x-mailgate-test', value: toOther.id }])
  })
})

describe('the enable gate', () => {
  it('full cycle: refused -> test fails -> fix -> passes -> enabled -> change refused -> candidate test -> change accepted', async () => {
    const mailbox = newMailbox()
    const created = (await call('POST', '/v1/connectors', incoming(mailbox.address, { folderPaths: ['Inbox/Typo'] }))).body
    const id = created.id

    const untested = await call('POST', `/v1/connectors/${id}/enable`)
    expect(untested.status).toBe(409)
    expect(untested.body.code).toBe('CONNECTION_TEST_REQUIRED')

    expect((await call('POST', `/v1/connectors/${id}/test`)).body.ok).toBe(false)
    const failed = await call('POST', `/v1/connectors/${id}/enable`)
    expect(failed.body).toMatchObject({ code: 'CONNECTION_TEST_FAILED', detail: expect.stringContaining('FOLDER_NOT_FOUND') })

    expect((await call('PATCH', `/v1/connectors/${id}`, { folderPaths: ['Inbox/Invoices'] })).status).toBe(200)
    expect((await call('POST', `/v1/connectors/${id}/enable`)).body.code).toBe('CONNECTION_TEST_REQUIRED')
    expect((await call('POST', `/v1/connectors/${id}/test`)).body.ok).toBe(true)
    const enabled = await call('POST', `/v1/connectors/${id}/enable`)
    expect(enabled.status).toBe(200)
    expect(enabled.body).toMatchObject({ enabled: true, verified: true })

    // Not connection settings: free to change while enabled.
    const renamed = await call('PATCH', `/v1/connectors/${id}`, { name: 'Renamed', sentimentAnalysis: true, testModeOnly: true })
    expect(renamed.body).toMatchObject({ name: 'Renamed', sentimentAnalysis: true, enabled: true })

    const refused = await call('PATCH', `/v1/connectors/${id}`, { folderPaths: ['Inbox', 'Inbox/Invoices'] })
    expect(refused.status).toBe(409)
    expect(refused.body.code).toBe('CANDIDATE_TEST_REQUIRED')
    expect((await call('GET', `/v1/connectors/${id}`)).body.folderPaths).toEqual(['Inbox/Invoices'])

    const candidate = (await call('POST', `/v1/connectors/${id}/test`, { folderPaths: ['Inbox', 'Inbox/Invoices'] })).body
    expect(candidate).toMatchObject({ ok: true, candidate: true, matchesCurrentConfiguration: false })
    const accepted = await call('PATCH', `/v1/connectors/${id}`, { folderPaths: ['Inbox', 'Inbox/Invoices'] })
    expect(accepted.status).toBe(200)
    expect(accepted.body).toMatchObject({ enabled: true, verified: true, folderPaths: ['Inbox', 'Inbox/Invoices'] })
    expect(Object.keys(accepted.body.folderIds)).toEqual(['Inbox', 'Inbox/Invoices'])

    const audit = (await call('GET', `/v1/audit?resourceType=connector&resourceId=${id}&limit=200`)).body.items.map((e: { action: string }) => e.action)
    expect(audit.filter((a: string) => a === 'enable')).toHaveLength(1)
    expect(audit).toContain('test')
  })

  it('refuses to enable while the integration is not verified', async () => {
    const unverified = await newIntegration(false)
    const created = (await call('POST', '/v1/connectors', incoming(newMailbox().address, { integrationId: unverified }))).body
    expect((await call('POST', `/v1/connectors/${created.id}/test`)).body.ok).toBe(true)
    const refused = await call('POST', `/v1/connectors/${created.id}/enable`)
    expect(refused.status).toBe(409)
    expect(refused.body).toMatchObject({ code: 'INTEGRATION_NOT_VERIFIED', detail: expect.stringContaining(`/v1/integrations/${unverified}/test`) })
  })

  it('two enables at once: both answer enabled, one enable is recorded', async () => {
    const created = (await call('POST', '/v1/connectors', incoming(newMailbox().address))).body
    await call('POST', `/v1/connectors/${created.id}/test`)
    const results = await Promise.all([1, 2, 3].map(() => call('POST', `/v1/connectors/${created.id}/enable`)))
    expect(results.map((r) => r.status)).toEqual([200, 200, 200])
    const audit = (await call('GET', `/v1/audit?resourceType=connector&resourceId=${created.id}&action=enable`)).body
    expect(audit.items).toHaveLength(1)
  })

  it('enable racing a connection change: the change lands first and the enable is refused, or the enable lands and the change is refused', async () => {
    for (let round = 0; round < 3; round++) {
      const created = (await call('POST', '/v1/connectors', incoming(newMailbox().address))).body
      await call('POST', `/v1/connectors/${created.id}/test`)
      const [enable, change] = await Promise.all([
        call('POST', `/v1/connectors/${created.id}/enable`),
        call('PATCH', `/v1/connectors/${created.id}`, { folderPaths: ['Inbox/Invoices'] }),
      ])
      const final = (await call('GET', `/v1/connectors/${created.id}`)).body
      if (enable.status === 200 && final.enabled) {
        // Enabled on the tested configuration; the untested change must not have slipped in.
        expect(change.status).toBe(409)
        expect(final.folderPaths).toEqual(['Inbox'])
      } else {
        expect(enable.body.code).toBe('CONNECTION_TEST_REQUIRED')
        expect(change.status).toBe(200)
        expect(final).toMatchObject({ enabled: false, folderPaths: ['Inbox/Invoices'] })
      }
      expect(final.enabled ? final.verified : true).toBe(true)
    }
  })

  it('direction never changes', async () => {
    const created = (await call('POST', '/v1/connectors', incoming(newMailbox().address))).body
    const response = await call('PATCH', `/v1/connectors/${created.id}`, { direction: 'outgoing' })
    expect(response.status).toBe(422)
    expect(response.body).toMatchObject({ code: 'DIRECTION_IMMUTABLE', field: 'direction' })
  })

  it('disable takes a reason, and enabling again needs no new test', async () => {
    const created = (await call('POST', '/v1/connectors', incoming(newMailbox().address))).body
    await call('POST', `/v1/connectors/${created.id}/test`)
    await call('POST', `/v1/connectors/${created.id}/enable`)
    const disabled = (await call('POST', `/v1/connectors/${created.id}/disable`, { reason: 'mailbox migration' })).body
    expect(disabled).toMatchObject({ enabled: false, disabledReason: 'mailbox migration', disabledAt: expect.any(String) })
    const again = (await call('POST', `/v1/connectors/${created.id}/enable`)).body
    expect(again).toMatchObject({ enabled: true, disabledReason: null })
  })
})

describe('automatic disable', () => {
  it('after N authentication or unreachable failures in a row, with the reason visible and audited; throttling does not count', async () => {
    const created = (await call('POST', '/v1/connectors', incoming(newMailbox().address))).body
    await call('POST', `/v1/connectors/${created.id}/test`)
    await call('POST', `/v1/connectors/${created.id}/enable`)
    const service = t.app.services.connectors
    const unreachable = new MailboxError('MAILBOX_NOT_FOUND', "The requested user 'x' is invalid.")
    const throttled = new MailboxError('THROTTLED', 'slow down')

    expect(await service.recordMailboxFailure(created.id, unreachable)).toEqual({ disabled: false, consecutiveFailures: 1 })
    expect(await service.recordMailboxFailure(created.id, throttled)).toEqual({ disabled: false, consecutiveFailures: 1 })
    await service.recordMailboxSuccess(created.id)
    expect(await service.recordMailboxFailure(created.id, unreachable)).toEqual({ disabled: false, consecutiveFailures: 1 })
    // Reported by several workers at once: every failure counts, one disable happens.
    const results = await Promise.all([1, 2, 3].map(() => service.recordMailboxFailure(created.id, unreachable)))
    expect(results.filter((r) => r.disabled)).toHaveLength(1)

    const fetched = (await call('GET', `/v1/connectors/${created.id}`)).body
    expect(fetched).toMatchObject({ enabled: false, disabledReason: expect.stringMatching(/^Disabled automatically after 3 failures in a row; last: MAILBOX_NOT_FOUND/) })
    const audit = (await call('GET', `/v1/audit?resourceType=connector&resourceId=${created.id}&action=disable`)).body.items
    expect(audit).toHaveLength(1)
    expect(audit[0]).toMatchObject({ actorKeyId: null, diff: { details: { automatic: true, code: 'MAILBOX_NOT_FOUND' } } })
  })
})

describe('integrations in use', () => {
  it('an integration with connectors cannot be deleted', async () => {
    const id = await newIntegration()
    const created = (await call('POST', '/v1/connectors', incoming(newMailbox().address, { integrationId: id }))).body
    const refused = await call('DELETE', `/v1/integrations/${id}`)
    expect(refused.status).toBe(409)
    expect(refused.body).toMatchObject({ code: 'INTEGRATION_IN_USE', connectors: 1 })
    await call('DELETE', `/v1/connectors/${created.id}`)
    expect((await call('DELETE', `/v1/integrations/${id}`)).status).toBe(204)
  })

  it('deleting a connector deletes the webhook endpoints filtered to it, and the audit says how many', async () => {
    const id = await newIntegration()
    const created = (await call('POST', '/v1/connectors', incoming(newMailbox().address, { integrationId: id }))).body
    const hook = await call('POST', '/v1/webhooks', { url: 'https://example.com/hook', eventTypes: ['*'], connectorId: created.id, enabled: false })
    const other = await call('POST', '/v1/webhooks', { url: 'https://example.com/all', eventTypes: ['*'], enabled: false })
    expect([hook.status, other.status]).toEqual([201, 201])
    expect((await call('DELETE', `/v1/connectors/${created.id}`)).status).toBe(204)
    expect((await call('GET', `/v1/webhooks/${hook.body.endpoint.id}`)).status).toBe(404)
    expect((await call('GET', `/v1/webhooks/${other.body.endpoint.id}`)).status).toBe(200)
    const audit = (await call('GET', `/v1/audit?resourceType=connector&resourceId=${created.id}&action=delete`)).body.items
    expect(audit[0]).toMatchObject({ diff: { details: { webhooksDeleted: 1 } } })
  })

  it('rotating the secret of an integration with enabled connectors needs a candidate test; then the mailboxes stay online', async () => {
    const id = await newIntegration()
    const created = (await call('POST', '/v1/connectors', incoming(newMailbox().address, { integrationId: id }))).body
    await call('POST', `/v1/connectors/${created.id}/test`)
    expect((await call('POST', `/v1/connectors/${created.id}/enable`)).body.enabled).toBe(true)

    const rotated = 'rotated-connector-secret'
    entraApp.secrets.push({ value: rotated, expiresAt: new Date(Date.now() + 86_400_000) })
    const refused = await call('PATCH', `/v1/integrations/${id}`, { clientSecret: rotated })
    expect(refused.status).toBe(409)
    expect(refused.body).toMatchObject({ code: 'CANDIDATE_TEST_REQUIRED', enabledConnectors: 1 })

    expect((await call('POST', `/v1/integrations/${id}/test`, { clientSecret: 'typo' })).body.ok).toBe(false)
    expect((await call('PATCH', `/v1/integrations/${id}`, { clientSecret: 'typo' })).status).toBe(409)
    expect((await call('POST', `/v1/integrations/${id}/test`, { clientSecret: rotated })).body.ok).toBe(true)
    const saved = await call('PATCH', `/v1/integrations/${id}`, { clientSecret: rotated })
    expect(saved.status).toBe(200)
    expect(saved.body.verified).toBe(true)
    // A rotated secret is the same app: the connector's own test still holds.
    expect((await call('GET', `/v1/connectors/${created.id}`)).body).toMatchObject({ enabled: true, integrationVerified: true, verified: true })
    // Renaming is not a connection change and needs no test.
    expect((await call('PATCH', `/v1/integrations/${id}`, { name: 'renamed' })).status).toBe(200)
  })
})

describe('changes to the app behind a connector', () => {
  it('a connector test of another app does not count: after the integration points at another app, test again', async () => {
    const id = await newIntegration()
    const created = (await call('POST', '/v1/connectors', incoming(newMailbox().address, { integrationId: id }))).body
    expect((await call('POST', `/v1/connectors/${created.id}/test`)).body.ok).toBe(true)
    const otherApp = fake.registerApp(tenant, { secrets: [{ value: 'other', expiresAt: new Date(Date.now() + 86_400_000) }] })
    expect((await call('PATCH', `/v1/integrations/${id}`, { clientId: otherApp.clientId, clientSecret: 'other' })).status).toBe(200)
    expect((await call('POST', `/v1/integrations/${id}/test`)).body.ok).toBe(true)
    expect((await call('GET', `/v1/connectors/${created.id}`)).body.verified).toBe(false)
    expect((await call('POST', `/v1/connectors/${created.id}/enable`)).body.code).toBe('CONNECTION_TEST_REQUIRED')
  })

  it('an integration with enabled connectors cannot move to another tenant, app or cloud', async () => {
    const id = await newIntegration()
    const created = (await call('POST', '/v1/connectors', incoming(newMailbox().address, { integrationId: id }))).body
    await call('POST', `/v1/connectors/${created.id}/test`)
    await call('POST', `/v1/connectors/${created.id}/enable`)
    const otherApp = fake.registerApp(tenant, { secrets: [{ value: 'x', expiresAt: new Date(Date.now() + 86_400_000) }] })
    await call('POST', `/v1/integrations/${id}/test`, { clientId: otherApp.clientId, clientSecret: 'x' })
    const refused = await call('PATCH', `/v1/integrations/${id}`, { clientId: otherApp.clientId, clientSecret: 'x' })
    expect(refused.status).toBe(409)
    expect(refused.body).toMatchObject({ code: 'INTEGRATION_IN_USE', enabledConnectors: 1 })
  })

  it("an outgoing connector that moves to another address disables its aliases, which must be tested again", async () => {
    const first = newMailbox()
    const second = newMailbox()
    first.sendAs.add('alias-move@contoso.com')
    const connector = (await call('POST', '/v1/connectors', { integrationId, name: 'o', direction: 'outgoing', primaryAddress: first.address })).body
    await call('POST', `/v1/connectors/${connector.id}/test`)
    await call('POST', `/v1/connectors/${connector.id}/enable`)
    const alias = (await call('POST', '/v1/routes', { connectorId: connector.id, name: 'a', emailAddress: 'alias-move@contoso.com' })).body
    await call('POST', `/v1/routes/${alias.id}/test`)
    expect((await call('POST', `/v1/routes/${alias.id}/enable`)).body.enabled).toBe(true)

    expect((await call('POST', `/v1/connectors/${connector.id}/test`, { primaryAddress: second.address })).body.ok).toBe(true)
    expect((await call('PATCH', `/v1/connectors/${connector.id}`, { primaryAddress: second.address })).status).toBe(200)
    const after = (await call('GET', `/v1/routes/${alias.id}`)).body
    expect(after).toMatchObject({ enabled: false, verified: false })
    const audit = (await call('GET', `/v1/audit?resourceType=route&resourceId=${alias.id}&action=disable`)).body.items
    expect(audit[0].diff.details.reason).toContain('test the alias again')
    const defaultRoute = (await call('GET', `/v1/routes?connectorId=${connector.id}`)).body.items.find((r: { kind: string }) => r.kind === 'default')
    expect(defaultRoute.emailAddress).toBe(second.address)
  })
})

describe('GraphQL', () => {
  it('mirrors REST: create, test, enable, list, disable, delete', async () => {
    const mailbox = newMailbox()
    const created = await graphql(
      t.app,
      t.adminKey,
      `mutation($input: CreateConnectorInput!) { createConnector(input: $input) { id enabled folderPaths } }`,
      { input: { integrationId, name: 'gql', direction: 'incoming', primaryAddress: mailbox.address, fallbackRoute: { workItemType: 'case', processId: 'p1' } } },
    )
    expect(created.body.errors).toBeUndefined()
    const id = created.body.data.createConnector.id
    const refused = await graphql(t.app, t.adminKey, `mutation($id: ID!) { enableConnector(id: $id) { enabled } }`, { id })
    expect(refused.body.errors![0].extensions.code).toBe('CONNECTION_TEST_REQUIRED')
    const tested = await graphql(t.app, t.adminKey, `mutation($id: ID!) { testConnector(id: $id) { ok steps { name ok } } }`, { id })
    expect(tested.body.data.testConnector.ok).toBe(true)
    const enabled = await graphql(t.app, t.adminKey, `mutation($id: ID!) { enableConnector(id: $id) { enabled verified folderIds } }`, { id })
    expect(enabled.body.data.enableConnector).toMatchObject({ enabled: true, verified: true, folderIds: { Inbox: mailbox.folders[0]!.id } })
    const list = await graphql(t.app, t.adminKey, `{ connectors(enabled: true, limit: 200) { items { id } } }`)
    expect(list.body.data.connectors.items.map((c: { id: string }) => c.id)).toContain(id)
    const changed = await graphql(t.app, t.adminKey, `mutation($id: ID!) { updateConnector(id: $id, input: { primaryAddress: "other@contoso.com" }) { id } }`, { id })
    expect(changed.body.errors![0].extensions.code).toBe('CANDIDATE_TEST_REQUIRED')
    const disabled = await graphql(t.app, t.adminKey, `mutation($id: ID!) { disableConnector(id: $id, reason: "gql") { enabled disabledReason } }`, { id })
    expect(disabled.body.data.disableConnector).toEqual({ enabled: false, disabledReason: 'gql' })
    expect((await graphql(t.app, t.adminKey, `mutation($id: ID!) { deleteConnector(id: $id) }`, { id })).body.data.deleteConnector).toBe(true)
  })
})

describe('listing', () => {
  it('filters by integration, direction and enabled, pages newest first, and shows each connector as GET does', async () => {
    const ownIntegration = await newIntegration()
    const created: string[] = []
    for (const direction of ['incoming', 'outgoing', 'incoming', 'outgoing', 'incoming']) {
      const address = newMailbox().address
      const payload = direction === 'incoming' ? incoming(address, { integrationId: ownIntegration }) : { integrationId: ownIntegration, name: 'out', direction, primaryAddress: address }
      created.push((await call('POST', '/v1/connectors', payload)).body.id)
    }
    expect((await call('POST', `/v1/connectors/${created[2]}/test`)).body.ok).toBe(true)
    expect((await call('POST', `/v1/connectors/${created[2]}/enable`)).status).toBe(200)
    const newestFirst = [...created].reverse()

    const all = (await call('GET', `/v1/connectors?integrationId=${ownIntegration}`)).body
    expect(all.items.map((c: { id: string }) => c.id)).toEqual(newestFirst)
    expect(all.nextCursor).toBeNull()
    for (const item of all.items) expect(item).toEqual((await call('GET', `/v1/connectors/${item.id}`)).body)

    const outgoing = (await call('GET', `/v1/connectors?integrationId=${ownIntegration}&direction=outgoing`)).body.items
    expect(outgoing.map((c: { id: string }) => c.id)).toEqual([created[3], created[1]])
    const enabled = (await call('GET', `/v1/connectors?integrationId=${ownIntegration}&enabled=true`)).body.items
    expect(enabled).toHaveLength(1)
    expect(enabled[0]).toMatchObject({ id: created[2], enabled: true, verified: true, integrationVerified: true, lastTest: { ok: true, matchesCurrentConfiguration: true } })
    const disabledIncoming = (await call('GET', `/v1/connectors?integrationId=${ownIntegration}&direction=incoming&enabled=false`)).body.items
    expect(disabledIncoming.map((c: { id: string }) => c.id)).toEqual([created[4], created[0]])
    expect(disabledIncoming[0]).toMatchObject({ verified: false, integrationVerified: true, lastTest: null })

    const paged: string[] = []
    let cursor: string | null = null
    do {
      const page: { items: { id: string }[]; nextCursor: string | null } = (
        await call('GET', `/v1/connectors?integrationId=${ownIntegration}&limit=2${cursor ? `&cursor=${cursor}` : ''}`)
      ).body
      expect(page.items.length).toBeLessThanOrEqual(2)
      paged.push(...page.items.map((c) => c.id))
      cursor = page.nextCursor
    } while (cursor)
    expect(paged).toEqual(newestFirst)
  })
})
