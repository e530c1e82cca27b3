import { createHash } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { KEY_COLUMNS, KEY_CTE, keyHashOf, problem, refused, type KeyColumns } from './auth.ts'
import type { LeanSql } from './db.ts'

/*
 * GET /v1/connectors/{id} and GET /v1/connectors, presented exactly as Mailgate presents them,
 * in two statements whatever the page size: (1) the key with the connectors and the connection
 * settings of their integrations, (2) for all of them at once, the tests the presentation
 * shows: each connector's newest test, and whether the newest test of each connector's and
 * each integration's current configuration passed. The configuration hashes between the two
 * are Mailgate's, computed here as Mailgate computes them (SHA-256 of a JSON array).
 */

const CONNECTOR_COLUMNS = `
  c.id, c.integration_id as "integrationId", c.name, c.direction, c.primary_address as "primaryAddress", c.enabled,
  c.folder_paths as "folderPaths", c.folder_ids as "folderIds", c.after_processing as "afterProcessing",
  c.send_automated_emails as "sendAutomatedEmails", c.test_mode_only as "testModeOnly",
  c.email_classification as "emailClassification", c.sentiment_analysis as "sentimentAnalysis",
  c.email_data_extraction as "emailDataExtraction", c.thank_you_evaluation as "thankYouEvaluation",
  c.consecutive_failures as "consecutiveFailures", c.disabled_reason as "disabledReason", c.disabled_at as "disabledAt",
  c.created_at as "createdAt", c.updated_at as "updatedAt",
  i.tenant, i.client_id as "clientId", i.cloud, i.auth_method as "authMethod", i.credential_fingerprint as "credentialFingerprint"`

const withConnectors = (where: string) => `with ${KEY_CTE}
  select ${KEY_COLUMNS}, x.* from key left join lateral (
    select ${CONNECTOR_COLUMNS} from connectors c join integrations i on i.id = c.integration_id ${where}
  ) x on true`

const ONE = withConnectors('where c.id = $2')
// Two texts, not `$3 is null or c.id < $3`: that condition keeps the planner from walking the primary key.
const FIRST_PAGE = withConnectors('order by c.id desc limit $2')
const NEXT_PAGE = withConnectors('where c.id < $3 order by c.id desc limit $2')

const TESTS = `
  select r.kind, r.id, latest.id as "testId", latest.ok, latest.tested_at as "testedAt", latest.candidate,
    latest.config_hash as "configHash", latest.result, cur.ok as "currentOk"
  from json_to_recordset($1::text::json) as r(kind text, id uuid, hash text)
  left join lateral (
    select t.id, t.ok, t.tested_at, t.candidate, t.config_hash, t.result from connection_tests t
    where r.kind = 'connector' and t.resource_type = r.kind and t.resource_id = r.id order by t.id desc limit 1
  ) latest on true
  left join lateral (
    select t.ok from connection_tests t
    where t.resource_type = r.kind and t.resource_id = r.id and t.config_hash = r.hash order by t.id desc limit 1
  ) cur on true`

interface ConnectorRow {
  id: string
  integrationId: string
  name: string
  direction: string
  primaryAddress: string
  enabled: boolean
  folderPaths: string[] | null
  folderIds: Record<string, string> | null
  afterProcessing: string | null
  sendAutomatedEmails: boolean
  testModeOnly: boolean
  emailClassification: boolean
  sentimentAnalysis: boolean
  emailDataExtraction: boolean
  thankYouEvaluation: boolean
  consecutiveFailures: number
  disabledReason: string | null
  disabledAt: Date | null
  createdAt: Date
  updatedAt: Date
  tenant: string
  clientId: string
  cloud: string
  authMethod: string
  credentialFingerprint: string
}

interface TestRow {
  kind: 'connector' | 'integration'
  id: string
  testId: string | null
  ok: boolean | null
  testedAt: Date | null
  candidate: boolean | null
  configHash: string | null
  result: { steps: unknown[]; roles?: string[] } | null
  currentOk: boolean | null
}

const sha256 = (value: unknown) => createHash('sha256').update(JSON.stringify(value)).digest('hex')

/** As Mailgate: which app in which tenant and cloud, and the integration's whole connection. */
const identityHash = (row: ConnectorRow) => sha256([row.tenant.toLowerCase(), row.clientId.toLowerCase(), row.cloud])
const integrationHash = (row: ConnectorRow) =>
  sha256([row.tenant.toLowerCase(), row.clientId.toLowerCase(), row.cloud, row.authMethod, row.credentialFingerprint])
const connectorHash = (row: ConnectorRow) =>
  sha256([
    identityHash(row),
    row.direction,
    row.primaryAddress.toLowerCase(),
    row.folderPaths?.map((path) => path.toLowerCase()) ?? null,
    row.afterProcessing?.toLowerCase() ?? null,
  ])

