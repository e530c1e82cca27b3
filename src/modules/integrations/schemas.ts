import { Type, type Static } from '@sinclair/typebox'
import { createSelectSchema } from 'drizzle-typebox'
import { AUTH_METHODS, CLOUDS, integrations } from '../../../db/schema.ts'
import { DateTime, NullableDateTime, Page, PageQuery } from '../../lib/schemas.ts'
import { MultilineText, Text } from '../../lib/text.ts'
import { LastTest } from '../connection-tests/schemas.ts'

const GUID = '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}'
const DOMAIN = '(?=.{4,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z]{2,63}'

export const CloudSchema = Type.Union(
  CLOUDS.map((cloud) => Type.Literal(cloud)),
  { description: 'National cloud: decides the Entra sign-in and Graph hosts' },
)
export const AuthMethodSchema = Type.Union(
  AUTH_METHODS.map((method) => Type.Literal(method)),
  { description: 'certificate is recommended; clientSecret is simpler to set up' },
)
export const TenantSchema = Type.String({
  pattern: `^(${GUID}|${DOMAIN})$`,
  description: 'Directory (tenant) ID, or a verified domain such as contoso.onmicrosoft.com',
})
export const ClientIdSchema = Type.String({
  pattern: `^${GUID}$`,
  description: 'Application (client) ID of the app registration',
})

export const CertificateInput = Type.Object(
  {
    pfx: Type.Optional(
      Type.String({ minLength: 4, maxLength: 200_000, pattern: '^[A-Za-z0-9+/=\\s]+$', description: 'Base64 PFX (PKCS#12) with the private key' }),
    ),
    password: Type.Optional(Text({ maxLength: 1000, description: 'PFX password (write-only)' })),
    certificatePem: Type.Optional(MultilineText({ minLength: 50, maxLength: 100_000, description: 'PEM certificate, instead of a PFX' })),
    privateKeyPem: Type.Optional(MultilineText({ minLength: 50, maxLength: 100_000, description: 'Unencrypted PEM private key (write-only)' })),
  },
  {
    additionalProperties: false,
    description: 'Either `pfx` (+ `password`), or `certificatePem` + `privateKeyPem`. Write-only.',
  },
)
export type CertificateInputType = Static<typeof CertificateInput>

const connectionFields = {
  tenant: TenantSchema,
  clientId: ClientIdSchema,
  cloud: CloudSchema,
  authMethod: AuthMethodSchema,
  clientSecret: Text({ minLength: 1, maxLength: 1000, description: 'Client secret value (write-only)' }),
  certificate: CertificateInput,
}

export const CreateIntegrationBody = Type.Object(
  {
    name: Text({ minLength: 1, maxLength: 200 }),
    tenant: connectionFields.tenant,
    clientId: connectionFields.clientId,
    cloud: Type.Optional({ ...CloudSchema, default: 'global' }),
    authMethod: connectionFields.authMethod,
    clientSecret: Type.Optional(connectionFields.clientSecret),
    certificate: Type.Optional(connectionFields.certificate),
    secretExpiresAt: Type.Optional(
      Type.Union([DateTime, Type.Null()], { description: 'When the client secret expires (shown in Entra ID); for reminders' }),
    ),
  },
  { additionalProperties: false },
)
export type CreateIntegrationInput = Static<typeof CreateIntegrationBody>

export const UpdateIntegrationBody = Type.Partial(CreateIntegrationBody, {
  additionalProperties: false,
  minProperties: 1,
})
export type UpdateIntegrationInput = Static<typeof UpdateIntegrationBody>

export const ConnectionChanges = Type.Object(
  {
    tenant: Type.Optional(connectionFields.tenant),
    clientId: Type.Optional(connectionFields.clientId),
    cloud: Type.Optional(connectionFields.cloud),
    authMethod: Type.Optional(connectionFields.authMethod),
    clientSecret: Type.Optional(connectionFields.clientSecret),
    certificate: Type.Optional(connectionFields.certificate),
  },
  {
    additionalProperties: false,
    description: 'Candidate connection settings to test without saving them. Empty: test the saved configuration.',
  },
)
export type ConnectionChangesInput = Static<typeof ConnectionChanges>

const IntegrationRow = createSelectSchema(integrations, {
  cloud: CloudSchema,
  authMethod: AuthMethodSchema,
  createdAt: DateTime,
  updatedAt: DateTime,
  secretExpiresAt: NullableDateTime,
})

export const IntegrationSchema = Type.Composite(
  [
    Type.Pick(IntegrationRow, ['id', 'name', 'tenant', 'clientId', 'cloud', 'authMethod', 'secretExpiresAt', 'createdAt', 'updatedAt']),
    Type.Object({
      hasClientSecret: Type.Boolean(),
      certificate: Type.Union([
        Type.Object({
          thumbprintSha1: Type.String(),
          thumbprintSha256: Type.String(),
          subject: Type.String(),
          notBefore: DateTime,
          notAfter: DateTime,
        }),
        Type.Null(),
      ]),
      verified: Type.Boolean({ description: 'The latest test of the saved configuration succeeded' }),
      lastTest: LastTest,
    }),
  ],
  { $id: 'Integration', description: 'An Entra ID app registration in a tenant. Secrets are never returned.' },
)
export type Integration = Static<typeof IntegrationSchema>

export const ListIntegrationsQuery = Type.Object(
  {
    cloud: Type.Optional(CloudSchema),
    tenant: Type.Optional(Text({ minLength: 1, maxLength: 253 })),
    ...PageQuery,
  },
  { additionalProperties: false },
)
export type ListIntegrationsInput = Static<typeof ListIntegrationsQuery>

export const IntegrationPage = Page(Type.Unsafe<Integration>({ $ref: 'Integration#' }), 'A page of integrations')
