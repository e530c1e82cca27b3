import { and, asc, desc, eq, inArray, isNotNull, lt, sql } from 'drizzle-orm'
import { domainEvents, webhookAttempts, webhookDeliveries, webhookEndpoints, webhookFanout } from '../../../db/schema.ts'
import { rowsOf, type Db } from '../../database/index.ts'
import { newId } from '../../lib/ids.ts'
import { comparePositions, type FeedPosition } from '../events/position.ts'
import { heldByAny, RELEASED } from '../../workers/liveness.ts'
import type { AttemptResult } from './http.ts'

export type EndpointRow = typeof webhookEndpoints.$inferSelect
export type DeliveryRow = typeof webhookDeliveries.$inferSelect
export type AttemptRow = typeof webhookAttempts.$inferSelect

/** A delivery this instance holds the lease of, with its event and endpoint. */
export interface ClaimedDelivery {
  id: string
  endpointId: string
  eventId: string
  attempts: number
  firstAttemptAt: Date | null
  event: { id: string; type: string; subjectType: string; subjectId: string; payload: Record<string, unknown>; occurredAt: Date }
}

/** Whether an event type is one of an endpoint's patterns (`message.sent`, `message.*`, `*`). */
export function typeMatches(patterns: readonly string[], type: string): boolean {
  return patterns.some((pattern) => pattern === '*' || pattern === type || (pattern.endsWith('.*') && type.startsWith(pattern.slice(0, -1))))
}

const FANOUT_ROW = 1
const FANOUT_PAGE = 500

export class WebhookRepository {
  async insertEndpoint(tx: Db, row: typeof webhookEndpoints.$inferInsert): Promise<EndpointRow> {
    const [created] = await tx.insert(webhookEndpoints).values(row).returning()
    return created!
  }

  async updateEndpoint(tx: Db, id: string, changes: Partial<typeof webhookEndpoints.$inferInsert>): Promise<EndpointRow | undefined> {
    const [updated] = await tx.update(webhookEndpoints).set(changes).where(eq(webhookEndpoints.id, id)).returning()
    return updated
  }

  /** New sealings of the same secrets, only if the row still holds the ones read. */
  async replaceSecrets(executor: Db, read: Pick<EndpointRow, 'id' | 'secretSealed' | 'previousSecretSealed'>, changes: Partial<EndpointRow>): Promise<boolean> {
    const rows = await executor
      .update(webhookEndpoints)
      .set(changes)
      .where(
        and(
          eq(webhookEndpoints.id, read.id),
          eq(webhookEndpoints.secretSealed, read.secretSealed),
          read.previousSecretSealed === null ? sql`${webhookEndpoints.previousSecretSealed} is null` : eq(webhookEndpoints.previousSecretSealed, read.previousSecretSealed),
        ),
      )
      .returning({ id: webhookEndpoints.id })
    return rows.length === 1
  }

  async findEndpoint(executor: Db, id: string, options: { forUpdate?: boolean } = {}): Promise<EndpointRow | undefined> {
    const query = executor.select().from(webhookEndpoints).where(eq(webhookEndpoints.id, id))
    const [row] = options.forUpdate ? await query.for('update') : await query
    return row
  }

  async listEndpoints(executor: Db): Promise<EndpointRow[]> {
    return executor.select().from(webhookEndpoints).orderBy(asc(webhookEndpoints.createdAt), asc(webhookEndpoints.id))
  }

  /** The endpoints filtered to a connector, with their deliveries; how many. */
  async deleteEndpointsOfConnector(tx: Db, connectorId: string): Promise<number> {
    return (await tx.delete(webhookEndpoints).where(eq(webhookEndpoints.connectorId, connectorId)).returning({ id: webhookEndpoints.id })).length
  }

  async deleteEndpoint(tx: Db, id: string): Promise<boolean> {
    return (await tx.delete(webhookEndpoints).where(eq(webhookEndpoints.id, id)).returning({ id: webhookEndpoints.id })).length > 0
  }

