import { sql } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { rowsOf } from '../src/database/index.ts'
import { buildTestApp, type TestApp } from './support/app.ts'
import { FakeMicrosoft } from './support/fake-microsoft.ts'
import { Random, histogram, stateFingerprint } from './support/fuzz.ts'
import { restFuzzRequests, type FuzzIds } from './support/fuzz-rest-requests.ts'
import { mailSetup } from './support/mail.ts'

/**
 * Requests generated from the OpenAPI document the app serves, with hostile values in every
 * place a client controls: path, query, headers and body. Deterministic (FUZZ_SEED), bounded
 * (FUZZ_PER_OPERATION requests per operation).
 */
const SEED = Number(process.env.FUZZ_SEED ?? 20261130)
const PER_OPERATION = Number(process.env.FUZZ_PER_OPERATION ?? 40)
const CANARY_SECRET = 'canary-client-secret-7f3a9c'

const fake = new FakeMicrosoft()
let t: TestApp
const ids: FuzzIds = { integration: [], connector: [], route: [], message: [], apiKey: [], inbound: [], blockedAddress: [] }

beforeAll(async () => {
  fake.start()
  const tenant = fake.addTenant()
  const app = fake.registerApp(tenant, { secrets: [{ value: CANARY_SECRET, expiresAt: new Date(Date.now() + 86_400_000) }] })
  fake.addMailbox(tenant, 'support@contoso.com', { aliases: ['help@contoso.com'] })
  fake.addMailbox(tenant, 'inbox@contoso.com')
  t = await buildTestApp()
  const setup = mailSetup(t)
  const integration = await setup.integration(tenant.id, app.clientId, CANARY_SECRET)
  const outgoing = await setup.outgoing(integration, 'support@contoso.com')
  const alias = await setup.alias(outgoing, 'help@contoso.com')
  const incoming = await setup.admin('POST', '/v1/connectors', {
    integrationId: integration,
    name: 'inbox',
    direction: 'incoming',
    primaryAddress: 'inbox@contoso.com',
    fallbackRoute: { workItemType: 'ticket', processId: 'p-1' },
  })
  const sent = await setup.admin('POST', '/v1/messages', {
    from: 'support@contoso.com',
    to: ['customer@fabrikam.com'],
    subject: 'hello',
    body: { contentType: 'text', content: 'hi' },
  })
  const key = await t.app.services.apiKeys.create({ keyId: null }, { name: 'fuzzed', scopes: ['mail:read'] })
  expect((await setup.admin('POST', `/v1/connectors/${incoming.body.id}/test`)).body.ok).toBe(true)
  expect((await setup.admin('POST', `/v1/connectors/${incoming.body.id}/enable`)).status).toBe(200)
  const received = await t.app.inject({
    method: 'POST',
    url: `/v1/ingest?connectorId=${incoming.body.id}`,
    headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'message/rfc822' },
    payload: 'From: a@fabrikam.com\r\nTo: inbox@contoso.com\r\nSubject: fuzz\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/pdf; name=a.pdf\r\n\r\n%PDF\r\n--b--\r\n',
  })
  const blocked = await setup.admin('POST', '/v1/blocked-addresses', { pattern: '*@spam.example', action: 'spam' })
  ids.inbound!.push(received.json().id)
  ids.blockedAddress!.push(blocked.body.id)
  ids.integration!.push(integration)
  ids.connector!.push(outgoing, incoming.body.id)
  ids.route!.push(alias)
  ids.message!.push(sent.body.id)
  ids.apiKey!.push(key.apiKey.id)
})
afterAll(async () => {
  await t.close()
  fake.stop()
})

/** Values that must never reach a response or a log line. */
async function canaries(): Promise<string[]> {
  const values = [CANARY_SECRET, t.adminKey]
  for (const table of ['integrations', 'api_keys']) {
    const rows = rowsOf<Record<string, unknown>>(await t.db.database.db.execute(sql`select * from ${sql.identifier(table)}`))
    for (const row of rows) {
      for (const [column, value] of Object.entries(row)) {
        if (/sealed|secret|hash|private/i.test(column) && typeof value === 'string' && value.length >= 16) values.push(value)
      }
    }
  }
  return values
}

describe('REST fuzz: generated hostile requests against every operation', () => {
  it('never answers 5xx, answers every error as problem+json, changes nothing when it refuses, leaks nothing', async () => {
    const document = (await t.app.inject({ method: 'GET', url: '/docs/json' })).json()
    const random = new Random(SEED)
    const statuses: number[] = []
    const failures: string[] = []
    const responses: string[] = []

    const requests = restFuzzRequests(document, { adminKey: t.adminKey, ids, random, perOperation: PER_OPERATION, sender: 'support@contoso.com' })
    const operations = new Set(requests.map((request) => request.operation.operationId))

    for (const { operation, url, payload, contentType, headers } of requests) {
      if (contentType) headers['content-type'] = contentType
      const mutating = operation.method !== 'GET'
      const before = mutating ? await stateFingerprint(t.db.database) : ''
      const response = await t.app.inject({ method: operation.method as 'GET', url, headers, ...(payload !== undefined ? { payload } : {}) })
      statuses.push(response.statusCode)
      responses.push(response.body)
      const label = `${operation.method} ${url.slice(0, 120)} [${contentType ?? '-'}] ${String(payload ?? '').slice(0, 80)} -> ${response.statusCode}`
      if (response.statusCode >= 500) {
        const requestId = String(response.headers['x-request-id'])
        const logged = t.logs.filter((line) => line.includes(requestId) && line.includes('"level":50')).map((line) => line.match(/"cause":.{0,300}/)?.[0] ?? line.slice(0, 300))
        failures.push(`${label}: ${response.body.slice(0, 200)} ${logged.join(' ')}`)
      }
      if (response.statusCode >= 400) {
        const problem = response.json()
        if (!String(response.headers['content-type']).startsWith('application/problem+json')) failures.push(`${label}: not problem+json`)
        else if (problem.status !== response.statusCode || typeof problem.code !== 'string' || !problem.detail) failures.push(`${label}: incomplete problem ${response.body.slice(0, 200)}`)
        if (mutating && (await stateFingerprint(t.db.database)) !== before) failures.push(`${label}: refused but changed state`)
      }
    }

    const secrets = await canaries()
    const leaks = [...responses, ...t.logs].filter((text) => secrets.some((secret) => text.includes(secret)))
    expect(operations.size).toBeGreaterThan(25)
    console.info(`REST fuzz: ${statuses.length} requests over ${operations.size} operations (seed ${SEED}); statuses ${JSON.stringify(histogram(statuses))}`)
    expect(failures).toEqual([])
    // A refusal is never an error in the log: an error line means input got past every field rule.
    const errorLines = t.logs.filter((line) => /"level":(50|60)/.test(line)).map((line) => line.slice(0, 400))
    expect(errorLines).toEqual([])
    expect(leaks.map((text) => text.slice(0, 200))).toEqual([])
    expect(statuses.some((status) => status < 300)).toBe(true)
    expect(statuses.filter((status) => status === 400).length).toBeGreaterThan(statuses.length / 3)
  }, 600_000)
})
