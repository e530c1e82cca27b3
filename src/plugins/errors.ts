import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import {
  BadRequestError,
  ConflictError,
  DomainError,
  HeadersTooLargeError,
  InternalError,
  MalformedBodyError,
  PayloadTooLargeError,
  RequestTimeoutError,
  RouteNotFoundError,
  UnstorableValueError,
  UnsupportedMediaTypeError,
  ValidationError,
  problemType,
} from '../lib/errors.ts'
import { invalidFields } from '../lib/validation.ts'
import { databaseErrorCode } from '../database/error-code.ts'

export const PROBLEM_CONTENT_TYPE = 'application/problem+json'

/** Shared schema of every error body, referenced from each route's responses. */
export const ProblemSchema = {
  $id: 'Problem',
  type: 'object',
  description: 'RFC 9457 problem details. `code` is stable and equals GraphQL `extensions.code`.',
  required: ['type', 'title', 'status', 'code'],
  properties: {
    type: { type: 'string', description: 'URI identifying the problem type' },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string', description: 'What went wrong and how to fix it' },
    instance: { type: 'string', description: 'The request path' },
    code: { type: 'string', description: 'Stable machine-readable code' },
    requestId: { type: 'string', description: 'Quote this when reporting a problem' },
    errors: {
      type: 'array',
      description: 'Invalid fields, for VALIDATION_FAILED',
      items: {
        type: 'object',
        required: ['field', 'message'],
        properties: { field: { type: 'string' }, message: { type: 'string' } },
      },
    },
  },
  additionalProperties: true,
} as const

/** Body fields are named as they are in the body (`name`, `certificate.pfx`); others get a prefix. */
const contextNames: Record<string, string> = { body: '', querystring: 'query', params: 'path', headers: 'header' }

/** Maps anything thrown inside a request to the domain vocabulary. */
export function toDomainError(error: unknown): DomainError {
  if (error instanceof DomainError) return error
  const fastifyError = error as FastifyError & { validation?: Parameters<typeof invalidFields>[0] }
  if (fastifyError?.validation) {
    const context = fastifyError.validationContext ?? 'body'
    return new ValidationError(invalidFields(fastifyError.validation, contextNames[context] ?? context))
  }
  switch (fastifyError?.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new MalformedBodyError(`${fastifyError.message}. Send a valid JSON document.`)
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new PayloadTooLargeError('The request body exceeds the configured limit (BODY_LIMIT).')
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new UnsupportedMediaTypeError(
        `${fastifyError.message}. Send the body as application/json.`,
      )
  }
  // A constraint caught a race the service's own checks could not see (two creates at once).
  const databaseCode = databaseErrorCode(error)
  if (databaseCode === '23505') {
    return new ConflictError('Another request created the same thing at the same moment (a unique value is taken). Read the current state and retry if still needed.')
  }
  if (databaseCode === '23503' || databaseCode === '23001') {
    return new ConflictError(
      'Something this refers to was deleted, or other records still refer to it (a connector or alias with sent messages on record cannot be deleted; disable it instead). Read the current state and retry.',
    )
  }
  // Data exceptions (class 22) and limits (54) come from values the client sent.
  if (typeof databaseCode === 'string' && (databaseCode.startsWith('22') || databaseCode.startsWith('54'))) {
    return new UnstorableValueError('A value in the request cannot be stored (it is out of range, too long or not valid text). Check the values sent; quote the request id if they look right.')
  }
  if (error instanceof SyntaxError && fastifyError.statusCode === 400) {
    return new MalformedBodyError(`${error.message}. Send a valid JSON document.`)
  }
  // Fastify's own client errors (bad URL encoding, ...) carry safe, specific messages.
  if (typeof fastifyError?.code === 'string' && fastifyError.code.startsWith('FST_') && (fastifyError.statusCode ?? 500) < 500) {
    return new BadRequestError(`${fastifyError.message}.`)
  }
  return new InternalError()
}

/** The path of a request target, also of an absolute-form one (`http://host/path`). */
function pathOf(url: string): string {
  if (url.startsWith('/')) return url.split('?')[0]!
  return URL.parse(url, 'http://invalid')?.pathname ?? '/'
}

export function problemBody(error: DomainError, request: FastifyRequest): Record<string, unknown> {
  // Extensions never replace the problem's own members.
  return {
    ...error.extensions,
    type: problemType(error.code),
    title: error.title,
    status: error.status,
    detail: error.message,
    instance: pathOf(request.url),
    code: error.code,
    requestId: request.id,
  }
}

export function sendProblem(reply: FastifyReply, error: DomainError): FastifyReply {
  return reply
    .code(error.status)
    // Also for errors raised before any hook ran (a URL Fastify cannot decode).
    .header('x-request-id', reply.request.id)
    .type(PROBLEM_CONTENT_TYPE)
    .serializer(JSON.stringify)
    .send(problemBody(error, reply.request))
}

/**
 * Requests Node's HTTP parser refuses before Fastify sees them (headers over the limit,
 * malformed request lines, slow senders) are answered as problem+json too, on the raw socket.
 */
export function clientErrorHandler(this: FastifyInstance, error: Error & { code?: string }, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return
  const problem =
    error.code === 'HPE_HEADER_OVERFLOW'
      ? new HeadersTooLargeError('The request line and headers exceed the limit (16 KiB in all). Send a shorter URL, or fewer or shorter headers.')
      : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? new RequestTimeoutError('The request did not arrive in time. Retry it.')
        : new BadRequestError('The request is not valid HTTP/1.1. Check the request line, the headers and their encoding.')
  this.log.info({ code: problem.code, parserCode: error.code }, 'client error')
  const body = JSON.stringify({
    type: problemType(problem.code),
    title: problem.title,
    status: problem.status,
    detail: problem.message,
    code: problem.code,
  })
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status]}\r\nConnection: close\r\nContent-Type: ${PROBLEM_CONTENT_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    )
  }
  socket.destroy()
}

async function errorsPlugin(app: FastifyInstance) {
  app.addSchema(ProblemSchema)

  app.setErrorHandler((error, request, reply) => {
    const domainError = toDomainError(error)
    if (domainError instanceof InternalError || domainError instanceof UnstorableValueError) {
      request.log.error({ err: error }, domainError instanceof InternalError ? 'unhandled error' : 'a value reached the database that no field rule refused')
    } else if (domainError.status >= 500) {
      request.log.error({ code: domainError.code }, domainError.message)
    } else {
      request.log.info({ code: domainError.code, status: domainError.status }, 'request rejected')
    }
    return sendProblem(reply, domainError)
  })

  app.setNotFoundHandler((request, reply) => {
    const path = pathOf(request.url)
    return sendProblem(
      reply,
      new RouteNotFoundError(`No endpoint ${request.method} ${path}. The API is described at /docs.`),
    )
  })
}

export default fp(errorsPlugin, { name: 'errors', fastify: '5.x' })