  /**
   * Fans the next events of the feed out to the endpoints that want them, one delivery each,
   * and moves the fan-out's place past them, in one transaction: each event is fanned out
   * once, whichever instance does it (the others skip the locked row). How many events it read.
   */
  async fanOut(db: Db, now: Date): Promise<number> {
    return db.transaction(async (tx) => {
      let [place] = await tx.select().from(webhookFanout).where(eq(webhookFanout.id, FANOUT_ROW)).for('update', { skipLocked: true })
      if (!place) {
        await tx.insert(webhookFanout).values({ id: FANOUT_ROW, txId: 0, eventId: '00000000-0000-0000-0000-000000000000' }).onConflictDoNothing()
        ;[place] = await tx.select().from(webhookFanout).where(eq(webhookFanout.id, FANOUT_ROW)).for('update', { skipLocked: true })
        if (!place) return 0
      }
      const events = rowsOf<{ id: string; tx_id: string | number; type: string; payload: Record<string, unknown>; occurred_at: string | Date }>(
        await tx.execute(sql`
          select id, tx_id, type, payload, occurred_at from ${domainEvents}
          where (tx_id, id) > (${place.txId}::bigint, ${place.eventId}::uuid) and tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
          order by tx_id, id limit ${FANOUT_PAGE}`),
      )
      if (events.length === 0) return 0
      // Disabled endpoints too: their deliveries wait, and go out once they are enabled again.
      const endpoints = await tx
        .select({ id: webhookEndpoints.id, eventTypes: webhookEndpoints.eventTypes, connectorId: webhookEndpoints.connectorId, createdTxId: webhookEndpoints.createdTxId })
        .from(webhookEndpoints)
      const deliveries: (typeof webhookDeliveries.$inferInsert)[] = []
      for (const event of events) {
        for (const endpoint of endpoints) {
          // Positions, not clocks: the events of transactions after the endpoint's own.
          if (Number(event.tx_id) <= endpoint.createdTxId || !typeMatches(endpoint.eventTypes, event.type)) continue
          if (endpoint.connectorId && event.payload.connectorId !== endpoint.connectorId) continue
          deliveries.push({ id: newId(), endpointId: endpoint.id, eventId: event.id, eventTxId: Number(event.tx_id), nextAttemptAt: now, createdAt: now })
        }
      }
      for (let start = 0; start < deliveries.length; start += 1000) await tx.insert(webhookDeliveries).values(deliveries.slice(start, start + 1000))
      const last = events.at(-1)!
      await tx.update(webhookFanout).set({ txId: Number(last.tx_id), eventId: last.id }).where(eq(webhookFanout.id, FANOUT_ROW))
      return events.length
    })
  }

  /** Deliveries dead instances were making (see Liveness): their leases end now, so they are tried again. */
  async releaseLeasesOf(tx: Db, deadInstances: string[]): Promise<number> {
    // (state, lease_owner not null) is the small webhook_deliveries_leased_idx, not the backlog.
    const freed = await tx
      .update(webhookDeliveries)
      .set({ leaseExpiresAt: RELEASED })
      .where(and(eq(webhookDeliveries.state, 'pending'), isNotNull(webhookDeliveries.leaseOwner), heldByAny(webhookDeliveries.leaseOwner, deadInstances)))
      .returning({ id: webhookDeliveries.id })
    return freed.length
  }

