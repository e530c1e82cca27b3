import { MailboxError } from './errors.ts'
import { GRAPH_LIMITS } from './limits.ts'

/**
 * Graph allows 4 requests in flight per app and mailbox, and a Retry-After holds off the
 * whole mailbox. Every request MailboxClient makes to a mailbox passes a gate, whichever
 * direction it serves (sending, sync, after-processing, connection tests).
 */
export interface MailboxGate {
  /**
   * Waits for one of the mailbox's request slots and answers the function that gives it
   * back (it never throws). Throws THROTTLED (with retryAfterSeconds) while the mailbox is
   * paused, or when no slot came free in time; REQUEST_SLOTS_UNAVAILABLE when the slots
   * cannot be read. Either way no request was sent.
   */
  enter(mailbox: string): Promise<() => Promise<void>>
  /** Graph said Retry-After: no request goes to the mailbox before `until` (best effort, never throws). */
  pause(mailbox: string, until: Date): Promise<void>
}

export interface GateClock {
  now(): number
}

const realClock: GateClock = { now: () => Date.now() }

/** The error a gate refuses with; the request never left, so it is safe to retry as is. */
export function mailboxPaused(mailbox: string, retryAfterMs: number, reason: 'paused' | 'busy'): MailboxError {
  const retryAfterSeconds = Math.max(1, Math.ceil(retryAfterMs / 1000))
  const message =
    reason === 'paused'
      ? `Microsoft Graph asked for a pause on ${mailbox} (Retry-After); no request goes to it for ${retryAfterSeconds} s more.`
      : `Every request slot of ${mailbox} stayed busy (Graph allows ${GRAPH_LIMITS.concurrentRequestsPerMailbox} at once); try again in ${retryAfterSeconds} s.`
  return new MailboxError('THROTTLED', message, { retryAfterSeconds })
}

/** The key Graph counts under: a mailbox's address, whatever its case. */
export function mailboxKey(mailbox: string): string {
  return mailbox.trim().toLowerCase()
}

/**
 * One process's share of the limit: at most `slots` requests per mailbox at once, waiting in
 * order, and the mailbox's pause. A slot not given back within `holdMs` (a stream nobody
 * read to the end) is given back by itself, so a leak cannot close a mailbox for good.
 */
export class LocalMailboxGate implements MailboxGate {
  private readonly slots: number
  private readonly holdMs: number
  private readonly waitMs: number
  private readonly clock: GateClock
  private readonly held = new Map<string, number>()
  private readonly waiting = new Map<string, (() => void)[]>()
  private readonly pausedUntil = new Map<string, number>()

  constructor(options: { slots?: number; holdMs?: number; waitMs?: number; clock?: GateClock } = {}) {
    this.slots = options.slots ?? GRAPH_LIMITS.concurrentRequestsPerMailbox
    this.holdMs = options.holdMs ?? 60_000
    this.waitMs = options.waitMs ?? 30_000
    this.clock = options.clock ?? realClock
  }

  /** `waitMs`: how long to wait for a slot this process holds (default: the gate's). */
  async enter(mailbox: string, waitMs = this.waitMs): Promise<() => Promise<void>> {
    const key = mailboxKey(mailbox)
    this.throwIfPaused(mailbox, key)
    if ((this.held.get(key) ?? 0) >= this.slots) {
      await new Promise<void>((resolve, reject) => {
        const queue = this.waiting.get(key) ?? []
        const waiter = () => {
          clearTimeout(timer)
          resolve()
        }
        const timer = setTimeout(() => {
          const left = this.waiting.get(key)?.filter((other) => other !== waiter) ?? []
          if (left.length > 0) this.waiting.set(key, left)
          else this.waiting.delete(key)
          reject(mailboxPaused(mailbox, 1_000, 'busy'))
        }, waitMs)
        queue.push(waiter)
        this.waiting.set(key, queue)
      })
      // The slot was handed over on release; a pause may have begun while waiting.
      try {
        this.throwIfPaused(mailbox, key)
      } catch (error) {
        this.leave(key)
        throw error
      }
    } else {
      this.held.set(key, (this.held.get(key) ?? 0) + 1)
    }
    let open = true
    const release = () => {
      if (!open) return
      open = false
      clearTimeout(timer)
      this.leave(key)
    }
    const timer = setTimeout(release, this.holdMs)
    timer.unref()
    return async () => release()
  }

  async pause(mailbox: string, until: Date): Promise<void> {
    const key = mailboxKey(mailbox)
    if ((this.pausedUntil.get(key) ?? 0) < until.getTime()) this.pausedUntil.set(key, until.getTime())
  }

  /** Milliseconds the mailbox stays paused (0: not paused). */
  pausedFor(mailbox: string): number {
    const key = mailboxKey(mailbox)
    const until = this.pausedUntil.get(key)
    if (until === undefined) return 0
    const left = until - this.clock.now()
    if (left <= 0) this.pausedUntil.delete(key)
    return Math.max(0, left)
  }

  private throwIfPaused(mailbox: string, key: string): void {
    const left = this.pausedFor(key)
    if (left > 0) throw mailboxPaused(mailbox, left, 'paused')
  }

  /** Hands the slot to the next waiter, or frees it. */
  private leave(key: string): void {
    const next = this.waiting.get(key)?.shift()
    if (next) {
      if (this.waiting.get(key)!.length === 0) this.waiting.delete(key)
      next()
      return
    }
    const left = (this.held.get(key) ?? 1) - 1
    if (left > 0) this.held.set(key, left)
    else this.held.delete(key)
  }
}
