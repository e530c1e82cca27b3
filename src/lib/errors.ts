/**
 * The one error vocabulary of the service. Every failure a caller can act on is a
 * DomainError with a stable code; the errors plugin maps it to problem+json for REST and
 * the GraphQL plugin to `extensions.code`. Codes never change once published.
 */
export interface InvalidField {
  /** JSON pointer-ish location, e.g. `body.name` or `query.limit`. */
  field: string
  message: string
}

export abstract class DomainError extends Error {
  abstract readonly code: string
  abstract readonly status: number
  abstract readonly title: string
  /** Extra problem members, safe to show to the caller. */
  readonly extensions: Record<string, unknown>

  constructor(detail: string, extensions: Record<string, unknown> = {}) {
    super(detail)
    this.name = new.target.name
    this.extensions = extensions
  }
}

export class ValidationError extends DomainError {
  readonly code = 'VALIDATION_FAILED'
  readonly status = 400
  readonly title = 'The request is not valid'
  readonly errors: InvalidField[]

  constructor(errors: InvalidField[], detail?: string) {
    super(detail ?? errors.map((e) => `${e.field}: ${e.message}`).join('; '), { errors })
    this.errors = errors
  }
}

export class MalformedBodyError extends DomainError {
  readonly code = 'MALFORMED_BODY'
  readonly status = 400
  readonly title = 'The request body could not be parsed'
}

/** A malformed request that no more specific code describes (bad URL encoding, and so on). */
export class BadRequestError extends DomainError {
  readonly code = 'BAD_REQUEST'
  readonly status = 400
  readonly title = 'Bad request'
}

/**
 * A value the database would not store (a data exception): every field rule should refuse
 * such input before it gets there, so it is also logged as an error to find the missing rule.
 */
export class UnstorableValueError extends DomainError {
  readonly code = 'VALUE_NOT_STORABLE'
  readonly status = 400
  readonly title = 'A value in the request cannot be stored'
}

export class UnauthenticatedError extends DomainError {
  readonly code = 'UNAUTHENTICATED'
  readonly status = 401
  readonly title = 'Authentication required'
}

export class ForbiddenError extends DomainError {
  readonly code = 'FORBIDDEN'
  readonly status = 403
  readonly title = 'The API key lacks a required scope'
}

export class NotFoundError extends DomainError {
  readonly code = 'NOT_FOUND'
  readonly status = 404
  readonly title = 'Resource not found'

  constructor(resource: string, id: string) {
    super(`No ${resource} with id ${id}`, { resource, id })
  }
}

export class RouteNotFoundError extends DomainError {
  readonly code = 'ROUTE_NOT_FOUND'
  readonly status = 404
  readonly title = 'No such endpoint'
}

export class ConflictError extends DomainError {
  readonly code: string = 'CONFLICT'
  readonly status = 409
  readonly title: string = 'The request conflicts with the current state'
}

export class PayloadTooLargeError extends DomainError {
  readonly code = 'PAYLOAD_TOO_LARGE'
  readonly status = 413
  readonly title = 'The request body is too large'
}

export class UnsupportedMediaTypeError extends DomainError {
  readonly code = 'UNSUPPORTED_MEDIA_TYPE'
  readonly status = 415
  readonly title = 'Unsupported content type'
}

export class UnprocessableError extends DomainError {
  readonly code: string = 'UNPROCESSABLE'
  readonly status = 422
  readonly title: string = 'The request cannot be carried out as given'
}

export class RequestTimeoutError extends DomainError {
  readonly code = 'REQUEST_TIMEOUT'
  readonly status = 408
  readonly title = 'The request took too long to arrive'
}

export class HeadersTooLargeError extends DomainError {
  readonly code = 'HEADERS_TOO_LARGE'
  readonly status = 431
  readonly title = 'The request headers are too large'
}

export class ServiceUnavailableError extends DomainError {
  readonly code = 'SERVICE_UNAVAILABLE'
  readonly status = 503
  readonly title = 'The service is not ready'
}

/** Anything that is not a DomainError is reported as this, with no internals. */
export class InternalError extends DomainError {
  readonly code = 'INTERNAL'
  readonly status = 500
  readonly title = 'Internal server error'

  constructor() {
    super('An unexpected error occurred. Quote the request id when reporting it.')
  }
}

export function problemType(code: string): string {
  return `urn:mailgate:problem:${code.toLowerCase().replaceAll('_', '-')}`
}