async function present(sql: LeanSql, rows: ConnectorRow[]) {
  const hashes = new Map(rows.map((row) => [row.id, connectorHash(row)]))
  const resources = [
    ...rows.map((row) => ({ kind: 'connector', id: row.id, hash: hashes.get(row.id) })),
    ...[...new Map(rows.map((row) => [row.integrationId, row])).values()].map((row) => ({ kind: 'integration', id: row.integrationId, hash: integrationHash(row) })),
  ]
  const tests = new Map((await sql.query<TestRow>(TESTS, [JSON.stringify(resources)])).map((test) => [`${test.kind}:${test.id}`, test]))
  return rows.map((row) => {
    const test = tests.get(`connector:${row.id}`)
    return {
      id: row.id,
      integrationId: row.integrationId,
      name: row.name,
      direction: row.direction,
      primaryAddress: row.primaryAddress,
      enabled: row.enabled,
      folderPaths: row.folderPaths,
      folderIds: row.folderIds,
      afterProcessing: row.afterProcessing,
      sendAutomatedEmails: row.sendAutomatedEmails,
      testModeOnly: row.testModeOnly,
      emailClassification: row.emailClassification,
      sentimentAnalysis: row.sentimentAnalysis,
      emailDataExtraction: row.emailDataExtraction,
      thankYouEvaluation: row.thankYouEvaluation,
      verified: test?.currentOk === true,
      integrationVerified: tests.get(`integration:${row.integrationId}`)?.currentOk === true,
      consecutiveFailures: row.consecutiveFailures,
      disabledReason: row.disabledReason,
      disabledAt: row.disabledAt?.toISOString() ?? null,
      lastTest: test?.testId
        ? {
            id: test.testId,
            ok: test.ok,
            testedAt: test.testedAt!.toISOString(),
            candidate: test.candidate,
            matchesCurrentConfiguration: test.configHash === hashes.get(row.id),
            steps: test.result!.steps,
            roles: test.result!.roles ?? [],
          }
        : null,
      createdAt: row.createdAt.toISOString(),
      updatedAt: row.updatedAt.toISOString(),
    }
  })
}

const uuid = { type: 'string', format: 'uuid' }
const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

export function connectorRoutes(app: FastifyInstance, sql: LeanSql) {
  app.get('/v1/connectors/:id', { schema: { params: { type: 'object', properties: { id: uuid }, required: ['id'] } } }, async (request, reply) => {
    const keyHash = keyHashOf(request.headers.authorization)
    if (!keyHash) return problem(reply, 401, 'Unauthenticated', 'Send an API key as `Authorization: Bearer <key>`.')
    const { id } = request.params as { id: string }
    const [row] = await sql.query<KeyColumns & Partial<ConnectorRow>>(ONE, [keyHash, id])
    if (await refused(sql, reply, row, 'config:read')) return reply
    if (!row!.id) return problem(reply, 404, 'Not found', `No connector with id ${id}.`)
    return (await present(sql, [row as ConnectorRow]))[0]
  })

  // Only limit and cursor: the prototype leaves out the filters (integrationId, direction, enabled).
  const pageQuery = {
    type: 'object',
    additionalProperties: false,
    properties: { limit: { type: 'integer', minimum: 1, maximum: 200, default: 50 }, cursor: { type: 'string', minLength: 1, maxLength: 200 } },
  }
  app.get('/v1/connectors', { schema: { querystring: pageQuery } }, async (request, reply) => {
    const keyHash = keyHashOf(request.headers.authorization)
    if (!keyHash) return problem(reply, 401, 'Unauthenticated', 'Send an API key as `Authorization: Bearer <key>`.')
    const { limit, cursor } = request.query as { limit: number; cursor?: string }
    const beforeId = cursor === undefined ? null : Buffer.from(cursor, 'base64url').toString('utf8')
    if (beforeId !== null && !UUID_PATTERN.test(beforeId)) return problem(reply, 400, 'Validation failed', 'query.cursor is not a cursor this API issued')
    const rows = await sql.query<KeyColumns & Partial<ConnectorRow>>(beforeId ? NEXT_PAGE : FIRST_PAGE, beforeId ? [keyHash, limit + 1, beforeId] : [keyHash, limit + 1])
    if (await refused(sql, reply, rows[0], 'config:read')) return reply
    const found = rows.filter((row) => row.id) as ConnectorRow[]
    const items = found.slice(0, limit)
    const nextCursor = found.length > limit ? Buffer.from(items.at(-1)!.id, 'utf8').toString('base64url') : null
    return { items: await present(sql, items), nextCursor }
  })
}
