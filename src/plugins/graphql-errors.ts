import type { ExecutionResult, GraphQLError } from 'graphql'
import type { MercuriusContext } from 'mercurius'
import { DomainError, InternalError } from '../lib/errors.ts'
import { toDomainError } from './errors.ts'

/**
 * graphql-js repeats the submitted value in input-coercion messages ("got invalid value
 * {...}"), which can hold a secret. Keep the reason, drop the value.
 */
export function withoutInputValues(message: string): string {
  return message
    .replace(/(Argument "[^"]*" has invalid value) [\s\S]*$/, '$1.')
    .replace(/(Expected value of type "[^"]*"), found [\s\S]*?(?=; |$)/, '$1, found another value')
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
  if (original.statusCode === 405) {
    return { code: 'METHOD_NOT_ALLOWED', status: 405, extensions: {}, message: 'Mutations must be sent with POST; GET takes queries only.' }
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

/**
 * Mercurius's errorFormatter: every error in the service's vocabulary with the request id,
 * faults logged (refusals at info), and the HTTP status of httpStatusOf.
 */
export function formatGraphqlErrors(execution: ExecutionResult, context: unknown) {
  const request = (context as MercuriusContext).reply?.request
  const failures = (execution.errors ?? []).map((error) => ({ error, failure: graphqlFailure(error) }))
  const errors = failures.map(({ error, failure }) => {
    if (failure.code === 'INTERNAL') request?.log.error({ err: error.originalError ?? error }, 'graphql error')
    return {
      message: failure.message,
      locations: error.locations,
      path: error.path,
      extensions: { ...failure.extensions, code: failure.code, requestId: request?.id },
    }
  })
  const data = (execution.data ?? null) as Record<string, unknown> | null
  const statusCode = httpStatusOf(data, failures.map(({ failure }) => failure))
  if (statusCode < 500 && errors.length > 0) request?.log.info({ status: statusCode, codes: errors.map((e) => e.extensions.code) }, 'graphql request refused')
  return { statusCode, response: { data, errors } }
}
