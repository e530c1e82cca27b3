import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Database } from '../database/index.ts'

declare module 'fastify' {
  interface FastifyInstance {
    database: Database
  }
}

/** Exposes the database the caller opened; the caller (server or test) also closes it. */
async function databasePlugin(app: FastifyInstance, options: { database: Database }) {
  app.decorate('database', options.database)
}

export default fp(databasePlugin, { name: 'database', fastify: '5.x' })
