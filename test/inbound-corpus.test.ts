import { readFileSync } from 'node:fs'
import { and, eq } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { schema } from '../src/database/index.ts'
import { bearer, buildTestApp, type TestApp } from './support/app.ts'
import { FakeMicrosoft } from './support/fake-microsoft.ts'
import { buildIngestWorld, ingestRaw, type IngestWorld } from './support/ingest.ts'

/**
 * The fixture corpus (test/fixtures/inbound, written for this project) through POST /v1/ingest,
 * in the order of cases.json, each checked against the outcome the table expects.
 */

interface Case {
  file: string
  description: string
  expect: {
    outcome: string
    reason: string | null
    processes: string[]
    appendedTo: string[]
    automatedKind: string | null
    suppressAutomatedAnswer: boolean
    testMode: boolean
    duplicateOf: string | null
    duplicateWay: string | null
    bounce: { status: string; recipient: string } | null
    attachmentNames?: string[]
  }
  confirm?: { process: string; ref: string }
}

const FIXTURES = new URL('./fixtures/inbound/', import.meta.url)
const cases = JSON.parse(readFileSync(new URL('cases.json', FIXTURES), 'utf8')) as Case[]

const fake = new FakeMicrosoft()
let t: TestApp
let world: IngestWorld
const idsByFile = new Map<string, string>()

beforeAll(async () => {
  fake.start()
  t = await buildTestApp()
  world = await buildIngestWorld(t, fake, fake.addTenant())
})
afterAll(async () => {
  await t.close()
  fake.stop()
})

describe('the fixture corpus', () => {
  it('has at least 40 cases, each file present', () => {
    expect(cases.length).toBeGreaterThanOrEqual(40)
    for (const entry of cases) expect(readFileSync(new URL(entry.file, FIXTURES)).length).toBeGreaterThan(0)
  })

  const processOf = (routeId: string | null) => [...world.routes].find(([, id]) => id === routeId)?.[0]

  it.each(cases.map((entry) => [entry.file, entry] as const))('%s', async (file, entry) => {
    const { status, body } = await ingestRaw(t, world.ingestKey, world.connectorId, readFileSync(new URL(file, FIXTURES)))
    const expected = entry.expect
    const email = expected.outcome === 'duplicate' ? body.email : body
    if (expected.outcome === 'duplicate') {
      expect(status, JSON.stringify(body)).toBe(200)
      expect(body.way).toBe(expected.duplicateWay)
      expect(body.duplicateOf).toBe(idsByFile.get(expected.duplicateOf!))
      return
    }
    expect(status, JSON.stringify(body)).toBe(201)
    idsByFile.set(file, email.id)
    const context = `${entry.description}\nsteps: ${JSON.stringify(email.steps, null, 1)}`
    expect(email.outcome, context).toBe(expected.outcome)
    expect(email.outcomeReason, context).toBe(expected.reason)
    expect(email.automated?.kind ?? null, context).toBe(expected.automatedKind)
    expect(email.suppressAutomatedAnswer, context).toBe(expected.suppressAutomatedAnswer)
    expect(email.testMode, context).toBe(expected.testMode)
    const links = email.workItems as { kind: string; routeId: string | null; workItemRef: string | null }[]
    expect(links.filter((link) => link.kind === 'requested').map((link) => processOf(link.routeId)), context).toEqual(expected.processes)
    expect(links.filter((link) => link.kind === 'appended').map((link) => link.workItemRef), context).toEqual(expected.appendedTo)
    if (expected.attachmentNames) expect((email.attachments as { name: string }[]).map((a) => a.name)).toEqual(expect.arrayContaining(expected.attachmentNames))
    if (expected.bounce) {
      const message = (await t.app.inject({ method: 'GET', url: `/v1/messages/${world.sentMessageId}`, headers: bearer(t.adminKey) })).json()
      expect(message.status).toBe('bounced')
      expect(message.bounces).toContainEqual(expect.objectContaining({ ...expected.bounce, inboundEmailId: email.id }))
      const events = await t.app.database.db.select({ payload: schema.domainEvents.payload }).from(schema.domainEvents).where(and(eq(schema.domainEvents.type, 'message.bounced'), eq(schema.domainEvents.subjectId, world.sentMessageId)))
      expect(events.map((event) => event.payload['inboundEmailId'])).toContain(email.id)
    }
    if (entry.confirm) {
      const confirmed = await t.app.inject({
        method: 'PUT',
        url: `/v1/inbound/${email.id}/work-item`,
        headers: bearer(world.ingestKey),
        payload: { routeId: world.routes.get(entry.confirm.process), workItemRef: entry.confirm.ref },
      })
      expect(confirmed.statusCode, confirmed.body).toBe(200)
    }
  })
})
