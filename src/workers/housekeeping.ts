import type { FastifyBaseLogger } from 'fastify'
import type { LoopJob } from './runner.ts'

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
