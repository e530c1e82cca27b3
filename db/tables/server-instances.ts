import { integer, pgTable, text, timestamp } from 'drizzle-orm/pg-core'

/**
 * Every running Mailgate process, by the id its leases and request slots are held under
 * (`<id>/<role>`). A process beats every few seconds; one whose beat stopped (kill -9, a
 * lost machine) is taken for dead by the others, which free what it held at once instead of
 * waiting for each lease to run out.
 */
export const serverInstances = pgTable('server_instances', {
  id: text().primaryKey(),
  startedAt: timestamp({ withTimezone: true }).notNull(),
  heartbeatAt: timestamp({ withTimezone: true }).notNull(),
  hostname: text().notNull(),
  pid: integer().notNull(),
})
