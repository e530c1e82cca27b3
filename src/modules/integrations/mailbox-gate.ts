import { randomUUID } from 'node:crypto'
import { and, isNotNull, sql } from 'drizzle-orm'
import { mailboxRequestSlots as slots } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'
import { heldByAny } from '../../workers/liveness.ts'
import { MailboxError } from '../../graph/errors.ts'
import { GRAPH_LIMITS } from '../../graph/limits.ts'
import { LocalMailboxGate, mailboxKey, mailboxPaused, type GateClock, type MailboxGate } from '../../graph/mailbox-gate.ts'

export interface SharedMailboxGateOptions {
  /** A slot whose holder never gave it back comes free after this long (over Graph's request timeout). */
  holdMs?: number
  /** How long a request waits for a slot before it is refused as THROTTLED (busy). */
  waitMs?: number
  /** Between looks at a mailbox whose slots other instances hold. */
  pollMs?: number
  clock?: GateClock
  /** The instance the slots are held under (`<instanceId>/<request>`); a new id unless given. */
  instanceId?: string
}

const ph = (name: string) => sql.placeholder(name)

/**
 * The gate every instance shares through the database: this process's own requests queue
 * in a LocalMailboxGate first, so the database is asked only for a slot this process can
 * use, in one statement to take it and one to give it back. An instance that finds every
 * slot busy marks the mailbox wanted, and the others leave it the next free slot, so an
 * instance with a backlog cannot keep a mailbox to itself.
 */
export class SharedMailboxGate implements MailboxGate {
  private readonly local: LocalMailboxGate
  private readonly instance: string
  private readonly holdMs: number
  private readonly waitMs: number
  private readonly pollMs: number
  private readonly clock: GateClock
  /** Mailboxes this instance marked wanted, to clear once it has a slot. */
  private readonly wanting = new Set<string>()
  private readonly takeSlot
  private readonly slotState
  private readonly createSlots
  private readonly giveBack
  private readonly pauseRows
  private readonly markWanted
  private readonly clearWanted

  constructor(db: Db, options: SharedMailboxGateOptions = {}) {
    this.instance = options.instanceId ?? randomUUID()
    this.holdMs = options.holdMs ?? 60_000
    this.waitMs = options.waitMs ?? 30_000
    this.pollMs = options.pollMs ?? 50
    this.clock = options.clock ?? { now: () => Date.now() }
    this.local = new LocalMailboxGate({ holdMs: this.holdMs, waitMs: this.waitMs, clock: this.clock })
    const now = sql`${ph('now')}::timestamptz`
    this.takeSlot = db
      .update(slots)
      .set({ holder: sql`${ph('holder')}`, heldUntil: sql`${ph('until')}::timestamptz` })
      .where(
        sql`(${slots.mailbox}, ${slots.slot}) = (select free.mailbox, free.slot from ${slots} free
          where free.mailbox = ${ph('mailbox')} and (free.held_until is null or free.held_until <= ${now})
            and (free.paused_until is null or free.paused_until <= ${now})
            and not exists (select 1 from ${slots} wanted where wanted.mailbox = free.mailbox and wanted.slot = 0
              and wanted.wanted_by <> ${ph('instance')} and wanted.wanted_until > ${now})
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
      .select(sql`select ${ph('mailbox')}::text, slot::smallint, null, null, null, null, null from generate_series(0, ${GRAPH_LIMITS.concurrentRequestsPerMailbox - 1}) slot`)
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
    // One waiting instance at a time: another's mark is left alone until it runs out.
    this.markWanted = db
      .update(slots)
      .set({ wantedBy: sql`${ph('instance')}`, wantedUntil: sql`${ph('until')}::timestamptz` })
      .where(sql`${slots.mailbox} = ${ph('mailbox')} and ${slots.slot} = 0 and (${slots.wantedBy} is null or ${slots.wantedBy} = ${ph('instance')} or ${slots.wantedUntil} <= ${now})`)
      .prepare('mailbox_gate_want')
    this.clearWanted = db
      .update(slots)
      .set({ wantedBy: null, wantedUntil: null })
      .where(sql`${slots.mailbox} = ${ph('mailbox')} and ${slots.slot} = 0 and ${slots.wantedBy} = ${ph('instance')}`)
      .prepare('mailbox_gate_unwant')
  }

  async enter(mailbox: string): Promise<() => Promise<void>> {
    const deadline = Date.now() + this.waitMs
    const releaseLocal = await this.local.enter(mailbox, this.waitMs)
    const key = mailboxKey(mailbox)
    const holder = `${this.instance}/${randomUUID()}`
    let slot: number
    try {
      slot = await this.take(mailbox, key, holder, deadline)
    } catch (error) {
      await releaseLocal()
      if (error instanceof MailboxError) throw error
      throw new MailboxError('REQUEST_SLOTS_UNAVAILABLE', `No request slot of ${mailbox} could be taken: the database did not answer.`, { cause: error })
    }
    let open = true
    return async () => {
      if (!open) return
      open = false
      // Best effort: a row not given back comes free at heldUntil, and the request's own outcome stands.
      await this.giveBack.execute({ mailbox: key, slot, holder }).catch(() => undefined)
      await releaseLocal()
    }
  }

  async pause(mailbox: string, until: Date): Promise<void> {
    await this.local.pause(mailbox, until)
    // Best effort: this instance keeps the pause even when the others cannot be told.
    await this.pauseRows.execute({ mailbox: mailboxKey(mailbox), until: until.toISOString() }).catch(() => undefined)
  }

  private async take(mailbox: string, key: string, holder: string, deadline: number): Promise<number> {
    for (;;) {
      const now = this.clock.now()
      const [taken] = await this.takeSlot.execute({
        mailbox: key,
        holder,
        instance: this.instance,
        now: new Date(now).toISOString(),
        until: new Date(now + this.holdMs).toISOString(),
      })
      if (taken) {
        if (this.wanting.delete(key)) await this.clearWanted.execute({ mailbox: key, instance: this.instance })
        return taken.slot
      }
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
      await this.markWanted.execute({ mailbox: key, instance: this.instance, now: new Date(now).toISOString(), until: new Date(now + this.pollMs * 3).toISOString() })
      this.wanting.add(key)
      await new Promise((resolve) => setTimeout(resolve, this.pollMs * (0.5 + Math.random())))
    }
  }
}

/** Frees the request slots, and the claims to the next free one, that dead instances held (see Liveness). */
export async function releaseSlotsOf(tx: Db, deadInstances: string[]): Promise<number> {
  const freed = await tx
    .update(slots)
    .set({ holder: null, heldUntil: null })
    .where(and(isNotNull(slots.holder), heldByAny(slots.holder, deadInstances)))
    .returning({ slot: slots.slot })
  await tx.update(slots).set({ wantedBy: null, wantedUntil: null }).where(and(isNotNull(slots.wantedBy), heldByAny(slots.wantedBy, deadInstances)))
  return freed.length
}
