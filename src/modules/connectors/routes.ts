import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { emptyBodyAsObject, IdParams, problemResponses } from '../../lib/schemas.ts'
import { TestResultSchema } from '../connection-tests/schemas.ts'
import {
  ConnectorPage,
  ConnectorSchema,
  CreateConnectorBody,
  DisableConnectorBody,
  EnableConnectorBody,
  ListConnectorsQuery,
  TestConnectorBody,
  UpdateConnectorBody,
} from './schemas.ts'

const tags = ['Connectors']
const Connector = Type.Ref(ConnectorSchema)

export const connectorRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const service = app.services.connectors

  app.post(
    '/connectors',
    {
      config: { scopes: ['config:write'] },
      schema: {
        operationId: 'createConnector',
        tags,
        summary: 'Create a connector (a shared mailbox)',
        description:
          'An incoming connector needs `fallbackRoute` (the process unrouted mail becomes) and gets that route in the same transaction; an outgoing connector gets its default route. Connectors start disabled: test, then enable.',
        body: CreateConnectorBody,
        response: { 201: Connector, ...problemResponses(409, 422) },
      },
    },
    async (request, reply) => reply.code(201).send(await service.create(request.actor(), request.body)),
  )

  app.get(
    '/connectors',
    {
      config: { scopes: ['config:read'] },
      schema: {
        operationId: 'listConnectors',
        tags,
        summary: 'List connectors, newest first',
        querystring: ListConnectorsQuery,
        response: { 200: ConnectorPage, ...problemResponses() },
      },
    },
    async (request) => service.list(request.query),
  )

  app.get(
    '/connectors/:id',
    {
      config: { scopes: ['config:read'] },
      schema: {
        operationId: 'getConnector',
        tags,
        summary: 'Get a connector',
        params: IdParams,
        response: { 200: Connector, ...problemResponses(404) },
      },
    },
    async (request) => service.get(request.params.id),
  )

  app.patch(
    '/connectors/:id',
    {
      config: { scopes: ['config:write'] },
      schema: {
        operationId: 'updateConnector',
        tags,
        summary: 'Change a connector',
        description:
          'Names, flags and AI switches change freely. Connection settings (integration, address, folders, after-processing) of an enabled connector change only after a successful test of exactly the new settings (POST .../test with them). Direction never changes.',
        params: IdParams,
        body: UpdateConnectorBody,
        response: { 200: Connector, ...problemResponses(404, 409, 422) },
      },
    },
    async (request) => service.update(request.actor(), request.params.id, request.body),
  )

  app.delete(
    '/connectors/:id',
    {
      config: { scopes: ['config:write'] },
      schema: {
        operationId: 'deleteConnector',
        tags,
        summary: 'Delete a connector and its routes',
        params: IdParams,
        response: { 204: Type.Null({ description: 'Deleted' }), ...problemResponses(404) },
      },
    },
    async (request, reply) => {
      await service.delete(request.actor(), request.params.id)
      return reply.code(204).send(null)
    },
  )

  app.post(
    '/connectors/:id/test',
    {
      config: { scopes: ['config:write'] },
      preValidation: emptyBodyAsObject,
      schema: {
        operationId: 'testConnector',
        tags,
        summary: 'Test the connection to the mailbox',
        description:
          'Incoming: token with a mail-read role, the mailbox answers, every folder path resolves (ids are stored). Outgoing: Mail.Send, and a real test message (header x-mailgate-test) to the mailbox itself or `testRecipient`. The body may carry candidate settings, tested but not saved. A failed test is a 200 with ok: false.',
        params: IdParams,
        body: TestConnectorBody,
        response: { 200: Type.Ref(TestResultSchema), ...problemResponses(404, 422) },
      },
    },
    async (request) => service.test(request.actor(), request.params.id, request.body),
  )

  app.post(
    '/connectors/:id/enable',
    {
      config: { scopes: ['config:write'] },
      preValidation: emptyBodyAsObject,
      schema: {
        operationId: 'enableConnector',
        tags,
        summary: 'Enable a connector',
        description:
          'Needs a verified integration and a successful test of exactly the current settings; otherwise 409 with INTEGRATION_NOT_VERIFIED, CONNECTION_TEST_REQUIRED or CONNECTION_TEST_FAILED. An incoming connector’s folders are synced from then on: mail that arrives from now, or with `importExisting` also the mail already there (received since `importSince`).',
        params: IdParams,
        body: EnableConnectorBody,
        response: { 200: Connector, ...problemResponses(400, 404, 409) },
      },
    },
    async (request) => service.enable(request.actor(), request.params.id, request.body),
  )

  app.post(
    '/connectors/:id/disable',
    {
      config: { scopes: ['config:write'] },
      preValidation: emptyBodyAsObject,
      schema: {
        operationId: 'disableConnector',
        tags,
        summary: 'Disable a connector',
        params: IdParams,
        body: DisableConnectorBody,
        response: { 200: Connector, ...problemResponses(404) },
      },
    },
    async (request) => service.disable(request.actor(), request.params.id, request.body.reason),
  )
}
