import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { problemResponses } from '../../lib/schemas.ts'
import { AuditPage, ListAuditQuery } from './schemas.ts'

export const auditRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/audit',
    {
      config: { scopes: ['config:read'] },
      schema: {
        operationId: 'listAuditEvents',
        tags: ['Audit'],
        summary: 'List configuration changes, newest first',
        querystring: ListAuditQuery,
        response: { 200: AuditPage, ...problemResponses() },
      },
    },
    async (request) => app.services.audit.list(request.query),
  )
}
