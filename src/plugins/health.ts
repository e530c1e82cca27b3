import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { Type } from '@sinclair/typebox'
import { ServiceUnavailableError } from '../lib/errors.ts'
import { problemResponse } from '../lib/schemas.ts'
import { sendProblem } from './errors.ts'

const Status = Type.Object({ status: Type.Literal('ok') }, { description: 'Healthy' })

/** Liveness says the process answers; readiness also pings the database. No API key needed. */
async function healthPlugin(app: FastifyInstance) {
  app.get(
    '/health/live',
    {
      logLevel: 'warn',
      schema: {
        operationId: 'live',
        tags: ['Health'],
        summary: 'The process is up',
        response: { 200: Status },
      },
    },
    async () => ({ status: 'ok' as const }),
  )

  app.get(
    '/health/ready',
    {
      logLevel: 'warn',
      schema: {
        operationId: 'ready',
        tags: ['Health'],
        summary: 'The service can take traffic (database reachable)',
        response: { 200: Status, 503: problemResponse('Database unreachable') },
      },
    },
    async (request, reply) => {
      try {
        await app.database.ping()
      } catch (error) {
        request.log.warn({ err: error }, 'readiness check failed: database unreachable')
        return sendProblem(reply, new ServiceUnavailableError('The database is not reachable.'))
      }
      return { status: 'ok' as const }
    },
  )
}

export default fp(healthPlugin, { name: 'health', fastify: '5.x', dependencies: ['database', 'errors'] })
