import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { IdParams, problemResponses } from '../../lib/schemas.ts'
import {
  BlockedAddressPage,
  BlockedAddressSchema,
  CreateBlockedAddressBody,
  ListBlockedAddressesQuery,
  UpdateBlockedAddressBody,
} from './schemas.ts'

const tags = ['Blocked addresses']
const BlockedAddress = Type.Ref(BlockedAddressSchema)

export const blockedAddressRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const service = app.services.blockedAddresses

  app.post(
    '/blocked-addresses',
    {
      config: { scopes: ['config:write'] },
      schema: {
        operationId: 'createBlockedAddress',
        tags,
        summary: 'Block a sender',
        description:
          'Blocks an address, or everyone at a domain with `*@domain`; the pattern is stored lower case. An exact address wins over its domain. A pattern already blocked is 409 BLOCKED_ADDRESS_EXISTS, with the id of the block that holds it in `existingId`.',
        body: CreateBlockedAddressBody,
        response: { 201: BlockedAddress, ...problemResponses(409) },
      },
    },
    async (request, reply) => {
      const created = await service.create(request.actor(), request.body)
      return reply.code(201).header('location', `/v1/blocked-addresses/${created.id}`).send(created)
    },
  )

  app.get(
    '/blocked-addresses',
    {
      config: { scopes: ['config:read'] },
      schema: {
        operationId: 'listBlockedAddresses',
        tags,
        summary: 'List blocked senders, newest first',
        description: '`action` keeps one action; `q` keeps patterns containing the text (any case).',
        querystring: ListBlockedAddressesQuery,
        response: { 200: BlockedAddressPage, ...problemResponses() },
      },
    },
    async (request) => service.list(request.query),
  )

  app.get(
    '/blocked-addresses/:id',
    {
      config: { scopes: ['config:read'] },
      schema: {
        operationId: 'getBlockedAddress',
        tags,
        summary: 'Get a blocked sender',
        params: IdParams,
        response: { 200: BlockedAddress, ...problemResponses(404) },
      },
    },
    async (request) => service.get(request.params.id),
  )

  app.patch(
    '/blocked-addresses/:id',
    {
      config: { scopes: ['config:write'] },
      schema: {
        operationId: 'updateBlockedAddress',
        tags,
        summary: 'Change a blocked sender',
        description: '`note: null` clears the note. A pattern another block holds is 409 BLOCKED_ADDRESS_EXISTS.',
        params: IdParams,
        body: UpdateBlockedAddressBody,
        response: { 200: BlockedAddress, ...problemResponses(404, 409) },
      },
    },
    async (request) => service.update(request.actor(), request.params.id, request.body),
  )

  app.delete(
    '/blocked-addresses/:id',
    {
      config: { scopes: ['config:write'] },
      schema: {
        operationId: 'deleteBlockedAddress',
        tags,
        summary: 'Unblock a sender',
        params: IdParams,
        response: { 204: Type.Null({ description: 'Deleted' }), ...problemResponses(404) },
      },
    },
    async (request, reply) => {
      await service.delete(request.actor(), request.params.id)
      return reply.code(204).send(null)
    },
  )
}
