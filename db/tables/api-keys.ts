import { pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core'

export const apiKeys = pgTable('api_keys', {
  id: uuid().primaryKey(),
  name: text().notNull(),
  /** SHA-256 of the whole key, hex. Keys carry 256 random bits, so a fast hash is enough. */
  keyHash: text().notNull().unique(),
  /** The first characters of the key, kept so people can tell keys apart. */
  prefix: text().notNull(),
  scopes: text().array().notNull(),
  createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  createdByKeyId: uuid(),
  lastUsedAt: timestamp({ withTimezone: true }),
  revokedAt: timestamp({ withTimezone: true }),
})
