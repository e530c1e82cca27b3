import type { Db } from '../../database/index.ts'
import { comparePositions, type FeedPosition } from './position.ts'
import type { DomainEventRepository } from './repository.ts'

interface Waiter {
  after: FeedPosition
  wake: () => void
}

/**
 * Long polls of one process share a watch: one statement every `pollMs` asks for the newest
 * event readers may see, and wakes the readers it is newer than (each then reads its page).
 * Without it every waiting reader asked on its own, four times a second: with hundreds of
 * them, that was most of the process's work on embedded PGlite.
 */
export class FeedWatch {
  private readonly db: Db
  private readonly repository: DomainEventRepository
  private readonly pollMs: number
  private readonly waiters = new Set<Waiter>()
  private timer: NodeJS.Timeout | undefined

  constructor(db: Db, repository: DomainEventRepository, pollMs: number) {
    this.db = db
    this.repository = repository
    this.pollMs = pollMs
  }

  /** Resolves once an event after `after` can be read, at `untilMs`, or when `signal` aborts. */
  wait(after: FeedPosition, untilMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const finish = () => {
        clearTimeout(deadline)
        signal?.removeEventListener('abort', finish)
        this.waiters.delete(waiter)
        resolve()
      }
      const waiter: Waiter = { after, wake: finish }
      const deadline = setTimeout(finish, Math.max(0, untilMs - Date.now()))
      if (signal?.aborted) return finish()
      signal?.addEventListener('abort', finish, { once: true })
      this.waiters.add(waiter)
      this.schedule()
    })
  }

  private schedule(): void {
    if (this.timer || this.waiters.size === 0) return
    this.timer = setTimeout(() => void this.look(), this.pollMs)
    this.timer.unref()
  }

  private async look(): Promise<void> {
    try {
      const newest = await this.repository.newestVisible(this.db)
      if (newest) for (const waiter of [...this.waiters]) if (comparePositions(newest, waiter.after) > 0) waiter.wake()
    } catch {
      // The database did not answer this time: the readers keep waiting, and the next look asks again.
    } finally {
      this.timer = undefined
      this.schedule()
    }
  }
}
