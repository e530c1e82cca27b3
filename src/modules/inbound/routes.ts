import { Readable } from 'node:stream'
import { closeWhenAnswered } from '../../lib/lingering-close.ts'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import type { FastifyRequest } from 'fastify'
import { PayloadTooLargeError, UnsupportedMediaTypeError } from '../../lib/errors.ts'
import { EmptyBody, emptyBodyAsObject, IdParams, problemResponses } from '../../lib/schemas.ts'
import { GraphMessageBody, type GraphMessageInput } from './graph-message.ts'
import {
  AttachmentParams,
  ConfirmWorkItemBody,
  CreateRouteFromEmailBody,
  DuplicateSchema,
  InboundEmailSchema,
  InboundPage,
  IngestQuery,
  ListInboundQuery,
  ReapplyBody,
  ReapplyResultSchema,
  ReprocessResultSchema,
  RouteFromEmailResultSchema,
} from './schemas.ts'

const tags = ['Inbound']
const InboundEmail = Type.Ref(InboundEmailSchema)
const RFC822 = 'message/rfc822'

/** Raw message bodies, left unread for the handler to stream. */
const rawBodies = new WeakMap<FastifyRequest, AsyncIterable<Buffer>>()

/** `attachment; filename=...` that no file name can break out of (RFC 6266 with an ASCII fallback). */
function contentDisposition(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]|["\\%;]/g, '_')
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`
}

/** A content type safe to hand back: a plain type/subtype, else octet-stream. */
function safeContentType(value: string): string {
  return /^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/.test(value) && !value.startsWith('text/html') ? value : 'application/octet-stream'
}

/** A stream as the reply body; the route schemas describe it as the bytes it sends (a string). */
function asBody(content: AsyncIterable<Buffer>): string {
  return Readable.from(content) as unknown as string
}

export const inboundRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const service = app.services.inbound
  const jsonBodyLimit = Math.ceil((service.sizeLimit * 4) / 3) + 1024 * 1024

  const ingestRoute: FastifyPluginAsyncTypebox = async (ingest) => {
    ingest.addContentTypeParser(RFC822, (request, payload, done) => {
      const declared = Number(request.headers['content-length'])
      if (declared > service.sizeLimit) {
        done(new PayloadTooLargeError(`The message is larger than MESSAGE_SIZE_LIMIT (${service.sizeLimit} bytes)`, { limit: service.sizeLimit }), undefined)
        return
      }
      rawBodies.set(request, payload)
      done(null, '')
    })
    ingest.removeContentTypeParser('text/plain')
    ingest.addContentTypeParser('*', (request, _payload, done) => {
      done(new UnsupportedMediaTypeError(`Send the mail as ${RFC822} (raw RFC 5322) or application/json (Graph's message shape); this request is ${request.headers['content-type']?.slice(0, 100) ?? 'without a content type'}.`), undefined)
    })
    // A refusal given before the message was read to its end closes the connection, as the unread rest would stall it.
    ingest.addHook('onSend', async (request, reply) => {
      if (rawBodies.has(request) && !request.raw.readableEnded) closeWhenAnswered(request.raw, (name, value) => reply.header(name, value))
    })
    ingest.post(
      '/ingest',
      {
        config: { scopes: ['mail:ingest'] },
        bodyLimit: jsonBodyLimit,
        schema: {
          operationId: 'ingestEmail',
          tags,
          summary: 'Take in a received email',
          description: `Runs a mail through the pipeline of an enabled incoming connector (dedupe, own mail, blocked senders, automated mail, replies to known work, routes) as if it had arrived in the mailbox. 201 with the stored email and its outcome; 200 when it is a duplicate, naming the original.

Two body formats:
* \`${RFC822}\`: the raw message, streamed; kept byte for byte (GET /v1/inbound/{id}/raw).
* \`application/json\`: the message as Microsoft Graph returns it (attachments base64 in \`contentBytes\`).

The message may be at most MESSAGE_SIZE_LIMIT bytes (413). A mail the parser cannot fully read is stored and processed as far as it can be; \`parseProblems\` says what was not read.`,
          querystring: IngestQuery,
          body: {
            content: {
              [RFC822]: { schema: Type.String({ description: 'The raw RFC 5322 message' }) },
              'application/json': { schema: GraphMessageBody },
            },
          },
          response: { 201: InboundEmail, 200: DuplicateSchema, ...problemResponses(404, 409, 413, 415) },
        },
      },
      async (request, reply) => {
        const raw = rawBodies.get(request)
        const result = raw
          ? await service.ingestMime(request.query.connectorId, raw)
          : await service.ingestGraph(request.query.connectorId, request.body as GraphMessageInput)
        if (result.status === 200) return reply.code(200).send(result.duplicate)
        return reply.code(201).header('location', `/v1/inbound/${result.email.id}`).send(result.email)
      },
    )
  }
  await app.register(ingestRoute)

  app.get(
    '/inbound',
    {
      config: { scopes: ['mail:read'] },
      schema: {
        operationId: 'listInboundEmails',
        tags,
        summary: 'List received emails, newest first',
        description: 'Unhandled mail: `outcome=unhandled`; each says why in `outcomeReason`.',
        querystring: ListInboundQuery,
        response: { 200: InboundPage, ...problemResponses() },
      },
    },
    async (request) => service.list(request.query),
  )

  app.get(
    '/inbound/:id',
    {
      config: { scopes: ['mail:read'] },
      schema: { operationId: 'getInboundEmail', tags, summary: 'Get a received email with its headers, bodies and pipeline steps', params: IdParams, response: { 200: InboundEmail, ...problemResponses(404) } },
    },
    async (request) => service.get(request.params.id),
  )

  app.get(
    '/inbound/:id/raw',
    {
      config: { scopes: ['mail:read'] },
      schema: {
        operationId: 'getInboundEmailSource',
        tags,
        summary: 'Download the email as it was taken in',
        description: `${RFC822} for mail taken in as MIME; application/json (Graph's message shape) for mail taken in as JSON.`,
        params: IdParams,
        response: {
          200: { description: 'The source, as a download', content: { [RFC822]: { schema: Type.String() }, 'application/json': { schema: Type.Object({}) } } },
          ...problemResponses(404),
        },
      },
    },
    async (request, reply) => {
      const source = await service.source(request.params.id)
      return reply
        .header('content-type', source.format === 'mime' ? RFC822 : 'application/json')
        .header('content-length', source.size)
        .header('content-disposition', contentDisposition(`${request.params.id}.${source.format === 'mime' ? 'eml' : 'json'}`))
        .send(asBody(source.content))
    },
  )

  app.get(
    '/inbound/:id/attachments/:index',
    {
      config: { scopes: ['mail:read'] },
      schema: {
        operationId: 'getInboundAttachment',
        tags,
        summary: 'Download an attachment of a received email',
        description: 'Always as a download (Content-Disposition: attachment), never rendered inline; HTML attachments come as application/octet-stream.',
        params: AttachmentParams,
        response: { 200: { description: 'The attachment content, as a download', content: { 'application/octet-stream': { schema: Type.String() } } }, ...problemResponses(404) },
      },
    },
    async (request, reply) => {
      const attachment = await service.attachment(request.params.id, request.params.index)
      return reply
        .header('content-type', safeContentType(attachment.contentType))
        .header('content-disposition', contentDisposition(attachment.name))
        .header('x-content-type-options', 'nosniff')
        .send(asBody(attachment.content))
    },
  )

  app.put(
    '/inbound/:id/work-item',
    {
      config: { scopes: ['mail:ingest'] },
      schema: {
        operationId: 'confirmInboundWorkItem',
        tags,
        summary: 'Confirm the work item a request became',
        description: 'The work-management system names the work item it created for the request through `routeId`, so that later replies thread to it. Repeating the same reference is harmless; another reference for the same request is 409.',
        params: IdParams,
        body: ConfirmWorkItemBody,
        response: { 200: InboundEmail, ...problemResponses(404, 409, 422) },
      },
    },
    async (request) => service.confirmWorkItem(request.actor(), request.params.id, request.body),
  )

  app.post(
    '/inbound/:id/reprocess',
    {
      config: { scopes: ['mail:ingest'] },
      preValidation: emptyBodyAsObject,
      schema: {
        operationId: 'reprocessInboundEmail',
        tags,
        summary: 'Run an email through the pipeline again',
        description: 'After a route or blocked-address change. Work already requested stays; new requests and a changed outcome emit events. A duplicate is 409: reprocess its original.',
        params: IdParams,
        body: EmptyBody,
        response: { 200: ReprocessResultSchema, ...problemResponses(404, 409) },
      },
    },
    async (request) => service.reprocess(request.actor(), request.params.id),
  )

  app.post(
    '/inbound/reapply',
    {
      config: { scopes: ['config:write'] },
      schema: {
        operationId: 'reapplyUnhandledEmails',
        tags,
        summary: "Run a connector's unhandled emails through the pipeline again",
        description: 'After a route or blocked-address change: the unhandled emails received in the range, 1,000 per call in the order they arrived; `nextAfterId` continues. Audited.',
        body: ReapplyBody,
        response: { 200: ReapplyResultSchema, ...problemResponses() },
      },
    },
    async (request) => service.reapply(request.actor(), request.body),
  )

  app.post(
    '/inbound/:id/route',
    {
      config: { scopes: ['config:write'] },
      schema: {
        operationId: 'createRouteFromInboundEmail',
        tags,
        summary: 'Create an incoming route from an email',
        description: "A route for one of the email's recipient addresses, or a wildcard route for its sender, into the given process. With `reapply`, the connector's unhandled emails received in that range run through the pipeline again (1,000 at most; `nextAfterId` continues with POST /v1/inbound/reapply), and the answer says how many changed outcome.",
        params: IdParams,
        body: CreateRouteFromEmailBody,
        response: { 201: RouteFromEmailResultSchema, ...problemResponses(404, 409, 422) },
      },
    },
    async (request, reply) => {
      const result = await service.routeFrom(request.actor(), request.params.id, request.body)
      return reply.code(201).header('location', `/v1/routes/${result.routeId}`).send(result)
    },
  )
}
