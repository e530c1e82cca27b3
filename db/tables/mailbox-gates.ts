import { pgTable, primaryKey, smallint, text, timestamp } from 'drizzle-orm/pg-core'

/**
 * Graph's request slots of a mailbox (4 per app and mailbox), shared by every instance and
 * both directions: a request holds a slot row while it is in flight. A slot whose holder
 * died comes free at `heldUntil`. A Retry-After from Graph pauses all of the mailbox's rows.
 */
export const mailboxRequestSlots = pgTable(
  'mailbox_request_slots',
  {
    /** The mailbox's address, lower-cased. */
    mailbox: text().notNull(),
    slot: smallint().notNull(),
    holder: text(),
    heldUntil: timestamp({ withTimezone: true }),
    /** No instance sends a request to the mailbox before this time. */
    pausedUntil: timestamp({ withTimezone: true }),
    /**
     * On slot 0 only: an instance that found every slot busy and waits, so that the others
     * leave it the next free slot instead of taking it back at once (set until `wantedUntil`).
     */
    wantedBy: text(),
    wantedUntil: timestamp({ withTimezone: true }),
  },
  (table) => [primaryKey({ columns: [table.mailbox, table.slot] })],
)
