import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { EmptyBody, emptyBodyAsObject, IdParams, Page, PageQuery, problemResponses } from '../../lib/schemas.ts'
import {
  CreateWebhookBody,
  DeliveryParams,
  ReplayBody,
  ReplayResultSchema,
  RotateSecretBody,
  UpdateWebhookBody,
  WebhookDeliverySchema,
  WebhookEndpointSchema,
  WebhookTestResultSchema,
  WebhookWithSecretSchema,
} from './schemas.ts'

const tags = ['Webhooks']
const Endpoint = Type.Ref(WebhookEndpointSchema)
const WithSecret = Type.Ref(WebhookWithSecretSchema)
const Delivery = Type.Ref(WebhookDeliverySchema)
const write = { scopes: ['config:write' as const] }
const read = { scopes: ['config:read' as const] }

export const webhookRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const service = app.services.webhooks

  app.post(
    '/webhooks',
    {
      config: write,
      schema: {
        operationId: 'createWebhook',
        tags,
        summary: 'Create a webhook endpoint',
        description:
          'Events of the given types (`message.*` wildcards) are POSTed to the URL, signed per Standard Webhooks with a secret the server makes and shows in this answer only. The URL must be https (http only with WEBHOOK_ALLOW_HTTP=true) and may not reach a private, loopback, link-local or multicast address (checked on the address connected to), unless WEBHOOK_ALLOWED_NETWORKS allows it.',
        body: CreateWebhookBody,
        response: { 201: WithSecret, ...problemResponses() },
      },
    },
    async (request, reply) => reply.code(201).send(await service.create(request.actor(), request.body)),
  )

  app.get(
    '/webhooks',
    { config: read, schema: { operationId: 'listWebhooks', tags, summary: 'List webhook endpoints', response: { 200: Type.Object({ items: Type.Array(Endpoint) }, { description: 'Every endpoint, oldest first' }), ...problemResponses() } } },
    async () => service.list(),
  )

  app.get(
    '/webhooks/:id',
    { config: read, schema: { operationId: 'getWebhook', tags, summary: 'Get a webhook endpoint', params: IdParams, response: { 200: Endpoint, ...problemResponses(404) } } },
    async (request) => service.get(request.params.id),
  )

  app.patch(
    '/webhooks/:id',
    {
      config: write,
      schema: {
        operationId: 'updateWebhook',
        tags,
        summary: 'Change a webhook endpoint',
        description: 'Enabling a disabled endpoint forgives its failures; its failed deliveries are not sent again (replay them).',
        params: IdParams,
        body: UpdateWebhookBody,
        response: { 200: Endpoint, ...problemResponses(404) },
      },
    },
    async (request) => service.update(request.actor(), request.params.id, request.body),
  )

  app.delete(
    '/webhooks/:id',
    { config: write, schema: { operationId: 'deleteWebhook', tags, summary: 'Delete a webhook endpoint and its deliveries', params: IdParams, response: { 204: Type.Null({ description: 'Deleted' }), ...problemResponses(404) } } },
    async (request, reply) => {
      await service.delete(request.actor(), request.params.id)
      return reply.code(204).send(null)
    },
  )

  app.post(
    '/webhooks/:id/rotate-secret',
    {
      config: write,
      preValidation: emptyBodyAsObject,
      schema: {
        operationId: 'rotateWebhookSecret',
        tags,
        summary: 'Make a new signing secret',
        description: 'Answers the new secret, shown once. For `overlapHours` (default 24) deliveries carry a signature by each secret, so a receiver can switch without losing any.',
        params: IdParams,
        body: RotateSecretBody,
        response: { 200: WithSecret, ...problemResponses(404) },
      },
    },
    async (request) => service.rotateSecret(request.actor(), request.params.id, request.body.overlapHours),
  )

  app.post(
    '/webhooks/:id/test',
    {
      config: write,
      preValidation: emptyBodyAsObject,
      schema: {
        operationId: 'testWebhook',
        tags,
        summary: 'Send a ping event now',
        description: 'POSTs a signed `ping` event to the endpoint and reports its answer (status, time, the first 4 KB of the body).',
        params: IdParams,
        body: EmptyBody,
        response: { 200: Type.Ref(WebhookTestResultSchema), ...problemResponses(404) },
      },
    },
    async (request) => service.test(request.params.id),
  )

  app.get(
    '/webhooks/:id/deliveries',
    {
      config: read,
      schema: {
        operationId: 'listWebhookDeliveries',
        tags,
        summary: 'An endpoint’s deliveries, newest first, with their attempts',
        params: IdParams,
        querystring: Type.Object(PageQuery, { additionalProperties: false }),
        response: { 200: Page(Delivery, 'Deliveries, newest first'), ...problemResponses(404) },
      },
    },
    async (request) => service.deliveries(request.params.id, request.query),
  )

  app.post(
    '/webhooks/:id/deliveries/:deliveryId/replay',
    {
      config: write,
      preValidation: emptyBodyAsObject,
      schema: {
        operationId: 'replayWebhookDelivery',
        tags,
        summary: 'Deliver a delivery’s event again',
        description: 'Queues the event again for this endpoint (same webhook-id, the event’s id). 409 while the delivery is still pending; 410 EVENT_NOT_KEPT once its event is older than EVENT_RETENTION_DAYS.',
        params: DeliveryParams,
        body: EmptyBody,
        response: { 202: Delivery, ...problemResponses(404, 409, 410) },
      },
    },
    async (request, reply) => reply.code(202).send(await service.replayDelivery(request.actor(), request.params.id, request.params.deliveryId)),
  )

  app.post(
    '/webhooks/:id/replay',
    {
      config: write,
      schema: {
        operationId: 'replayWebhookEvents',
        tags,
        summary: 'Deliver every event since a time again',
        description: 'Queues again each of the endpoint’s events that occurred since `since` (at most 10,000), in feed order.',
        params: IdParams,
        body: ReplayBody,
        response: { 202: Type.Ref(ReplayResultSchema), ...problemResponses(404) },
      },
    },
    async (request, reply) => reply.code(202).send(await service.replaySince(request.actor(), request.params.id, request.body.since)),
  )
}
