import { buildSchema } from 'graphql'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadSchema } from '../src/plugins/graphql.ts'
import { bearer, buildTestApp, type TestApp } from './support/app.ts'
import { FakeMicrosoft } from './support/fake-microsoft.ts'
import { Random, histogram, stateFingerprint } from './support/fuzz.ts'
import { graphqlFuzzRequests } from './support/fuzz-graphql-requests.ts'

/**
 * The GraphQL counterpart of the REST fuzz test: every root field of the schema called with
 * generated arguments (as variables), plus hostile documents with inline values.
 */
const SEED = Number(process.env.FUZZ_SEED ?? 20261130)
const PER_FIELD = Number(process.env.FUZZ_PER_OPERATION ?? 40)

const fake = new FakeMicrosoft()
let t: TestApp
let integrationId: string

beforeAll(async () => {
  fake.start()
  t = await buildTestApp()
  const created = await t.app.inject({
    method: 'POST',
    url: '/v1/integrations',
    headers: bearer(t.adminKey),
    payload: { name: 'fuzz', tenant: 'contoso.onmicrosoft.com', clientId: '11111111-2222-3333-4444-555555555555', authMethod: 'clientSecret', clientSecret: 'canary-graphql-secret-51b2' },
  })
  integrationId = created.json().id
})
afterAll(async () => {
  await t.close()
  fake.stop()
})

describe('GraphQL fuzz: every root field with generated arguments, and hostile documents', () => {
  it('never answers 5xx or INTERNAL, refuses with a matching status, changes nothing when it refuses', async () => {
    const schema = buildSchema(await loadSchema())
    const random = new Random(SEED)
    const statuses: number[] = []
    const failures: string[] = []
    const requests = graphqlFuzzRequests(schema, { adminKey: t.adminKey, integrationId, random, perField: PER_FIELD })

    for (const request of requests) {
      const mutating = request.query.trimStart().startsWith('mutation')
      const before = mutating ? await stateFingerprint(t.db.database) : ''
      const response = await t.app.inject({
        method: 'POST',
        url: '/graphql',
        headers: request.key ? bearer(request.key) : {},
        payload: { query: request.query, variables: request.variables },
      })
      statuses.push(response.statusCode)
      const label = `${request.query.slice(0, 140)} -> ${response.statusCode}`
      if (response.statusCode >= 500) failures.push(`${label}: ${response.body.slice(0, 300)}`)
      const contentType = String(response.headers['content-type'])
      if (contentType.startsWith('application/problem+json')) {
        if (response.statusCode < 400) failures.push(`${label}: problem with a success status`)
        continue
      }
      const body = response.json() as { data: Record<string, unknown> | null; errors?: { extensions?: { code?: string } }[] }
      const codes = (body.errors ?? []).map((error) => error.extensions?.code)
      if (codes.includes('INTERNAL') || codes.includes(undefined)) failures.push(`${label}: codes ${codes.join(',')}`)
      const noData = !body.data || Object.values(body.data).every((value) => value === null)
      if (codes.length > 0 && noData && response.statusCode === 200) failures.push(`${label}: refused with 200`)
      if (codes.length > 0 && noData && mutating && (await stateFingerprint(t.db.database)) !== before) failures.push(`${label}: refused but changed state`)
    }
    const leaks = t.logs.filter((line) => line.includes('canary-graphql-secret-51b2'))
    console.info(`GraphQL fuzz: ${requests.length} requests (seed ${SEED}); statuses ${JSON.stringify(histogram(statuses))}`)
    expect(failures).toEqual([])
    // A refusal is never an error in the log: an error line means input got past every field rule.
    const errorLines = t.logs.filter((line) => /"level":(50|60)/.test(line)).map((line) => line.slice(0, 400))
    expect(errorLines).toEqual([])
    expect(leaks).toEqual([])
    expect(statuses.filter((status) => status === 200).length).toBeGreaterThan(20)
  }, 600_000)
})
