import type { GraphQLError } from 'graphql'
import { DomainError, InternalError } from '../lib/errors.ts'
import { toDomainError } from './errors.ts'

/**
 * graphql-js repeats the submitted value in input-coercion messages ("got invalid value
 * {...}"), which can hold a secret. Keep the reason, drop the value.
 */
export function withoutInputValues(message: string): string {
  return message
    .replace(/got invalid value .*?(?=; | at "|$)/s, 'got an invalid value')
    .replace(/Value ".*?" does not/g, 'The value does not')
    .replace(/(non string|non-string|non integer|non-integer|non boolean|non-boolean) value: .*$/s, '$1 value')
}

/** A query refused before parsing or validation finished; the same code graphql-js's refusals get. */
export class GraphqlRefusedError extends DomainError {
  readonly code = 'GRAPHQL_VALIDATION_FAILED'
  readonly status = 400
  readonly title = 'The query is not valid'
}

export interface GraphqlFailure {
  code: string
  status: number
  extensions: Record<string, unknown>
  message: string
}

/** One GraphQL error in the service's vocabulary: the same codes and statuses as problem+json. */
export function graphqlFailure(error: GraphQLError): GraphqlFailure {
  const original = error.originalError as (Error & { errors?: GraphQLError[]; statusCode?: number }) | undefined
  if (original instanceof DomainError) {
    return { code: original.code, status: original.status, extensions: original.extensions, message: original.message }
  }
  if (!original) {
    // Parse and validation errors of the query itself carry no original error.
    return { code: 'GRAPHQL_VALIDATION_FAILED', status: 400, extensions: {}, message: withoutInputValues(error.message) }
  }
  if (Array.isArray(original.errors)) {
    // Mercurius gathers the query's validation errors into one.
    const messages = original.errors.map((inner) => withoutInputValues(inner.message))
    return { code: 'GRAPHQL_VALIDATION_FAILED', status: 400, extensions: { errors: messages }, message: messages.join(' ') }
  }
  const mapped = toDomainError(original)
  if (!(mapped instanceof InternalError)) {
    return { code: mapped.code, status: mapped.status, extensions: mapped.extensions, message: mapped.message }
  }
  const status = original.statusCode ?? 500
  if (status < 500) return { code: 'GRAPHQL_BAD_REQUEST', status, extensions: {}, message: withoutInputValues(original.message) }
  const internal = new InternalError()
  return { code: internal.code, status: internal.status, extensions: {}, message: internal.message }
}

/**
 * The HTTP status of a GraphQL answer: 200 when any root field produced data (a partial
 * answer), otherwise the errors' own status (400 refused query, 401/403 auth, 404, 409...),
 * 500 only if one of them is our fault.
 */
export function httpStatusOf(data: Record<string, unknown> | null | undefined, failures: GraphqlFailure[]): number {
  if (failures.length === 0) return 200
  if (data && Object.values(data).some((value) => value !== null && value !== undefined)) return 200
  const statuses = new Set(failures.map((failure) => failure.status))
  if (statuses.size === 1) return failures[0]!.status
  if ([...statuses].some((status) => status >= 500)) return 500
  return 400
}
