import Fastify, { type FastifyInstance } from 'fastify'
import { connectorRoutes } from './connectors.ts'
import type { LeanSql } from './db.ts'
import { graphqlRoute } from './graphql.ts'
import { submitRoute } from './submit.ts'

/**
 * The lean prototypes of the benchmarked paths on one minimal Fastify server: JSON schemas
 * for the input (strict about unknown fields, like Mailgate), handlers that go straight to SQL.
 */
export function leanServer(sql: LeanSql): FastifyInstance {
  const app = Fastify({ logger: false, ajv: { customOptions: { removeAdditional: false } } })
  submitRoute(app, sql)
  connectorRoutes(app, sql)
  graphqlRoute(app, sql)
  return app
}
