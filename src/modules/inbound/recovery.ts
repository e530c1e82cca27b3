import type { LoopJob } from '../../workers/runner.ts'
import type { InboundService } from './service.ts'

/** An email still `received` this long after it was stored is taken to be abandoned by a crash. */
export const ABANDONED_AFTER_MS = 30_000
export const RECOVERY_INTERVAL_MS = 60_000

/** Finishes emails a crash left between storing and processing; at start and every minute. */
export class InboundRecovery implements LoopJob {
  private readonly inbound: InboundService

  constructor(inbound: InboundService) {
    this.inbound = inbound
  }

  /** One pass; how many emails it finished. */
  async runOnce(options: { olderThanMs?: number } = {}): Promise<number> {
    let total = 0
    for (;;) {
      const finished = await this.inbound.recoverUnfinished({ olderThanMs: options.olderThanMs ?? ABANDONED_AFTER_MS, limit: 100 })
      total += finished
      if (finished < 100) return total
    }
  }

  async round(): Promise<{ started: number }> {
    await this.runOnce()
    return { started: 0 }
  }
}