  /**
   * Takes the lease of up to `limit` due deliveries: of an ordered endpoint only its first
   * undelivered one (in feed order), when nobody holds it; of a parallel endpoint its first due
   * ones in feed order, up to `perParallelEndpoint` in flight (over all instances).
   * An expired lease (a dead instance) is taken over.
   */
  async claimDue(executor: Db, owner: string, limit: number, leaseMs: number, now: Date, perParallelEndpoint: number): Promise<ClaimedDelivery[]> {
    if (limit <= 0) return []
    const at = now.toISOString()
    const until = new Date(now.getTime() + leaseMs).toISOString()
    const rows = rowsOf<Record<string, unknown>>(
      await executor.execute(sql`
        with leased as (
          -- Endpoints with deliveries in flight, and how many (the small leased index).
          select held.endpoint_id, count(*) as held from ${webhookDeliveries} held
          where held.state = 'pending' and held.lease_owner is not null and held.lease_expires_at >= ${at}::timestamptz
          group by held.endpoint_id
        ), heads as materialized (
          -- Per ordered endpoint its first undelivered delivery, unless one of its deliveries is in flight.
          select distinct on (d.endpoint_id) d.id
          from ${webhookDeliveries} d join ${webhookEndpoints} e on e.id = d.endpoint_id
          where d.state = 'pending' and e.enabled and not e.parallel and e.id not in (select endpoint_id from leased)
          order by d.endpoint_id, d.event_tx_id, d.event_id, d.id
        ), spread as materialized (
          -- Per parallel endpoint its first due deliveries in feed order, as many as it may still
          -- have in flight: a backlog at one endpoint does not hold the others back. (One pass
          -- with a window, like the heads: a per-endpoint LATERAL is slow on PGlite's planner.)
          select ranked.id from (
            select d.id, l.held, row_number() over (partition by d.endpoint_id order by d.event_tx_id, d.event_id, d.id) as turn
            from ${webhookDeliveries} d join ${webhookEndpoints} e on e.id = d.endpoint_id
            left join leased l on l.endpoint_id = d.endpoint_id
            where d.state = 'pending' and e.enabled and e.parallel and d.next_attempt_at <= ${at}::timestamptz
              and (d.lease_expires_at is null or d.lease_expires_at < ${at}::timestamptz)
          ) ranked
          where ranked.turn <= ${perParallelEndpoint} - coalesce(ranked.held, 0)
        ), candidates as (
          -- Materialized and joined, not \`in (...)\`: PGlite's planner re-ran the window per pending row.
          select d.id from (select id from heads union all select id from spread) pick
          join ${webhookDeliveries} d on d.id = pick.id
          where d.state = 'pending' and d.next_attempt_at <= ${at}::timestamptz and (d.lease_expires_at is null or d.lease_expires_at < ${at}::timestamptz)
          order by d.next_attempt_at, d.id
          limit ${limit}
          for update of d skip locked
        )
        update ${webhookDeliveries} d set lease_owner = ${owner}, lease_expires_at = ${until}::timestamptz,
          first_attempt_at = coalesce(d.first_attempt_at, ${at}::timestamptz)
        from candidates c, ${domainEvents} ev
        where d.id = c.id and ev.id = d.event_id
        returning d.id, d.endpoint_id, d.event_id, d.attempts, d.first_attempt_at,
          ev.type, ev.subject_type, ev.subject_id, ev.payload, ev.occurred_at`),
    )
    return rows.map(toClaimed)
  }

  /**
   * In the transaction that settled one of an endpoint's deliveries (its row locked): takes
   * the lease of the endpoint's next delivery, so the same task delivers it without waiting
   * for a round. Ordered: the first undelivered one in feed order when it is due (nobody else
   * can hold it: the endpoint's lease was held until this transaction commits) and none of
   * its other deliveries is in flight (left from when it was parallel). Parallel: the first
   * due one nobody holds; the task keeps its slot, so the endpoint's cap holds.
   */
  async claimNextOf(tx: Db, endpoint: { id: string; parallel: boolean }, owner: string, leaseMs: number, now: Date): Promise<ClaimedDelivery | undefined> {
    const at = now.toISOString()
    const until = new Date(now.getTime() + leaseMs).toISOString()
    const next = endpoint.parallel
      ? sql`d.id = (
            select n.id from ${webhookDeliveries} n where n.endpoint_id = ${endpoint.id} and n.state = 'pending'
              and n.next_attempt_at <= ${at}::timestamptz and (n.lease_expires_at is null or n.lease_expires_at < ${at}::timestamptz)
            order by n.event_tx_id, n.event_id, n.id limit 1 for update skip locked)`
      : sql`d.id = (
            select head.id from ${webhookDeliveries} head where head.endpoint_id = ${endpoint.id} and head.state = 'pending'
            order by head.event_tx_id, head.event_id, head.id limit 1)
          and d.next_attempt_at <= ${at}::timestamptz and (d.lease_expires_at is null or d.lease_expires_at < ${at}::timestamptz)
          and not exists (
            select 1 from ${webhookDeliveries} held where held.endpoint_id = d.endpoint_id and held.state = 'pending'
              and held.lease_owner is not null and held.lease_expires_at >= ${at}::timestamptz and held.id <> d.id)`
    const [row] = rowsOf<Record<string, unknown>>(
      await tx.execute(sql`
        update ${webhookDeliveries} d set lease_owner = ${owner}, lease_expires_at = ${until}::timestamptz,
          first_attempt_at = coalesce(d.first_attempt_at, ${at}::timestamptz)
        from ${domainEvents} ev
        where ${next} and ev.id = d.event_id
        returning d.id, d.endpoint_id, d.event_id, d.attempts, d.first_attempt_at,
          ev.type, ev.subject_type, ev.subject_id, ev.payload, ev.occurred_at`),
    )
    return row ? toClaimed(row) : undefined
  }

