import { hostname } from 'node:os'
import { inArray, sql, type SQLWrapper } from 'drizzle-orm'
import type { FastifyBaseLogger } from 'fastify'
import { serverInstances } from '../../db/schema.ts'
import type { Db } from '../database/index.ts'
import type { LoopJob } from './runner.ts'

export const HEARTBEAT_INTERVAL_MS = 5_000
/** A process that has not beaten for this long is taken for dead (six beats missed). */
export const DEAD_AFTER_MS = 30_000

/**
 * Frees, inside the reaper's transaction, what the dead instances held (leases, request
 * slots): whatever their holder strings start with `<instance id>/`. A freed lease ends at
 * RELEASED (long past, whatever any instance's clock says). Returns how many it freed.
 */
export type Release = (tx: Db, deadInstances: string[]) => Promise<number>

/** Where a freed lease or slot hold ends: before any clock's now. */
export const RELEASED = new Date(0)

const ph = (name: string) => sql.placeholder(name)

/** The part of a lease owner or slot holder before the first `/`: the instance that holds it. */
export function heldByAny(column: SQLWrapper, instances: string[]) {
  return inArray(sql`split_part(${column}, '/', 1)`, instances)
}

/**
 * This process's heartbeat, and the reaper of the dead: every round it beats, then frees
 * what instances that stopped beating held, so that work a kill -9 left behind is taken
 * over within DEAD_AFTER_MS instead of when each lease runs out (up to 2 minutes). What the
 * dead held was fenced by its lease all along, so freeing it early is as safe as an expiry.
 * On an embedded database this process is the only one: every other instance is dead at start.
 */
export class Liveness implements LoopJob {
  readonly instanceId: string
  private readonly db: Db
  private readonly exclusive: boolean
  private readonly log: FastifyBaseLogger
  private readonly clock: (() => Date) | undefined
  private readonly releases = new Map<string, { release: Release; freed?: () => void }>()
  private readonly beat
  private beaten = false

  constructor(deps: { db: Db; instanceId: string; exclusive: boolean; log: FastifyBaseLogger; clock?: () => Date }) {
    this.db = deps.db
    this.instanceId = deps.instanceId
    this.exclusive = deps.exclusive
    this.log = deps.log
    this.clock = deps.clock
    if (deps.instanceId.includes('/')) throw new Error('An instance id cannot contain "/": holders are matched by the part before it')
    // The database's clock, not this host's: instances whose clocks disagree still agree on who is silent.
    // (A test's clock, when given, stands in for it.)
    this.beat = deps.db
      .insert(serverInstances)
      .values({
        id: ph('id'),
        startedAt: sql`coalesce(${ph('now')}::timestamptz, now())`,
        heartbeatAt: sql`coalesce(${ph('now')}::timestamptz, now())`,
        hostname: ph('hostname'),
        pid: ph('pid'),
      })
      .onConflictDoUpdate({ target: serverInstances.id, set: { heartbeatAt: sql`excluded.heartbeat_at` } })
      .returning({ inserted: sql<boolean>`(xmax = 0)` })
      .prepare('liveness_beat')
  }

  /** The holder string of this process's `role` (a worker, the request gate). */
  owner(role: string): string {
    return `${this.instanceId}/${role}`
  }

  /**
   * Modules free what they hold under instance ids here (registered once per app); `freed`
   * runs after the reap committed, when this release freed anything (a loop to wake).
   */
  onDead(name: string, release: Release, freed?: () => void): void {
    this.releases.set(name, { release, freed })
  }

  async round(): Promise<{ started: number }> {
    const now = this.clock?.().toISOString() ?? null
    const [beat] = await this.beat.execute({ id: this.instanceId, now, hostname: hostname(), pid: process.pid })
    if (beat?.inserted && this.beaten) {
      this.log.error({ instanceId: this.instanceId }, 'this instance was taken for dead (silent for 30 s: a stalled event loop, or the database out of reach); others may have taken over its work, which its leases fence')
    }
    await this.reap(!this.beaten && this.exclusive)
    this.beaten = true
    return { started: 0 }
  }

  /** Frees what dead instances held and forgets them; `everyoneElse` when no other process can be running. */
  async reap(everyoneElse = false): Promise<string[]> {
    const now = this.clock ? sql`${this.clock().toISOString()}::timestamptz` : sql`now()`
    const silentFor = `${everyoneElse ? -DEAD_AFTER_MS : DEAD_AFTER_MS} milliseconds`
    const freed: Record<string, number> = {}
    const dead = await this.db.transaction(async (tx) => {
      const dead = (
        await tx
          .select({ id: serverInstances.id })
          .from(serverInstances)
          .where(sql`${serverInstances.heartbeatAt} < ${now} - ${silentFor}::interval and ${serverInstances.id} <> ${this.instanceId}`)
          .for('update', { skipLocked: true })
      ).map((row) => row.id)
      if (dead.length === 0) return []
      // Never long: a reap that waits on locks must not hold up this instance's own next beat.
      await tx.execute(sql`set local lock_timeout = '2s'`)
      await tx.execute(sql`set local statement_timeout = '10s'`)
      for (const [name, { release }] of this.releases) freed[name] = await release(tx, dead)
      await tx.delete(serverInstances).where(inArray(serverInstances.id, dead))
      this.log.warn({ deadInstances: dead, freed }, 'instances stopped beating: what they held is free for the others')
      return dead
    })
    for (const [name, { freed: wake }] of this.releases) if ((freed[name] ?? 0) > 0) wake?.()
    return dead
  }

  /** A graceful stop (after the workers stopped): the others may free what this process still holds at once. */
  async retire(): Promise<void> {
    if (!this.beaten) return
    await this.db
      .update(serverInstances)
      .set({ heartbeatAt: new Date(0) })
      .where(sql`${serverInstances.id} = ${this.instanceId}`)
      .catch((error: unknown) => this.log.warn({ err: error }, 'could not mark this instance stopped; the others will take it for dead in 30 s'))
  }
}
