import { randomUUID } from 'node:crypto'
import { sql } from 'drizzle-orm'
import { mailboxRequestSlots as slots } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'
import { GRAPH_LIMITS } from '../../graph/limits.ts'
import { LocalMailboxGate, mailboxKey, mailboxPaused, type GateClock, type MailboxGate } from '../../graph/mailbox-gate.ts'

export interface SharedMailboxGateOptions {
  /** A slot whose holder never gave it back comes free after this long (over Graph's request timeout). */
  holdMs?: number
  /** How long a request waits for a slot held by other instances before it is refused as THROTTLED. */
  waitMs?: number
  /** Between looks at a mailbox whose slots other instances hold. */
  pollMs?: number
  clock?: GateClock
}

const ph = (name: string) => sql.placeholder(name)

/**
 * The gate every instance shares through the database: this process's own requests queue
 * in a LocalMailboxGate first, so the database is asked only for a slot this process can
 * use, in one statement to take it and one to give it back.
 */
export class SharedMailboxGate implements MailboxGate {
  private readonly local: LocalMailboxGate
  private readonly holdMs: number
  private readonly waitMs: number
  private readonly pollMs: number
  private readonly clock: GateClock
  private readonly takeSlot
  private readonly slotState
  private readonly createSlots
  private readonly giveBack
  private readonly pauseRows

  constructor(db: Db, options: SharedMailboxGateOptions = {}) {
    this.holdMs = options.holdMs ?? 60_000
    this.waitMs = options.waitMs ?? 30_000
    this.pollMs = options.pollMs ?? 50
    this.clock = options.clock ?? { now: () => Date.now() }
    this.local = new LocalMailboxGate({ holdMs: this.holdMs, clock: this.clock })
    const now = sql`${ph('now')}::timestamptz`
    this.takeSlot = db
      .update(slots)
      .set({ holder: sql`${ph('holder')}`, heldUntil: sql`${ph('until')}::timestamptz` })
      .where(
        sql`(${slots.mailbox}, ${slots.slot}) = (select free.mailbox, free.slot from ${slots} free
          where free.mailbox = ${ph('mailbox')} and (free.held_until is null or free.held_until <= ${now})
            and (free.paused_until is null or free.paused_until <= ${now})
          order by free.slot limit 1 for update skip locked)`,
      )
      .returning({ slot: slots.slot })
      .prepare('mailbox_gate_take')
    this.slotState = db
      .select({ slots: sql<number>`count(*)::int`, pausedUntilMs: sql<number | null>`(extract(epoch from max(${slots.pausedUntil})) * 1000)::float8` })
      .from(slots)
      .where(sql`${slots.mailbox} = ${ph('mailbox')}`)
      .prepare('mailbox_gate_state')
    this.createSlots = db
      .insert(slots)
      .select(sql`select ${ph('mailbox')}::text, slot::smallint, null, null, null from generate_series(0, ${GRAPH_LIMITS.concurrentRequestsPerMailbox - 1}) slot`)
      .onConflictDoNothing()
      .prepare('mailbox_gate_create')
    this.giveBack = db
      .update(slots)
      .set({ holder: null, heldUntil: null })
      .where(sql`${slots.mailbox} = ${ph('mailbox')} and ${slots.slot} = ${ph('slot')} and ${slots.holder} = ${ph('holder')}`)
      .prepare('mailbox_gate_give_back')
    this.pauseRows = db
      .update(slots)
      .set({ pausedUntil: sql`${ph('until')}::timestamptz` })
      .where(sql`${slots.mailbox} = ${ph('mailbox')} and (${slots.pausedUntil} is null or ${slots.pausedUntil} < ${ph('until')}::timestamptz)`)
      .prepare('mailbox_gate_pause')
  }

  async enter(mailbox: string): Promise<() => Promise<void>> {
    const releaseLocal = await this.local.enter(mailbox)
    const key = mailboxKey(mailbox)
    const holder = randomUUID()
    let slot: number
    try {
      slot = await this.take(mailbox, key, holder)
    } catch (error) {
      await releaseLocal()
      throw error
    }
    let open = true
    return async () => {
      if (!open) return
      open = false
      try {
        await this.giveBack.execute({ mailbox: key, slot, holder })
      } finally {
        // Even when the database is unreachable: the row then comes free at heldUntil.
        await releaseLocal()
      }
    }
  }

  async pause(mailbox: string, until: Date): Promise<void> {
    await this.local.pause(mailbox, until)
    await this.pauseRows.execute({ mailbox: mailboxKey(mailbox), until: until.toISOString() })
  }

  private async take(mailbox: string, key: string, holder: string): Promise<number> {
    const deadline = Date.now() + this.waitMs
    for (;;) {
      const now = this.clock.now()
      const [taken] = await this.takeSlot.execute({ mailbox: key, holder, now: new Date(now).toISOString(), until: new Date(now + this.holdMs).toISOString() })
      if (taken) return taken.slot
      const [state] = await this.slotState.execute({ mailbox: key })
      if (!state || state.slots === 0) {
        await this.createSlots.execute({ mailbox: key })
        continue
      }
      const pausedUntil = state.pausedUntilMs ?? 0
      if (pausedUntil > now) {
        await this.local.pause(mailbox, new Date(pausedUntil))
        throw mailboxPaused(mailbox, pausedUntil - now, 'paused')
      }
      if (Date.now() >= deadline) throw mailboxPaused(mailbox, 1_000, 'busy')
      await new Promise((resolve) => setTimeout(resolve, this.pollMs * (0.5 + Math.random())))
    }
  }
}
