import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { IdParams, problemResponses } from '../../lib/schemas.ts'
import { ApiKeyPage, ApiKeySchema, CreateApiKeyBody, CreatedApiKeySchema, ListApiKeysQuery } from './schemas.ts'

const tags = ['API keys']

export const apiKeyRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const service = app.services.apiKeys

  app.post(
    '/api-keys',
    {
      config: { scopes: ['admin'] },
      schema: {
        operationId: 'createApiKey',
        tags,
        summary: 'Create an API key',
        description: 'The response holds the key itself; it is not shown again.',
        body: CreateApiKeyBody,
        response: { 201: CreatedApiKeySchema, ...problemResponses() },
      },
    },
    async (request, reply) => {
      const { apiKey, key } = await service.create(request.actor(), request.body)
      return reply.code(201).send({ ...apiKey, key })
    },
  )

  app.get(
    '/api-keys',
    {
      config: { scopes: ['admin'] },
      schema: {
        operationId: 'listApiKeys',
        tags,
        summary: 'List API keys, newest first',
        querystring: ListApiKeysQuery,
        response: { 200: ApiKeyPage, ...problemResponses() },
      },
    },
    async (request) => service.list(request.query),
  )

  app.get(
    '/api-keys/:id',
    {
      config: { scopes: ['admin'] },
      schema: {
        operationId: 'getApiKey',
        tags,
        summary: 'Get an API key',
        params: IdParams,
        response: { 200: Type.Ref(ApiKeySchema), ...problemResponses(404) },
      },
    },
    async (request) => service.get(request.params.id),
  )

  app.delete(
    '/api-keys/:id',
    {
      config: { scopes: ['admin'] },
      schema: {
        operationId: 'revokeApiKey',
        tags,
        summary: 'Revoke an API key',
        description: 'Revoked keys stop working at once. The last active admin key cannot be revoked.',
        params: IdParams,
        response: { 204: Type.Null({ description: 'Revoked' }), ...problemResponses(404, 409) },
      },
    },
    async (request, reply) => {
      await service.revoke(request.actor(), request.params.id)
      return reply.code(204).send(null)
    },
  )
}