  /**
   * The first feed position whose event webhooks may still need: the one after the fan-out's
   * place (or, before the first fan-out, the oldest endpoint's start) or the event of an
   * enabled endpoint's pending delivery, whichever comes first; null when nothing is needed.
   * A disabled endpoint holds nothing: its waiting deliveries end when their events are
   * older than the retention (failOrphans).
   */
  async firstNeeded(executor: Db): Promise<FeedPosition | null> {
    const [row] = rowsOf<{ pending_tx: string | number | null; pending_id: string | null; fanned_tx: string | number | null; fanned_id: string | null; start_tx: string | number | null }>(
      await executor.execute(sql`
        select p.event_tx_id as pending_tx, p.event_id as pending_id, f.tx_id as fanned_tx, f.event_id as fanned_id,
          (select min(created_tx_id) from ${webhookEndpoints}) as start_tx
        from (select 1) one
        left join lateral (
          -- Each enabled endpoint's first pending delivery (the pending index), then the first of those.
          select first.event_tx_id, first.event_id from ${webhookEndpoints} e
          cross join lateral (
            select d.event_tx_id, d.event_id from ${webhookDeliveries} d where d.endpoint_id = e.id and d.state = 'pending'
            order by d.event_tx_id, d.event_id limit 1
          ) first
          where e.enabled
          order by first.event_tx_id, first.event_id limit 1
        ) p on true
        left join ${webhookFanout} f on f.id = ${FANOUT_ROW}`),
    )
    const candidates: FeedPosition[] = []
    if (row?.pending_id) candidates.push({ txId: Number(row.pending_tx), id: row.pending_id })
    if (row?.fanned_id) candidates.push(positionAfter({ txId: Number(row.fanned_tx), id: row.fanned_id }))
    else if (row?.start_tx !== null && row?.start_tx !== undefined) candidates.push({ txId: Number(row.start_tx) + 1, id: NIL_UUID })
    return candidates.reduce<FeedPosition | null>((first, position) => (first === null || comparePositions(position, first) < 0 ? position : first), null)
  }

  /** Deliveries (and their attempts) that ended before `cutoff`, a batch; how many. */
  async removeEndedBefore(db: Db, cutoff: Date, batch: number): Promise<number> {
    const rows = rowsOf<{ id: string }>(
      await db.execute(sql`
        delete from ${webhookDeliveries} where id in (
          select id from ${webhookDeliveries} where state <> 'pending' and ended_at < ${cutoff.toISOString()}::timestamptz limit ${batch})
        returning id`),
    )
    return rows.length
  }

  /**
   * Pending deliveries whose event the feed's trimming removed (up to `removedThrough`: a
   * disabled endpoint's, older than the retention) can never be sent: they end as failed.
   */
  async failOrphans(db: Db, removedThrough: FeedPosition, now: Date): Promise<number> {
    const rows = rowsOf<{ id: string }>(
      await db.execute(sql`
        update ${webhookDeliveries} d set state = 'failed', last_error = 'Its event is no longer kept (EVENT_RETENTION_DAYS)',
          lease_owner = null, lease_expires_at = null, ended_at = ${now.toISOString()}::timestamptz
        where d.state = 'pending' and (d.event_tx_id, d.event_id) <= (${removedThrough.txId}::bigint, ${removedThrough.id}::uuid)
          and (d.lease_expires_at is null or d.lease_expires_at < ${now.toISOString()}::timestamptz)
          and not exists (select 1 from ${domainEvents} ev where ev.id = d.event_id)
        returning d.id`),
    )
    return rows.length
  }

