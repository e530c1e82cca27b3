import type { FastifyBaseLogger } from 'fastify'
import type { LoopJob } from './runner.ts'

export const DEFAULT_EVENT_RETENTION_DAYS = 30

/** The moment before which events and ended webhook deliveries are removed (EVENT_RETENTION_DAYS). */
export function eventRetentionCutoff(now: Date, days = DEFAULT_EVENT_RETENTION_DAYS): Date {
  return new Date(now.getTime() - days * 86_400_000)
}

/**
 * Runs a delete a batch at a time until a batch comes back short, at most `maxBatches` times
 * (the next run goes on), so no chore holds locks on a big table for long; how many it removed.
 */
export async function removeInBatches(remove: (batch: number) => Promise<number>, batch = 5_000, maxBatches = 20): Promise<number> {
  let total = 0
  for (let round = 0; round < maxBatches; round++) {
    const removed = await remove(batch)
    total += removed
    if (removed < batch) break
  }
  return total
}

/** Removes what nobody will use again; returns how many it removed. */
export type Chore = (now: Date) => Promise<number>

/**
 * Periodic clean-up that modules register chores with (staged content nobody took, expired
 * idempotency keys, ...). Every chore is a delete that any number of instances may run at once.
 */
export class Housekeeping implements LoopJob {
  private readonly chores = new Map<string, Chore>()
  private readonly log: FastifyBaseLogger

  constructor(log: FastifyBaseLogger) {
    this.log = log
  }

  add(name: string, chore: Chore): void {
    this.chores.set(name, chore)
  }

  /** Runs every chore once; what each removed, by name. */
  async run(now = new Date()): Promise<Record<string, number>> {
    const removed: Record<string, number> = {}
    for (const [name, chore] of this.chores) removed[name] = await chore(now)
    return removed
  }

  async round(): Promise<{ started: number }> {
    const removed = await this.run()
    if (Object.values(removed).some((count) => count > 0)) this.log.info(removed, 'housekeeping removed expired data')
    return { started: 0 }
  }
}
