import type { FastifyInstance } from 'fastify'
import { KEY_COLUMNS, KEY_CTE, keyHashOf, problem, refused, type KeyColumns } from './auth.ts'
import type { LeanSql } from './db.ts'

/** The benchmark's GraphQL query: a page of 50 connectors, each with its routes and its integration. */
export const GRAPHQL_QUERY = '{ connectors(limit: 50) { items { id name routes { id } integration { id name } } } }'

/*
 * The lean answer to exactly that query: one statement that reads only the selected columns
 * (routes in Mailgate's evaluation order) and has PostgreSQL build the JSON. It does not parse
 * GraphQL: it answers the one query above (anything else is a 400), so the ratio to it also
 * holds Mercurius's parsing, validation (cost and depth limits) and execution.
 */
const PAGE = `with ${KEY_CTE}
  select ${KEY_COLUMNS}, (
    select coalesce(json_agg(json_build_object(
      'id', c.id,
      'name', c.name,
      'routes', (
        select coalesce(json_agg(json_build_object('id', r.id) order by
          case r.kind when 'default' then 0 when 'specific' then 1 when 'wildcard' then 2 when 'alias' then 3 else 4 end, r.priority, r.id), '[]')
        from email_routes r where r.connector_id = c.id),
      'integration', (select json_build_object('id', i.id, 'name', i.name) from integrations i where i.id = c.integration_id)
    ) order by c.id desc), '[]')
    from (select id, name, integration_id from connectors order by id desc limit 50) c
  ) as items
  from key`

interface PageRow extends KeyColumns {
  items: unknown[]
}

export function graphqlRoute(app: FastifyInstance, sql: LeanSql) {
  app.post('/graphql', async (request, reply) => {
    if ((request.body as { query?: unknown } | undefined)?.query !== GRAPHQL_QUERY) {
      return problem(reply, 400, 'Not this query', 'The lean prototype answers only the benchmark query.')
    }
    const keyHash = keyHashOf(request.headers.authorization)
    if (!keyHash) return problem(reply, 401, 'Unauthenticated', 'Send an API key as `Authorization: Bearer <key>`.')
    const [row] = await sql.query<PageRow>(PAGE, [keyHash])
    if (await refused(sql, reply, row, 'config:read')) return reply
    return { data: { connectors: { items: row!.items } } }
  })
}
