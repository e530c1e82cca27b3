import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { BadRequestError, ServiceUnavailableError } from '../lib/errors.ts'

/**
 * Echoes the request id to the caller, refuses an HTTP/1.1 request without a Host header (as
 * problem+json, where Node would answer a bare 400), and once the app starts closing asks clients to
 * drop keep-alive connections: a connection that finishes its last request after close()
 * began would otherwise hold shutdown open until its keep-alive timeout.
 */
async function requestLifecyclePlugin(app: FastifyInstance) {
  let closing = false
  app.addHook('preClose', async () => {
    closing = true
  })
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id)
    if (request.raw.httpVersion === '1.1' && !request.headers.host) {
      throw new BadRequestError('An HTTP/1.1 request needs a Host header.')
    }
    if (closing) throw new ServiceUnavailableError('The server is shutting down. Retry against another instance or in a moment.')
  })
  app.addHook('onSend', async (_request, reply) => {
    if (closing) reply.header('connection', 'close')
  })
}

export default fp(requestLifecyclePlugin, { name: 'request-lifecycle', fastify: '5.x', dependencies: ['errors'] })
