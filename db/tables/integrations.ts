import { pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core'

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

