import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { EmptyBody, emptyBodyAsObject, IdParams, problemResponses } from '../../lib/schemas.ts'
import { acceptMultipartMessages, multipartFiles, multipartMessage } from './multipart.ts'
import {
  AcceptedSchema,
  IdempotencyHeaders,
  ListMessagesQuery,
  MessagePage,
  MessageSchema,
  SendMessageBody,
  SendMessageForm,
  type SendMessageInput,
} from './schemas.ts'

const tags = ['Messages']
const Message = Type.Ref(MessageSchema)

export const messageRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const service = app.services.messages

  // Attachments travel base64 (4/3 of their size) inside the JSON; the multipart message part too.
  const jsonBodyLimit = Math.ceil((service.sizeLimit * 4) / 3) + 1024 * 1024

  // Its own scope, so that multipart parsing and its hooks apply to this one route.
  const submitRoute: FastifyPluginAsyncTypebox = async (submit) => {
    await acceptMultipartMessages(submit, { sizeLimit: service.sizeLimit, messagePartLimit: jsonBodyLimit })
    submit.post(
      '/messages',
      {
        config: { scopes: ['mail:send'] },
        // JSON only: multipart bodies are streamed, and the size rules bound them.
        bodyLimit: jsonBodyLimit,
        schema: {
          operationId: 'sendMessage',
          tags,
          summary: 'Send a message',
          description: `Validates the message, stores it with its attachments and queues it; 202 with its id. \`from\` must be an enabled outgoing connector address or enabled alias. With an \`Idempotency-Key\` header, the same key and body within 24 hours replay the first answer (header \`Idempotent-Replayed: true\`); the same key with another body is 409.

Two body formats:
* \`application/json\`: the message, attachments base64 in \`attachments[].contentBytes\`.
* \`multipart/form-data\`, for large attachments, streamed to storage as they arrive: the first part, named \`message\`, is the message JSON exactly as the JSON body (it may still carry small base64 attachments). Then file parts (250 attachments in all at most): \`attachment\` for a file, \`inline:<contentId>\` for an inline image the html body refers to as \`cid:<contentId>\`. Each file part needs a filename, which names the attachment; its Content-Type is the attachment's type. File parts follow the message's own attachments, so errors name them \`attachments.<n>\` in that order. The message is checked before any file is read; a file is refused as soon as it breaks a size rule.

Subject, body and all attachments together must stay within MESSAGE_SIZE_LIMIT (413). Attachments over 3 MB, and more than 3 MB of attachments in all, need Mail.ReadWrite on the integration (422 ATTACHMENT_NOT_SENDABLE); inline images must stay under 3 MB.`,
          headers: IdempotencyHeaders,
          body: {
            content: {
              'application/json': { schema: SendMessageBody },
              'multipart/form-data': { schema: SendMessageForm },
            },
          },
          response: { 202: AcceptedSchema, ...problemResponses(409, 413, 415, 422) },
        },
      },
      async (request, reply) => {
        const keyId = request.principal!.keyId
        const idempotencyKey = request.headers['idempotency-key']
        const result = request.isMultipart()
          ? await service.submitWithFiles(keyId, multipartMessage(request), multipartFiles(request), idempotencyKey)
          : await service.submit(keyId, request.body as SendMessageInput, idempotencyKey)
        if (result.replayed) reply.header('idempotent-replayed', 'true')
        return reply.code(result.status).header('location', `/v1/messages/${result.body.id}`).send(result.body)
      },
    )
  }
  await app.register(submitRoute)

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
      preValidation: emptyBodyAsObject,
      schema: {
        operationId: 'cancelMessage',
        tags,
        summary: 'Cancel a queued message',
        description: 'Only while queued (409 otherwise): once sending began, the message may already be out.',
        params: IdParams,
        body: EmptyBody,
        response: { 200: Message, ...problemResponses(404, 409) },
      },
    },
    async (request) => service.cancel(request.params.id),
  )

  app.post(
    '/messages/:id/retry',
    {
      config: { scopes: ['mail:send'] },
      preValidation: emptyBodyAsObject,
      schema: {
        operationId: 'retryMessage',
        tags,
        summary: 'Queue a failed or uncertain message again',
        description: 'For an uncertain message, check first that it did not go out (Sent Items of the mailbox).',
        params: IdParams,
        body: EmptyBody,
        response: { 200: Message, ...problemResponses(404, 409) },
      },
    },
    async (request) => service.retry(request.params.id),
  )
}