  /** Renews a lease still held; false when another instance took the delivery over. */
  async renew(executor: Db, id: string, owner: string, until: Date): Promise<boolean> {
    const rows = await executor
      .update(webhookDeliveries)
      .set({ leaseExpiresAt: until })
      .where(and(eq(webhookDeliveries.id, id), eq(webhookDeliveries.leaseOwner, owner), eq(webhookDeliveries.state, 'pending')))
      .returning({ id: webhookDeliveries.id })
    return rows.length === 1
  }

  async recordAttempt(tx: Db, deliveryId: string, at: Date, result: AttemptResult): Promise<void> {
    await tx.insert(webhookAttempts).values({
      id: newId(),
      deliveryId,
      at,
      status: result.status,
      durationMs: result.durationMs,
      responseHeaders: result.headers,
      responseBody: result.body,
      error: result.error,
    })
  }

  /** Ends or reschedules the delivery, only while `owner` holds it; false when it does not. */
  async settle(
    tx: Db,
    id: string,
    owner: string,
    outcome: { state: 'pending' | 'delivered' | 'failed'; attempts: number; nextAttemptAt?: Date; lastStatus: number | null; lastError: string | null; deliveredAt?: Date; endedAt?: Date },
  ): Promise<boolean> {
    const rows = await tx
      .update(webhookDeliveries)
      .set({
        state: outcome.state,
        attempts: outcome.attempts,
        ...(outcome.nextAttemptAt ? { nextAttemptAt: outcome.nextAttemptAt } : {}),
        lastStatus: outcome.lastStatus,
        lastError: outcome.lastError,
        deliveredAt: outcome.deliveredAt ?? null,
        endedAt: outcome.endedAt ?? null,
        leaseOwner: null,
        leaseExpiresAt: null,
      })
      .where(and(eq(webhookDeliveries.id, id), eq(webhookDeliveries.leaseOwner, owner), eq(webhookDeliveries.state, 'pending')))
      .returning({ id: webhookDeliveries.id })
    return rows.length === 1
  }

  /** An endpoint that stopped failing, or started: failing_since kept from the first failure. */
  async markHealth(tx: Db, endpointId: string, failing: boolean, now: Date): Promise<EndpointRow | undefined> {
    if (!failing) {
      // The common case writes only when the endpoint was failing.
      await tx.update(webhookEndpoints).set({ failingSince: null }).where(and(eq(webhookEndpoints.id, endpointId), sql`${webhookEndpoints.failingSince} is not null`))
      return undefined
    }
    const [row] = await tx
      .update(webhookEndpoints)
      .set({ failingSince: sql`coalesce(${webhookEndpoints.failingSince}, ${now.toISOString()}::timestamptz)` })
      .where(eq(webhookEndpoints.id, endpointId))
      .returning()
    return row
  }

  /** An endpoint's deliveries, newest first, each with its last 20 attempts (two statements). */
  async deliveriesOf(executor: Db, endpointId: string, limit: number, before?: string): Promise<{ delivery: DeliveryRow; attempts: AttemptRow[] }[]> {
    const deliveries = await executor
      .select()
      .from(webhookDeliveries)
      .where(and(eq(webhookDeliveries.endpointId, endpointId), before ? lt(webhookDeliveries.id, before) : undefined))
      .orderBy(desc(webhookDeliveries.id))
      .limit(limit)
    if (deliveries.length === 0) return []
    const attempts = await executor
      .select()
      .from(webhookAttempts)
      .where(inArray(webhookAttempts.deliveryId, deliveries.map((delivery) => delivery.id)))
      .orderBy(asc(webhookAttempts.at), asc(webhookAttempts.id))
    const byDelivery = new Map<string, AttemptRow[]>()
    for (const attempt of attempts) byDelivery.set(attempt.deliveryId, [...(byDelivery.get(attempt.deliveryId) ?? []), attempt].slice(-20))
    return deliveries.map((delivery) => ({ delivery, attempts: byDelivery.get(delivery.id) ?? [] }))
  }

