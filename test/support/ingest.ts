import { eq } from 'drizzle-orm'
import { expect } from 'vitest'
import { schema } from '../../src/database/index.ts'
import { bearer, type TestApp } from './app.ts'
import type { FakeMicrosoft, FakeTenant } from './fake-microsoft.ts'
import { mailSetup } from './mail.ts'

/** The id of the connection test whose message test/fixtures/inbound/37-connection-test.eml is. */
export const CORPUS_TEST_ID = '6f0c2b1e-94d7-4a3f-b8e5-2c71d9a04f36'

/** The Message-ID the world's one sent message is known by. */
export const SENT_MESSAGE_ID = '<sent-0001@contoso.example>'

export interface IngestWorld {
  integrationId: string
  connectorId: string
  /** processId -> route id */
  routes: Map<string, string>
  sentMessageId: string
  ingestKey: string
  readKey: string
}

/**
 * The world the fixture corpus is written for (test/fixtures/inbound/cases.json): an incoming
 * connector support@contoso.example with routes for billing@, invoices to support@, sales@ in
 * test mode, a wildcard route for partner.example and the fallback; three blocked addresses;
 * and one message Mailgate sent to customer@fabrikam.example for work item WI-2002.
 */
export async function buildIngestWorld(t: TestApp, fake: FakeMicrosoft, tenant: FakeTenant): Promise<IngestWorld> {
  const entraApp = fake.registerApp(tenant, { secrets: [{ value: 'ingest-secret', expiresAt: new Date(Date.now() + 86_400_000) }] })
  for (const address of ['support@contoso.example', 'sales-team@contoso.example']) fake.addMailbox(tenant, address)
  const setup = mailSetup(t)
  const integrationId = await setup.integration(tenant.id, entraApp.clientId, 'ingest-secret')
  const { connectorId, fallbackRouteId } = await setup.incoming(integrationId, 'support@contoso.example', 'support')
  const routes = new Map<string, string>([['support', fallbackRouteId]])
  routes.set('billing', await setup.incomingRoute(connectorId, 'billing@contoso.example', 'billing'))
  routes.set('support-invoices', await setup.incomingRoute(connectorId, 'support@contoso.example', 'support-invoices', { rules: { subjectKeywords: ['invoice'] } }))
  routes.set('sales', await setup.incomingRoute(connectorId, 'sales@contoso.example', 'sales', { testModeOnly: true }))
  // A wildcard route names its senders one by one.
  const partners = ['bob@partner.example', 'accounts@partner.example', 'priya@partner.example']
  routes.set('partner', await setup.incomingRoute(connectorId, '*', 'partner', { rules: { senderIncludes: partners } }))
  for (const [pattern, action] of [['spammer@bad.example', 'discard'], ['*@spam.example', 'spam'], ['noreply@vendor.example', 'no_automated_replies']]) {
    expect((await setup.admin('POST', '/v1/blocked-addresses', { pattern, action })).status).toBe(201)
  }

  // Mailgate sent one message for WI-2002; Graph reported its Message-ID.
  const outgoingId = await setup.outgoing(integrationId, 'support@contoso.example')
  // The connection test whose message the corpus holds (37-connection-test.eml) was run by that connector.
  await t.app.database.db.insert(schema.connectionTests).values({
    id: CORPUS_TEST_ID,
    resourceType: 'connector',
    resourceId: outgoingId,
    configHash: 'corpus',
    candidate: false,
    ok: true,
    result: { ok: true, steps: [] },
  })
  const sent = await t.app.inject({
    method: 'POST',
    url: '/v1/messages',
    headers: bearer(t.adminKey),
    payload: { from: 'support@contoso.example', to: ['customer@fabrikam.example'], subject: 'Your printer', body: { contentType: 'text', content: 'We are on it.' }, workItemRef: 'WI-2002' },
  })
  expect(sent.statusCode).toBe(202)
  const sentMessageId = sent.json().id as string
  await t.app.database.db
    .update(schema.outboundMessages)
    .set({ status: 'sent', sentAt: new Date(), graphIds: { internetMessageId: SENT_MESSAGE_ID } })
    .where(eq(schema.outboundMessages.id, sentMessageId))

  return { integrationId, connectorId, routes, sentMessageId, ingestKey: await t.keyWith('mail:ingest'), readKey: await t.keyWith('mail:read') }
}

export async function ingestRaw(t: TestApp, key: string, connectorId: string, raw: Buffer | string) {
  const response = await t.app.inject({
    method: 'POST',
    url: `/v1/ingest?connectorId=${connectorId}`,
    headers: { ...bearer(key), 'content-type': 'message/rfc822' },
    payload: raw,
  })
  return { status: response.statusCode, body: response.json() }
}
