import { getTableColumns, sql, type SQL } from 'drizzle-orm'
import { toSnakeCase } from 'drizzle-orm/casing'
import { domainEvents, inboundDedupeKeys, inboundEmails, workItemLinks } from '../../../db/schema.ts'
import { databaseErrorCode } from '../../database/error-code.ts'
import type { Db } from '../../database/index.ts'
import type { NewDomainEvent } from '../events/repository.ts'
import type { OwnMailIds } from '../outbound/sent-mail.ts'
import type { DedupeKey } from './dedupe.ts'
import type { InboundEmailRow, WorkItemLinkRow } from './repository.ts'

/** A new email with its outcome already decided, and what goes with it. */
export interface DecidedEmail {
  row: InboundEmailRow
  scope: string
  keys: DedupeKey[]
  links: WorkItemLinkRow[]
  events: NewDomainEvent[]
  /** The ids by which it could be Mailgate's own mail: then it is not stored here. */
  ownMail: OwnMailIds
}

/** The outbound module's condition "a sent message has one of these ids", for this statement. */
export type SentAnyOf = (outboxIds: SQL, messageIds: SQL) => SQL<boolean>

/** Statements writing decided emails at once, at most. */
const MAX_IN_FLIGHT = 2
/** Emails in one statement, at most. */
const MAX_BATCH = 64

/**
 * Stores decided emails, in one statement prepared once for `db`, grouping the emails that
 * arrive while earlier statements are running (as PostgreSQL groups commits): at most
 * MAX_IN_FLIGHT statements run at once, and a lone email is written at once.
 *
 * The statement claims every email's dedupe keys and inserts each email only if it claimed
 * all of its keys and no sent message has its ids, with its work links and events. An email
 * whose keys another holds, or that is Mailgate's own mail, is not stored (`false`: intake
 * takes the slower path that records the duplicate or ignores it). When it claimed
 * some keys but not all, those keys would point at no email, so PostgreSQL refuses the whole
 * statement (a foreign key violation) and nothing is written; the group is then written one
 * email per statement, so only that email is refused (and only its caller sees any other
 * failure).
 */
export class DecidedEmailWriter {
  private readonly statement: ReturnType<typeof prepareStoreDecided>
  private readonly queue: Entry[] = []
  private inFlight = 0

  constructor(db: Db, sentAnyOf: SentAnyOf) {
    this.statement = prepareStoreDecided(db, sentAnyOf)
  }

  /** Whether the email was stored (false: another email holds one of its keys). */
  write(email: DecidedEmail): Promise<boolean> {
    return new Promise((done, failed) => {
      this.queue.push({ email, done, failed })
      this.next()
    })
  }

  private next(): void {
    if (this.inFlight >= MAX_IN_FLIGHT || this.queue.length === 0) return
    const group = this.queue.splice(0, MAX_BATCH)
    this.inFlight++
    void this.writeGroup(group).finally(() => {
      this.inFlight--
      this.next()
    })
  }

  /** Writes the group and settles each entry; never rejects. */
  private async writeGroup(group: Entry[]): Promise<void> {
    try {
      const stored = await this.statement(group.map((entry) => entry.email))
      for (const entry of group) entry.done(stored.has(entry.email.row.id))
      return
    } catch (error) {
      if (group.length === 1) {
        if (databaseErrorCode(error) === '23503') group[0]!.done(false)
        else group[0]!.failed(error)
        return
      }
    }
    // One email's refusal or failure is its own: the others are written one by one, in this
    // statement's turn (the rare group that needs it waits; the pool is not flooded).
    for (const entry of group) await this.writeGroup([entry])
  }
}

interface Entry {
  email: DecidedEmail
  done: (stored: boolean) => void
  failed: (error: unknown) => void
}

const emailFields = Object.keys(getTableColumns(inboundEmails)) as (keyof InboundEmailRow)[]
const emailColumns = emailFields.map((field) => toSnakeCase(field))

/** The email as a record of its table's row type: snake_case names, JSON values. */
function emailRecord(row: InboundEmailRow): Record<string, unknown> {
  const record: Record<string, unknown> = {}
  emailFields.forEach((field, index) => (record[emailColumns[index]!] = row[field]))
  return record
}

