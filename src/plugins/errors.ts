import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import {
  BadRequestError,
  ConflictError,
  DomainError,
  InternalError,
  MalformedBodyError,
  PayloadTooLargeError,
  RouteNotFoundError,
  UnsupportedMediaTypeError,
  ValidationError,
  problemType,
  type InvalidField,
} from '../lib/errors.ts'

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

interface AjvIssue {
  instancePath: string
  keyword: string
  message?: string
  params: Record<string, unknown>
}

/** Body fields are named as they are in the body (`name`, `certificate.pfx`); others get a prefix. */
const contextNames: Record<string, string> = { body: '', querystring: 'query', params: 'path', headers: 'header' }

function fieldsFromValidation(issues: AjvIssue[], context: string | undefined): InvalidField[] {
  const prefix = contextNames[context ?? 'body'] ?? context ?? ''
  const seen = new Set<string>()
  const fields: InvalidField[] = []
  for (const issue of issues) {
    let path = issue.instancePath.split('/').filter(Boolean).join('.')
    let message = issue.message ?? 'is invalid'
    if (issue.keyword === 'required') {
      path = [path, String(issue.params.missingProperty)].filter(Boolean).join('.')
      message = 'is required'
    } else if (issue.keyword === 'additionalProperties') {
      path = [path, String(issue.params.additionalProperty)].filter(Boolean).join('.')
      message = 'is not a known field; remove it or check its spelling'
    } else if (issue.keyword === 'enum') {
      message = `must be one of: ${(issue.params.allowedValues as unknown[]).join(', ')}`
    }
    const field = [prefix, path].filter(Boolean).join('.') || '(body)'
    const key = `${field}|${message}`
    if (seen.has(key)) continue
    seen.add(key)
    fields.push({ field, message })
  }
  return fields
}

/** Maps anything thrown inside a request to the domain vocabulary. */
export function toDomainError(error: unknown): DomainError {
  if (error instanceof DomainError) return error
  const fastifyError = error as FastifyError & { validation?: AjvIssue[] }
  if (fastifyError?.validation) {
    return new ValidationError(fieldsFromValidation(fastifyError.validation, fastifyError.validationContext))
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
  const databaseCode = (error as { cause?: { code?: string } })?.cause?.code ?? (error as { code?: string })?.code
  if (databaseCode === '23505') {
    return new ConflictError('Another request created the same thing at the same moment (a unique value is taken). Read the current state and retry if still needed.')
  }
  if (databaseCode === '23503') {
    return new ConflictError('Something this refers to was deleted or is still referred to by another resource. Read the current state and retry.')
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

export function problemBody(error: DomainError, request: FastifyRequest): Record<string, unknown> {
  return {
    type: problemType(error.code),
    title: error.title,
    status: error.status,
    detail: error.message,
    instance: request.url.split('?')[0],
    code: error.code,
    requestId: request.id,
    ...error.extensions,
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

async function errorsPlugin(app: FastifyInstance) {
  app.addSchema(ProblemSchema)

  app.setErrorHandler((error, request, reply) => {
    const domainError = toDomainError(error)
    if (domainError instanceof InternalError) {
      request.log.error({ err: error }, 'unhandled error')
    } else if (domainError.status >= 500) {
      request.log.error({ code: domainError.code }, domainError.message)
    } else {
      request.log.info({ code: domainError.code, status: domainError.status }, 'request rejected')
    }
    return sendProblem(reply, domainError)
  })

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]
    return sendProblem(
      reply,
      new RouteNotFoundError(`No endpoint ${request.method} ${path}. The API is described at /docs.`),
    )
  })
}

export default fp(errorsPlugin, { name: 'errors', fastify: '5.x' })