  async findDelivery(executor: Db, endpointId: string, id: string): Promise<DeliveryRow | undefined> {
    const [row] = await executor.select().from(webhookDeliveries).where(and(eq(webhookDeliveries.id, id), eq(webhookDeliveries.endpointId, endpointId)))
    return row
  }

  /** A new delivery of an event already delivered (or given up), due now. */
  /** A new delivery of an ended one's event, while the event is kept; undefined when it is not. */
  async queueAgain(tx: Db, delivery: Pick<DeliveryRow, 'endpointId' | 'eventId' | 'eventTxId'>, now: Date): Promise<DeliveryRow | undefined> {
    const [event] = await tx.select({ id: domainEvents.id }).from(domainEvents).where(eq(domainEvents.id, delivery.eventId))
    if (!event) return undefined
    const [row] = await tx.insert(webhookDeliveries).values({ id: newId(), endpointId: delivery.endpointId, eventId: delivery.eventId, eventTxId: delivery.eventTxId, nextAttemptAt: now, createdAt: now }).returning()
    return row
  }

  /** The endpoint's events since a time (of its types and connector), queued again in feed order, up to `max`; how many. */
  async queueSince(tx: Db, endpoint: EndpointRow, types: readonly string[], since: Date, max: number, now: Date): Promise<number> {
    const events = await tx
      .select({ id: domainEvents.id, txId: domainEvents.txId })
      .from(domainEvents)
      .where(
        sql`${domainEvents.occurredAt} >= ${since.toISOString()}::timestamptz and ${domainEvents.txId} < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
          and ${domainEvents.type} = any(${`{${types.join(',')}}`}::text[])
          ${endpoint.connectorId ? sql`and ${domainEvents.payload} ->> 'connectorId' = ${endpoint.connectorId}` : sql``}`,
      )
      .orderBy(asc(domainEvents.txId), asc(domainEvents.id))
      .limit(max)
    for (let start = 0; start < events.length; start += 1000) {
      await tx.insert(webhookDeliveries).values(events.slice(start, start + 1000).map((event) => ({ id: newId(), endpointId: endpoint.id, eventId: event.id, eventTxId: event.txId, nextAttemptAt: now, createdAt: now })))
    }
    return events.length
  }

  /** Per enabled endpoint, when its oldest undelivered event occurred (for the lag metric). */
  async oldestPending(executor: Db): Promise<{ endpointId: string; occurredAt: Date }[]> {
    const rows = rowsOf<{ endpoint_id: string; occurred_at: string | Date }>(
      await executor.execute(sql`
        select d.endpoint_id, min(ev.occurred_at) as occurred_at
        from ${webhookDeliveries} d join ${domainEvents} ev on ev.id = d.event_id
        where d.state = 'pending' group by d.endpoint_id`),
    )
    return rows.map((row) => ({ endpointId: row.endpoint_id, occurredAt: new Date(row.occurred_at) }))
  }
}

function toClaimed(row: Record<string, unknown>): ClaimedDelivery {
  return {
    id: String(row.id),
    endpointId: String(row.endpoint_id),
    eventId: String(row.event_id),
    attempts: Number(row.attempts),
    firstAttemptAt: row.first_attempt_at ? new Date(row.first_attempt_at as string) : null,
    event: {
      id: String(row.event_id),
      type: String(row.type),
      subjectType: String(row.subject_type),
      subjectId: String(row.subject_id),
      payload: row.payload as Record<string, unknown>,
      occurredAt: new Date(row.occurred_at as string),
    },
  }
}

const NIL_UUID = '00000000-0000-0000-0000-000000000000'

/** The position just after one: the next uuid in the same transaction (uuids compare as 128-bit numbers). */
function positionAfter(position: FeedPosition): FeedPosition {
  const next = BigInt(`0x${position.id.replaceAll('-', '')}`) + 1n
  if (next >> 128n) return { txId: position.txId + 1, id: NIL_UUID }
  const hex = next.toString(16).padStart(32, '0')
  return { txId: position.txId, id: `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}` }
}
