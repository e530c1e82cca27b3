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
 * slots): whatever their holder strings start with `<instance id>/`. Returns how many it freed.
 */
export type Release = (tx: Db, deadInstances: string[], now: Date) => Promise<number>

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
  private readonly now: () => Date
  private readonly releases = new Map<string, Release>()
  private readonly startedAt: Date
  private readonly beat
  private beaten = false

  constructor(deps: { db: Db; instanceId: string; exclusive: boolean; log: FastifyBaseLogger; clock?: () => Date }) {
    this.db = deps.db
    this.instanceId = deps.instanceId
    this.exclusive = deps.exclusive
    this.log = deps.log
    this.now = deps.clock ?? (() => new Date())
    this.startedAt = this.now()
    this.beat = deps.db
      .insert(serverInstances)
      .values({ id: ph('id'), startedAt: sql`${ph('startedAt')}::timestamptz`, heartbeatAt: sql`${ph('now')}::timestamptz`, hostname: ph('hostname'), pid: ph('pid') })
      .onConflictDoUpdate({ target: serverInstances.id, set: { heartbeatAt: sql`excluded.heartbeat_at` } })
      .prepare('liveness_beat')
  }

  /** The holder string of this process's `role` (a worker, the request gate). */
  owner(role: string): string {
    return `${this.instanceId}/${role}`
  }

  /** Modules free what they hold under instance ids here (registered once per app). */
  onDead(name: string, release: Release): void {
    this.releases.set(name, release)
  }

  async round(): Promise<{ started: number }> {
    const now = this.now()
    await this.beat.execute({ id: this.instanceId, startedAt: this.startedAt.toISOString(), now: now.toISOString(), hostname: hostname(), pid: process.pid })
    const first = !this.beaten
    this.beaten = true
    await this.reap(now, first && this.exclusive)
    return { started: 0 }
  }

  /** Frees what dead instances held and forgets them; `everyoneElse` when no other process can be running. */
  async reap(now: Date, everyoneElse = false): Promise<string[]> {
    const cutoff = new Date(now.getTime() + (everyoneElse ? 1 : -1) * DEAD_AFTER_MS)
    return this.db.transaction(async (tx) => {
      const dead = (
        await tx
          .select({ id: serverInstances.id })
          .from(serverInstances)
          .where(sql`${serverInstances.heartbeatAt} < ${cutoff.toISOString()}::timestamptz and ${serverInstances.id} <> ${this.instanceId}`)
          .for('update', { skipLocked: true })
      ).map((row) => row.id)
      if (dead.length === 0) return []
      const freed: Record<string, number> = {}
      for (const [name, release] of this.releases) freed[name] = await release(tx, dead, now)
      await tx.delete(serverInstances).where(inArray(serverInstances.id, dead))
      this.log.warn({ deadInstances: dead, freed }, 'instances stopped beating: what they held is free for the others')
      return dead
    })
  }

  /** A graceful stop: the others may free what this process still holds at once. */
  async retire(): Promise<void> {
    if (!this.beaten) return
    await this.db
      .update(serverInstances)
      .set({ heartbeatAt: new Date(0) })
      .where(sql`${serverInstances.id} = ${this.instanceId}`)
      .catch((error: unknown) => this.log.warn({ err: error }, 'could not mark this instance stopped; the others will take it for dead in 30 s'))
  }
}
