import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { EmptyBody, emptyBodyAsObject, IdParams, problemResponses } from '../../lib/schemas.ts'
import { TestResultSchema } from '../connection-tests/schemas.ts'
import { CreateRouteBody, ListRoutesQuery, ReorderRoutesBody, RouteList, RoutePage, RouteSchema, TestRouteBody, UpdateRouteBody } from './schemas.ts'

const tags = ['Routes']
const Route = Type.Ref(RouteSchema)

export const emailRouteRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const service = app.services.routes

  app.post(
    '/routes',
    {
      config: { scopes: ['config:write'] },
      schema: {
        operationId: 'createRoute',
        tags,
        summary: 'Create a route',
        description:
          "Incoming connector: a route decides which process mail to `emailAddress` becomes (`*` makes a wildcard route for BCC mail, which needs rules.senderIncludes with exact addresses). Outgoing connector: an alias to send as; it starts disabled and is enabled after a successful test.",
        body: CreateRouteBody,
        response: { 201: Route, ...problemResponses(409, 422) },
      },
    },
    async (request, reply) => reply.code(201).send(await service.create(request.actor(), request.body)),
  )

  app.get(
    '/routes',
    {
      config: { scopes: ['config:read'] },
      schema: {
        operationId: 'listRoutes',
        tags,
        summary: 'List routes',
        description: 'With connectorId: all its routes in evaluation order (specific, wildcard, fallback). Without: newest first, paged.',
        querystring: ListRoutesQuery,
        response: { 200: RoutePage, ...problemResponses(422) },
      },
    },
    async (request) => service.list(request.query),
  )

  app.get(
    '/routes/:id',
    {
      config: { scopes: ['config:read'] },
      schema: { operationId: 'getRoute', tags, summary: 'Get a route', params: IdParams, response: { 200: Route, ...problemResponses(404) } },
    },
    async (request) => service.get(request.params.id),
  )

  app.patch(
    '/routes/:id',
    {
      config: { scopes: ['config:write'] },
      schema: {
        operationId: 'updateRoute',
        tags,
        summary: 'Change a route',
        description:
          "A route cannot switch between wildcard and specific. The fallback route keeps the connector's address and has no rules. An enabled alias changes address only after a successful test of the new one.",
        params: IdParams,
        body: UpdateRouteBody,
        response: { 200: Route, ...problemResponses(404, 409, 422) },
      },
    },
    async (request) => service.update(request.actor(), request.params.id, request.body),
  )

  app.delete(
    '/routes/:id',
    {
      config: { scopes: ['config:write'] },
      schema: {
        operationId: 'deleteRoute',
        tags,
        summary: 'Delete a route',
        description: "A connector's fallback or default route cannot be deleted (409 ROUTE_PROTECTED).",
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
    '/routes/:id/test',
    {
      config: { scopes: ['config:write'] },
      preValidation: emptyBodyAsObject,
      schema: {
        operationId: 'testRoute',
        tags,
        summary: 'Test an outgoing alias',
        description:
          'Sends a real message from the alias (header x-mailgate-test) to the mailbox or `testRecipient`. `emailAddress` tests a candidate alias without saving it. A failed test is a 200 with ok: false.',
        params: IdParams,
        body: TestRouteBody,
        response: { 200: Type.Ref(TestResultSchema), ...problemResponses(404, 409, 422) },
      },
    },
    async (request) => service.test(request.actor(), request.params.id, request.body),
  )

  app.post(
    '/routes/:id/enable',
    {
      config: { scopes: ['config:write'] },
      preValidation: emptyBodyAsObject,
      schema: {
        operationId: 'enableRoute',
        tags,
        summary: 'Enable a route',
        description: 'An alias needs a successful test of its current address (409 CONNECTION_TEST_REQUIRED or CONNECTION_TEST_FAILED otherwise).',
        params: IdParams,
        body: EmptyBody,
        response: { 200: Route, ...problemResponses(404, 409) },
      },
    },
    async (request) => service.enable(request.actor(), request.params.id),
  )

  app.post(
    '/routes/:id/disable',
    {
      config: { scopes: ['config:write'] },
      preValidation: emptyBodyAsObject,
      schema: {
        operationId: 'disableRoute',
        tags,
        summary: 'Disable a route',
        description: 'The fallback and default routes are always enabled (409 ROUTE_PROTECTED).',
        params: IdParams,
        body: EmptyBody,
        response: { 200: Route, ...problemResponses(404, 409) },
      },
    },
    async (request) => service.disable(request.actor(), request.params.id),
  )

  app.put(
    '/connectors/:id/routes/order',
    {
      config: { scopes: ['config:write'] },
      schema: {
        operationId: 'reorderRoutes',
        tags,
        summary: "Set the evaluation order of a connector's incoming routes",
        description: 'List every specific and wildcard route, specific ones first; the fallback stays last. Routes move only inside their group.',
        params: IdParams,
        body: ReorderRoutesBody,
        response: { 200: RouteList, ...problemResponses(404, 422) },
      },
    },
    async (request) => ({ items: await service.reorder(request.actor(), request.params.id, request.body.routeIds) }),
  )
}
