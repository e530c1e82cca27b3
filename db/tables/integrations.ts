import { boolean, index, jsonb, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core'

export const CLOUDS = ['global', 'usgov', 'usgovdod', 'china'] as const
export type Cloud = (typeof CLOUDS)[number]
export const AUTH_METHODS = ['clientSecret', 'certificate'] as const
export type AuthMethod = (typeof AUTH_METHODS)[number]

export const integrations = pgTable('integrations', {
  id: uuid().primaryKey(),
  name: text().notNull(),
  /** Directory (tenant) id or a verified domain. */
  tenant: text().notNull(),
  clientId: text().notNull(),
  cloud: text().$type<Cloud>().notNull(),
  authMethod: text().$type<AuthMethod>().notNull(),
  /** Sealed with SecretBox; never leaves the service. */
  clientSecretSealed: text(),
  certificatePem: text(),
  /** Sealed with SecretBox; never leaves the service. */
  privateKeySealed: text(),
  thumbprintSha1: text(),
  thumbprintSha256: text(),
  certificateSubject: text(),
  certificateNotBefore: timestamp({ withTimezone: true }),
  certificateNotAfter: timestamp({ withTimezone: true }),
  /** Identifies the credential without revealing it; part of the configuration hash. */
  credentialFingerprint: text().notNull(),
  secretExpiresAt: timestamp({ withTimezone: true }),
  createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
})

export interface TestStep {
  name: string
  ok: boolean
  /** Not run because an earlier step failed. */
  skipped?: boolean
  code?: string
  message: string
  hint?: string
}

export interface ConnectionTestResult {
  ok: boolean
  steps: TestStep[]
  roles?: string[]
}

/** Every connection test, kept: the enable gate and candidate changes are judged from it. */
export const integrationTests = pgTable(
  'integration_tests',
  {
    id: uuid().primaryKey(),
    integrationId: uuid()
      .notNull()
      .references(() => integrations.id, { onDelete: 'cascade' }),
    testedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    /** Hash of the connection settings that were tested. */
    configHash: text().notNull(),
    /** True when the test ran on proposed changes rather than the saved configuration. */
    candidate: boolean().notNull(),
    ok: boolean().notNull(),
    result: jsonb().$type<ConnectionTestResult>().notNull(),
    actorKeyId: uuid(),
  },
  (table) => [index('integration_tests_lookup_idx').on(table.integrationId, table.configHash, table.id)],
)
