import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { emptyBodyAsObject, IdParams, problemResponses } from '../../lib/schemas.ts'
import {
  ConnectionChanges,
  CreateIntegrationBody,
  IntegrationPage,
  IntegrationSchema,
  ListIntegrationsQuery,
  UpdateIntegrationBody,
} from './schemas.ts'
import { TestResultSchema } from '../connection-tests/schemas.ts'

const tags = ['Integrations']
const Integration = Type.Ref(IntegrationSchema)

export const integrationRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const service = app.services.integrations

  app.post(
    '/integrations',
    {
      config: { scopes: ['config:write'] },
      schema: {
        operationId: 'createIntegration',
        tags,
        summary: 'Create an integration (Entra app registration)',
        description:
          'Give a client secret, or a certificate as a base64 PFX with its password (recommended) or as PEM certificate and key. Secrets are sealed at rest and never returned. Test it next with POST /v1/integrations/{id}/test.',
        body: CreateIntegrationBody,
        response: { 201: Integration, ...problemResponses(422) },
      },
    },
    async (request, reply) => reply.code(201).send(await service.create(request.actor(), request.body)),
  )

  app.get(
    '/integrations',
    {
      config: { scopes: ['config:read'] },
      schema: {
        operationId: 'listIntegrations',
        tags,
        summary: 'List integrations, newest first',
        querystring: ListIntegrationsQuery,
        response: { 200: IntegrationPage, ...problemResponses() },
      },
    },
    async (request) => service.list(request.query),
  )

  app.get(
    '/integrations/:id',
    {
      config: { scopes: ['config:read'] },
      schema: {
        operationId: 'getIntegration',
        tags,
        summary: 'Get an integration',
        params: IdParams,
        response: { 200: Integration, ...problemResponses(404) },
      },
    },
    async (request) => service.get(request.params.id),
  )

  app.patch(
    '/integrations/:id',
    {
      config: { scopes: ['config:write'] },
      schema: {
        operationId: 'updateIntegration',
        tags,
        summary: 'Change an integration',
        description:
          'Changing tenant, client id, cloud or credential of an integration whose connectors are enabled needs a successful test of exactly the new settings first (POST .../test with them), so a secret can be rotated without taking mailboxes offline.',
        params: IdParams,
        body: UpdateIntegrationBody,
        response: { 200: Integration, ...problemResponses(404, 409, 422) },
      },
    },
    async (request) => service.update(request.actor(), request.params.id, request.body),
  )

  app.delete(
    '/integrations/:id',
    {
      config: { scopes: ['config:write'] },
      schema: {
        operationId: 'deleteIntegration',
        tags,
        summary: 'Delete an integration',
        description: 'Refused (409) while connectors use it.',
        params: IdParams,
        response: { 204: Type.Null({ description: 'Deleted' }), ...problemResponses(404, 409) },
      },
    },
    async (request, reply) => {
      await service.delete(request.actor(), request.params.id)
      return reply.code(204).send(null)
    },
  )

  app.post(
    '/integrations/:id/test',
    {
      config: { scopes: ['config:write'] },
      preValidation: emptyBodyAsObject,
      schema: {
        operationId: 'testIntegration',
        tags,
        summary: 'Test the connection to Entra ID',
        description:
          'Acquires a Graph token with the saved settings, or with the candidate changes in the body (tested, not saved), and reports each step. A failed test is still a 200 with ok: false.',
        params: IdParams,
        body: ConnectionChanges,
        response: { 200: Type.Ref(TestResultSchema), ...problemResponses(404, 422) },
      },
    },
    async (request) => service.test(request.actor(), request.params.id, request.body),
  )
}
