import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { EmptyBody, emptyBodyAsObject, IdParams, problemResponses } from '../../lib/schemas.ts'
import { ConnectorSync as ConnectorSyncSchema } from './schemas.ts'

const tags = ['Mailbox sync']
const ConnectorSync = Type.Ref(ConnectorSyncSchema)

export const mailboxSyncRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const service = app.services.mailboxSync

  app.post(
    '/connectors/:id/sync',
    {
      config: { scopes: ['config:write'] },
      preValidation: emptyBodyAsObject,
      schema: {
        operationId: 'syncConnector',
        tags,
        summary: 'Sync a connector’s folders now',
        description:
          'Makes every folder of an enabled incoming connector due now and wakes the sync; answers with each folder’s state. A folder being synced is read again as soon as that sync ends. 409 CONNECTOR_NOT_SYNCED for an outgoing or disabled connector.',
        params: IdParams,
        body: EmptyBody,
        response: { 202: ConnectorSync, ...problemResponses(404, 409) },
      },
    },
    async (request, reply) => reply.code(202).send(await service.syncNow(request.params.id)),
  )

  app.get(
    '/connectors/:id/sync',
    {
      config: { scopes: ['config:read'] },
      schema: {
        operationId: 'getConnectorSync',
        tags,
        summary: 'Where a connector’s folders stand',
        description:
          'Per folder: when it was last synced, whether it has a delta link or a round in progress, whether a sync is due or running, messages taken in and passed over, the last error and the subscription expiry. Also for a disabled connector (`enabled: false`), whose last error tells why it stopped; 409 CONNECTOR_NOT_SYNCED for an outgoing connector.',
        params: IdParams,
        response: { 200: ConnectorSync, ...problemResponses(404, 409) },
      },
    },
    async (request) => service.state(request.params.id),
  )
}