function prepareStoreDecided(db: Db, sentAnyOf: SentAnyOf) {
  const names = sql.join(
    emailColumns.map((name) => sql.identifier(name)),
    sql`, `,
  )
  const fromRecord = sql.join(
    emailColumns.map((name) => sql`e.${sql.identifier(name)}`),
    sql`, `,
  )
  // Rows travel as JSON arrays, so one statement text serves any number of emails.
  const wanted = db.$with('wanted_keys', { emailId: sql<string>`email_id` }).as(
    sql`select k.scope, k.kind, k.hash, k.email_id from json_to_recordset(${sql.placeholder('keys')}::json) as k(scope text, kind text, hash text, email_id uuid)`,
  )
  const claimed = db.$with('claimed_keys', { emailId: sql<string>`email_id` }).as(
    // In one order everywhere, so that groups racing for the same keys cannot deadlock.
    sql`insert into ${inboundDedupeKeys} (scope, kind, hash, email_id) select scope, kind, hash, email_id from wanted_keys
      order by scope, kind, hash
      on conflict do nothing returning email_id`,
  )
  const stored = db.$with('stored_email', { storedId: sql<string>`id`.as('stored_id') }).as(
    sql`insert into ${inboundEmails} (${names})
      select ${fromRecord} from json_populate_recordset(null::inbound_emails, ${sql.placeholder('emails')}::json) as e
        join json_to_recordset(${sql.placeholder('ownMail')}::json) as o(email_id uuid, outbox_ids uuid[], message_ids text[]) on o.email_id = e.id
      where (select count(*) from claimed_keys c where c.email_id = e.id) = (select count(*) from wanted_keys w where w.email_id = e.id)
        and not ${sentAnyOf(sql`o.outbox_ids`, sql`o.message_ids`)}
      returning id as stored_id`,
  )
  const links = db.$with('stored_links', { linkId: sql<string>`id`.as('link_id') }).as(
    sql`insert into ${workItemLinks} (id, email_id, kind, route_id, address, work_item_ref, automated, test_mode, created_at)
      select l.id, l.email_id, l.kind, l.route_id, l.address, l.work_item_ref, l.automated, l.test_mode, l.created_at
      from json_to_recordset(${sql.placeholder('links')}::json)
        as l(id uuid, email_id uuid, kind text, route_id uuid, address text, work_item_ref text, automated boolean, test_mode boolean, created_at timestamptz)
      join stored_email on stored_email.stored_id = l.email_id
      returning id as link_id`,
  )
  const events = db.$with('stored_events', { eventId: sql<string>`id`.as('event_id') }).as(
    sql`insert into ${domainEvents} (id, type, subject_type, subject_id, payload, occurred_at)
      select e.id, e.type, e.subject_type, e.subject_id, e.payload, e.occurred_at
      from json_to_recordset(${sql.placeholder('events')}::json)
        as e(id uuid, type text, subject_type text, subject_id uuid, payload jsonb, occurred_at timestamptz)
      join stored_email on stored_email.stored_id = e.subject_id
      returning id as event_id`,
  )
  const query = db
    .with(wanted, claimed, stored, links, events)
    .select({
      storedIds: sql<string[]>`(select coalesce(array_agg(stored_id::text), '{}') from stored_email)`,
      links: sql<number>`(select count(*) from stored_links)::int`,
      events: sql<number>`(select count(*) from stored_events)::int`,
    })
    .from(sql`(select 1) as one`)
    .prepare('store_decided_emails')

  return async (emails: DecidedEmail[]): Promise<Set<string>> => {
    const [result] = await query.execute({
      keys: JSON.stringify(emails.flatMap((email) => email.keys.map((key) => ({ scope: email.scope, kind: key.kind, hash: key.hash, email_id: email.row.id })))),
      emails: JSON.stringify(emails.map((email) => emailRecord(email.row))),
      ownMail: JSON.stringify(emails.map((email) => ({ email_id: email.row.id, outbox_ids: email.ownMail.outboxIds, message_ids: email.ownMail.messageIds }))),
      links: JSON.stringify(
        emails.flatMap((email) =>
          email.links.map((link) => ({
            id: link.id,
            email_id: email.row.id,
            kind: link.kind,
            route_id: link.routeId,
            address: link.address,
            work_item_ref: link.workItemRef,
            automated: link.automated,
            test_mode: link.testMode,
            created_at: link.createdAt,
          })),
        ),
      ),
      events: JSON.stringify(
        emails.flatMap((email) =>
          email.events.map((event) => ({ id: event.id, type: event.type, subject_type: event.subjectType, subject_id: email.row.id, payload: event.payload, occurred_at: event.occurredAt ?? new Date() })),
        ),
      ),
    })
    return new Set(result!.storedIds)
  }
}
