import { Type, type TSchema } from '@sinclair/typebox'
import { ValidationError } from './errors.ts'
import { Text } from './text.ts'

export const Uuid = Type.String({ format: 'uuid', description: 'Resource id (UUID)' })
export const DateTime = Type.String({ format: 'date-time', description: 'RFC 3339, between 0001-01-01 and 9999-12-31 UTC' })
export const EmailAddress = Type.String({ format: 'email', maxLength: 320, description: 'An email address' })
/** A type list, not anyOf: the response serializer tells the two apart without validating the date. */
export const NullableDateTime = Type.Unsafe<string | null>({ type: ['string', 'null'], format: 'date-time', description: DateTime.description })

export const IdParams = Type.Object({ id: Uuid }, { additionalProperties: false })

/** The body of an action that takes no input: nothing, or `{}`. */
export const EmptyBody = Type.Object({}, { additionalProperties: false, description: 'No input: send no body or {}' })

export const PageQuery = {
  limit: Type.Integer({ minimum: 1, maximum: 200, default: 50, description: 'Items per page' }),
  cursor: Type.Optional(
    Text({ minLength: 1, maxLength: 200, description: 'The `nextCursor` of the previous page' }),
  ),
}

export function Page<T extends TSchema>(item: T, description: string) {
  return Type.Object(
    {
      items: Type.Array(item),
      nextCursor: Type.Union([Type.String(), Type.Null()], {
        description: 'Pass as `cursor` to get the next page; null on the last page',
      }),
    },
    { description },
  )
}

export interface PageResult<T> {
  items: T[]
  nextCursor: string | null
}

const problemDescriptions: Record<number, string> = {
  400: 'Invalid request: `errors` names each field and what to change',
  401: 'Missing, unknown or revoked API key',
  403: 'The API key lacks a required scope',
  404: 'No such resource',
  409: 'Conflicts with the current state',
  413: 'The request body is too large',
  410: 'Gone: what the request points at is no longer kept',
  415: 'Unsupported content type',
  422: 'Valid shape, but it cannot be carried out',
  500: 'Unexpected error; quote the request id',
}

/** A response documented and served as application/problem+json. */
export function problemResponse(description: string) {
  return Type.Unsafe<Record<string, unknown>>({
    description,
    content: { 'application/problem+json': { schema: { $ref: 'Problem#' } } },
  })
}

/** Problem responses for the given statuses, plus the ones every protected route can give. */
export function problemResponses(...statuses: number[]) {
  const all = new Set([400, 401, 403, 500, ...statuses])
  return Object.fromEntries(
    [...all].sort().map((status) => [status, problemResponse(problemDescriptions[status] ?? 'Error')]),
  )
}

/** Opaque keyset cursor over UUIDv7 ids. */
export function encodeCursor(lastId: string): string {
  return Buffer.from(lastId, 'utf8').toString('base64url')
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

export function decodeCursor(cursor: string | undefined): string | undefined {
  if (cursor === undefined) return undefined
  const id = Buffer.from(cursor, 'base64url').toString('utf8')
  if (!uuidPattern.test(id)) {
    throw new ValidationError([
      { field: 'query.cursor', message: 'is not a cursor this API issued; pass the nextCursor of the previous page' },
    ])
  }
  return id
}

/** Turns rows fetched with limit + 1 into a page. */
export function toPage<T extends { id: string }>(rows: T[], limit: number): PageResult<T> {
  const items = rows.slice(0, limit)
  const last = items.at(-1)
  return { items, nextCursor: rows.length > limit && last ? encodeCursor(last.id) : null }
}

/**
 * preValidation hook for POST actions whose body is optional (test, disable): no body
 * means an empty one, so `{}` and nothing are the same request.
 */
export async function emptyBodyAsObject(request: { body: unknown }): Promise<void> {
  request.body ??= {}
}
