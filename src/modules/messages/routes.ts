import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { IdParams, problemResponses } from '../../lib/schemas.ts'
import { AcceptedSchema, IdempotencyHeaders, ListMessagesQuery, MessagePage, MessageSchema, SendMessageBody } from './schemas.ts'

const tags = ['Messages']
const Message = Type.Ref(MessageSchema)

export const messageRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const service = app.services.messages

  app.post(
    '/messages',
    {
      config: { scopes: ['mail:send'] },
      // Attachments travel base64 (4/3 of their size) inside the JSON.
      bodyLimit: Math.ceil((service.sizeLimit * 4) / 3) + 1024 * 1024,
      schema: {
        operationId: 'sendMessage',
        tags,
        summary: 'Send a message',
        description:
          'Validates the message, stores it with its attachments and queues it; 202 with its id. `from` must be an enabled outgoing connector address or enabled alias. With an `Idempotency-Key` header, the same key and body within 24 hours replay the first answer (header `Idempotent-Replayed: true`); the same key with another body is 409.',
        headers: IdempotencyHeaders,
        body: SendMessageBody,
        response: { 202: AcceptedSchema, ...problemResponses(409, 413, 422) },
      },
    },
    async (request, reply) => {
      const result = await service.submit(request.principal!.keyId, request.body, request.headers['idempotency-key'])
      if (result.replayed) reply.header('idempotent-replayed', 'true')
      return reply.code(result.status).header('location', `/v1/messages/${result.body.id}`).send(result.body)
    },
  )

  app.get(
    '/messages',
    {
      config: { scopes: ['mail:read'] },
      schema: {
        operationId: 'listMessages',
        tags,
        summary: 'List outgoing messages, newest first',
        querystring: ListMessagesQuery,
        response: { 200: MessagePage, ...problemResponses() },
      },
    },
    async (request) => service.list(request.query),
  )

  app.get(
    '/messages/:id',
    {
      config: { scopes: ['mail:read'] },
      schema: { operationId: 'getMessage', tags, summary: 'Get an outgoing message', params: IdParams, response: { 200: Message, ...problemResponses(404) } },
    },
    async (request) => service.get(request.params.id),
  )

  app.post(
    '/messages/:id/cancel',
    {
      config: { scopes: ['mail:send'] },
      schema: {
        operationId: 'cancelMessage',
        tags,
        summary: 'Cancel a queued message',
        description: 'Only while queued (409 otherwise): once sending began, the message may already be out.',
        params: IdParams,
        response: { 200: Message, ...problemResponses(404, 409) },
      },
    },
    async (request) => service.cancel(request.params.id),
  )

  app.post(
    '/messages/:id/retry',
    {
      config: { scopes: ['mail:send'] },
      schema: {
        operationId: 'retryMessage',
        tags,
        summary: 'Queue a failed or uncertain message again',
        description: 'For an uncertain message, check first that it did not go out (Sent Items of the mailbox).',
        params: IdParams,
        response: { 200: Message, ...problemResponses(404, 409) },
      },
    },
    async (request) => service.retry(request.params.id),
  )
}
