import { Type, type Static } from '@sinclair/typebox'
import { createSelectSchema } from 'drizzle-typebox'
import { apiKeys } from '../../../db/schema.ts'
import { DateTime, NullableDateTime, Page, PageQuery } from '../../lib/schemas.ts'
import { Text } from '../../lib/text.ts'
import { SCOPES } from './scopes.ts'

export const ScopeSchema = Type.Union(
  SCOPES.map((scope) => Type.Literal(scope)),
  { description: 'admin carries every scope; config:write carries config:read' },
)

const ApiKeyRowSchema = createSelectSchema(apiKeys, {
  name: Type.String({ minLength: 1, maxLength: 200 }),
  scopes: Type.Array(ScopeSchema),
  createdAt: DateTime,
  lastUsedAt: NullableDateTime,
  revokedAt: NullableDateTime,
})

export const ApiKeySchema = Type.Omit(ApiKeyRowSchema, ['keyHash'], {
  $id: 'ApiKey',
  description: 'An API key. The key itself is shown once, when it is created.',
})
export type ApiKey = Static<typeof ApiKeySchema>

export const CreateApiKeyBody = Type.Object(
  {
    name: Text({ minLength: 1, maxLength: 200, description: 'What the key is for' }),
    scopes: Type.Array(ScopeSchema, { minItems: 1, uniqueItems: true }),
  },
  { additionalProperties: false },
)
export type CreateApiKeyInput = Static<typeof CreateApiKeyBody>

export const CreatedApiKeySchema = Type.Composite(
  [
    Type.Omit(ApiKeyRowSchema, ['keyHash']),
    Type.Object({ key: Type.String({ description: 'The secret key. Shown only in this response.' }) }),
  ],
  { $id: 'CreatedApiKey', description: 'The new key, with the secret shown this once' },
)

export const ListApiKeysQuery = Type.Object(
  { ...PageQuery, includeRevoked: Type.Boolean({ default: false }) },
  { additionalProperties: false },
)
export type ListApiKeysInput = Static<typeof ListApiKeysQuery>

export const ApiKeyPage = Page(Type.Unsafe<ApiKey>({ $ref: 'ApiKey#' }), 'A page of API keys')
