/**
 * Sustained send + receive load through a Rig, and the totals that show whether anything
 * was lost or doubled: what clients asked Mailgate to send against what reached the
 * recipients' mailboxes, and what customers wrote against the work Mailgate requested.
 */
import { randomBytes } from 'node:crypto'
import { DEMO } from './world.ts'
import type { Rig } from './rig.ts'

export interface LoadOptions {
  /** Messages clients ask Mailgate to send (POST /v1/messages, with an Idempotency-Key). */
  sends: number
  /** Customer mails delivered into the support mailbox, for Mailgate to sync and route. */
  arrivals: number
  /** Of each kind, per second. */
  perSecond: number
  /** Sends in flight at once (a client retries each until it is answered). */
  concurrency?: number
  /** How long one send may keep being retried (through restarts) before it counts as an error. */
  giveUpAfterMs?: number
}

const TERMINAL = new Set(['sent', 'failed', 'uncertain', 'bounced', 'cancelled'])
/** The event each final status of a message is announced with. */
const OUTCOME_EVENTS: Record<string, string> = { sent: 'message.sent', failed: 'message.failed', uncertain: 'message.uncertain', bounced: 'message.bounced' }

interface MessageView {
  id: string
  status: string
  subject: string
  lastError: { code: string; message: string } | null
  createdAt: string
  sentAt: string | null
}
interface InboundView {
  id: string
  outcome: string
  internetMessageId: string | null
  receivedAt: string
  processedAt: string | null
}
interface FeedEvent {
  id: string
  type: string
  subject: { type: string; id: string }
  data: Record<string, unknown>
}

export interface Totals {
  send: {
    asked: number
    accepted: number
    /** Send requests that never got a 202 (every retry failed): an API error. */
    notAccepted: number
    byStatus: Record<string, number>
    /** Messages Mailgate holds beyond one per Idempotency-Key. */
    extraRecords: number
    /** `sent` with no copy in the recipient's mailbox, or not finished at all. */
    lost: number
    /** More than one copy delivered. */
    doubled: number
    /** `uncertain` without a reason. */
    uncertainWithoutReason: number
    /** `uncertain` messages whose copy did arrive (fine: uncertain means "maybe"). */
    uncertainDelivered: number
  }
  receive: {
    delivered: number
    /** Stored and processed (an outcome other than `received`) exactly once. */
    processedOnce: number
    /** Not stored, or stored and never processed. */
    lost: number
    /** Stored more than once with an outcome other than `duplicate`. */
    doubled: number
    /** Recorded again as `duplicate` (delta or a notification brought it twice; dedupe caught it). */
    caughtDuplicates: number
    workItemRequests: number
    duplicateWorkItemRequests: number
  }
  events: {
    /** Events in the feed about this run's messages and emails. */
    inFeed: number
    /** Outcomes with no event in the feed (a message sent without message.sent, an email without work_item.requested). */
    missingFromFeed: number
    duplicatedInFeed: number
    /** Feed events the webhook receiver never got. */
    missingAtWebhook: number
    /** Feed events the receiver got more than once (at-least-once delivery after a crash). */
    redeliveredAtWebhook: number
  }
}

/** Drives the load; `totals` then checks it. */
export class MixedLoad {
  readonly runId = randomBytes(4).toString('hex')
  /** Idempotency-Key -> message id. */
  readonly accepted = new Map<string, string>()
  readonly notAccepted: string[] = []
  /** Milliseconds each answered API request took (a request cut off by a crash is not counted). */
  readonly latencies: number[] = []
  /** Client retries (connection refused or reset, 5xx) during the run. */
  retries = 0
  /** Requests answered with an unexpected status: what the API should never do. */
  readonly errors: string[] = []
  readonly delivered: string[] = []
  /** When each delivered mail (by Message-ID) landed in the mailbox, epoch ms. */
  readonly deliveredAt = new Map<string, number>()
  private readonly rig: Rig
  private readonly options: Required<LoadOptions>

  constructor(rig: Rig, options: LoadOptions) {
    this.rig = rig
    this.options = { concurrency: 8, giveUpAfterMs: 180_000, ...options }
  }

  subjectOf(index: number): string {
    return `Load ${this.runId} #${index}`
  }

  async run(): Promise<void> {
    await Promise.all([this.sendAll(), this.deliverAll()])
  }

  private async sendAll(): Promise<void> {
    const { sends, perSecond, concurrency } = this.options
    const started = Date.now()
    let next = 0
    const worker = async () => {
      while (next < sends) {
        const index = next++
        const due = started + (index * 1000) / perSecond
        if (due > Date.now()) await sleep(due - Date.now())
        await this.sendOne(index)
      }
    }
    await Promise.all(Array.from({ length: concurrency }, worker))
  }

  private async sendOne(index: number): Promise<void> {
    const key = `${this.runId}-${index}`
    const customer = this.rig.customers[index % this.rig.customers.length]!
    const body = JSON.stringify({
      from: index % 2 === 0 ? DEMO.alias : DEMO.outgoing,
      to: [customer],
      subject: this.subjectOf(index),
      workItemRef: `L-${index}`,
      body: { contentType: 'text', content: `Message ${index} of run ${this.runId}.` },
    })
    const deadline = Date.now() + this.options.giveUpAfterMs
    while (Date.now() < deadline) {
      const started = performance.now()
      let instance
      try {
        instance = this.rig.live()
      } catch {
        await sleep(200)
        continue
      }
      try {
        const response = await fetch(`${instance.url}/v1/messages`, {
          method: 'POST',
          headers: { authorization: `Bearer ${this.rig.state.adminKey}`, 'content-type': 'application/json', 'idempotency-key': key },
          body,
          signal: AbortSignal.timeout(30_000),
        })
        const text = await response.text()
        this.latencies.push(performance.now() - started)
        if (response.status === 202) {
          this.accepted.set(key, (JSON.parse(text) as { id: string }).id)
          return
        }
        if (response.status < 500) {
          this.errors.push(`POST /v1/messages answered ${response.status}: ${text.slice(0, 300)}`)
          this.notAccepted.push(key)
          return
        }
      } catch {
        // Refused or cut off by a crash: the same key again, on whichever instance is up.
      }
      this.retries++
      await sleep(250)
    }
    this.notAccepted.push(key)
  }

  private async deliverAll(): Promise<void> {
    const { arrivals, perSecond } = this.options
    const started = Date.now()
    for (let index = 0; index < arrivals; index++) {
      const due = started + (index * 1000) / perSecond
      if (due > Date.now()) await sleep(due - Date.now())
      // Mailgate shows Message-IDs without their angle brackets.
      const internetMessageId = `${this.runId}.${index}@fabrikam.example`
      await this.rig.standIn.deliver(DEMO.incoming, {
        from: this.rig.customers[index % this.rig.customers.length]!,
        to: [DEMO.incoming],
        subject: `Request ${this.runId} #${index}`,
        body: `Customer request ${index}.`,
        internetMessageId: `<${internetMessageId}>`,
      })
      this.delivered.push(internetMessageId)
      this.deliveredAt.set(internetMessageId, Date.now())
    }
  }

  /** Waits until every accepted message has finished and every delivered mail is processed and delivered as events. */
  async settle(timeoutMs = 240_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const { messages, inbound, feed } = await this.read()
      const unfinished = [...this.accepted.values()].filter((id) => !TERMINAL.has(messages.get(id)?.status ?? 'missing')).length
      const ids = new Set(this.delivered)
      const processed = new Set(inbound.filter((row) => row.outcome !== 'received' && ids.has(row.internetMessageId ?? '')).map((row) => row.internetMessageId))
      const unprocessed = this.delivered.length - processed.size
      const undelivered = feed.filter((event) => !this.rig.receiver.events.has(event.id)).length
      if (unfinished === 0 && unprocessed === 0 && undelivered === 0) return
      if (Date.now() > deadline) throw new Error(`Not settled within ${timeoutMs} ms: ${unfinished} messages unfinished, ${unprocessed} mails unprocessed, ${undelivered} events not yet at the webhook`)
      await sleep(1_000)
    }
  }

  /** What Mailgate and the stand-in hold about this run. */
  private async read(): Promise<{ messages: Map<string, MessageView>; inbound: InboundView[]; feed: FeedEvent[] }> {
    const messages = new Map<string, MessageView>()
    for (const item of await this.pages<MessageView>('/v1/messages')) if (item.subject.startsWith(`Load ${this.runId} `)) messages.set(item.id, item)
    const inbound = (await this.pages<InboundView>('/v1/inbound')).filter((item) => item.internetMessageId?.includes(`${this.runId}.`))
    const feed: FeedEvent[] = []
    let after: string | undefined
    for (;;) {
      const page = await this.get<{ items: FeedEvent[]; next: string }>(`/v1/events?limit=500${after ? `&after=${encodeURIComponent(after)}` : ''}`)
      feed.push(...page.items)
      if (page.items.length < 500) break
      after = page.next
    }
    const ours = new Set([...messages.keys(), ...inbound.map((row) => row.id)])
    return { messages, inbound, feed: feed.filter((event) => ours.has(event.subject.id)) }
  }

  private async pages<T>(path: string): Promise<T[]> {
    const items: T[] = []
    let cursor: string | null = null
    do {
      const page: { items: T[]; nextCursor: string | null } = await this.get(`${path}?limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)
      items.push(...page.items)
      cursor = page.nextCursor
    } while (cursor)
    return items
  }

  private async get<T>(path: string): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        const answer = await this.rig.api<T>('GET', path)
        if (answer.status === 200) return answer.body
        if (answer.status < 500 || attempt >= 20) throw new Error(`GET ${path} answered ${answer.status}: ${JSON.stringify(answer.body)}`)
      } catch (error) {
        if (attempt >= 20) throw error
      }
      await sleep(500)
    }
  }

  /**
   * When the run's work finished (epoch ms) and how long it took end to end (ms): each sent
   * message from accepted to sent, each received mail from its arrival in the mailbox to its
   * stored outcome.
   */
  async timings(): Promise<{ sentAt: number[]; sendDelays: number[]; processedAt: number[]; receiveDelays: number[] }> {
    const { messages, inbound } = await this.read()
    const sent = [...messages.values()].filter((message) => message.sentAt)
    const processed = inbound.filter((row) => row.processedAt && row.outcome !== 'duplicate' && this.deliveredAt.has(row.internetMessageId ?? ''))
    return {
      sentAt: sent.map((message) => Date.parse(message.sentAt!)),
      sendDelays: sent.map((message) => Date.parse(message.sentAt!) - Date.parse(message.createdAt)),
      processedAt: processed.map((row) => Date.parse(row.processedAt!)),
      receiveDelays: processed.map((row) => Date.parse(row.processedAt!) - this.deliveredAt.get(row.internetMessageId!)!),
    }
  }

  /** The totals; call after settle (and after the stand-in's own deliveries settled). */
  async totals(): Promise<Totals> {
    await this.rig.standIn.mailSettled()
    const { messages, inbound, feed } = await this.read()
    const copies = new Map<string, number>()
    for (const customer of this.rig.customers) {
      for (const message of this.rig.standIn.folderMessages(customer, 'inbox')) copies.set(message.subject, (copies.get(message.subject) ?? 0) + 1)
    }
    const send: Totals['send'] = {
      asked: this.options.sends,
      accepted: this.accepted.size,
      notAccepted: this.notAccepted.length,
      byStatus: {},
      extraRecords: Math.max(0, messages.size - this.accepted.size),
      lost: 0,
      doubled: 0,
      uncertainWithoutReason: 0,
      uncertainDelivered: 0,
    }
    for (const key of this.accepted.keys()) {
      const index = Number(key.slice(key.lastIndexOf('-') + 1))
      const message = messages.get(this.accepted.get(key)!)
      const status = message?.status ?? 'missing'
      send.byStatus[status] = (send.byStatus[status] ?? 0) + 1
      const arrived = copies.get(this.subjectOf(index)) ?? 0
      if (arrived > 1) send.doubled++
      if ((status === 'sent' && arrived === 0) || !TERMINAL.has(status)) send.lost++
      if (status === 'uncertain' && !message?.lastError?.message) send.uncertainWithoutReason++
      if (status === 'uncertain' && arrived === 1) send.uncertainDelivered++
    }

    const requested = new Map<string, number>()
    for (const event of feed) if (event.type === 'work_item.requested') requested.set(event.subject.id, (requested.get(event.subject.id) ?? 0) + 1)
    const receive: Totals['receive'] = { delivered: this.delivered.length, processedOnce: 0, lost: 0, doubled: 0, caughtDuplicates: 0, workItemRequests: 0, duplicateWorkItemRequests: 0 }
    for (const internetMessageId of this.delivered) {
      const rows = inbound.filter((row) => row.internetMessageId === internetMessageId)
      const kept = rows.filter((row) => row.outcome !== 'duplicate')
      receive.caughtDuplicates += rows.length - kept.length
      if (kept.length > 1) receive.doubled++
      if (kept.length === 0 || kept.every((row) => row.outcome === 'received')) receive.lost++
      else if (kept.length === 1) receive.processedOnce++
      // Every row counts here: one recorded as a duplicate must not have requested work either.
      const requests = rows.reduce((sum, row) => sum + (requested.get(row.id) ?? 0), 0)
      receive.workItemRequests += Math.min(requests, 1)
      if (requests > 1) receive.duplicateWorkItemRequests += requests - 1
    }

    // Each outcome has exactly one event: a message's final status, an email's new work.
    const expected = new Set<string>()
    for (const message of messages.values()) if (OUTCOME_EVENTS[message.status]) expected.add(`${OUTCOME_EVENTS[message.status]} ${message.id}`)
    for (const row of inbound) if (row.outcome === 'requested') expected.add(`work_item.requested ${row.id}`)
    const counted = new Set(['work_item.requested', ...Object.values(OUTCOME_EVENTS)])
    const seen = new Map<string, number>()
    for (const event of feed) {
      if (!counted.has(event.type)) continue
      seen.set(`${event.type} ${event.subject.id}`, (seen.get(`${event.type} ${event.subject.id}`) ?? 0) + 1)
    }
    const events: Totals['events'] = {
      inFeed: feed.length,
      missingFromFeed: [...expected].filter((key) => !seen.has(key)).length,
      duplicatedInFeed: [...seen.values()].filter((count) => count > 1).length,
      missingAtWebhook: feed.filter((event) => !this.rig.receiver.events.has(event.id)).length,
      redeliveredAtWebhook: feed.filter((event) => (this.rig.receiver.events.get(event.id)?.times ?? 0) > 1).length,
    }
    return { send, receive, events }
  }
}

/**
 * kill -9 a running instance at random moments (every `minMs`..`maxMs` after it is ready
 * again) and start it again on the same database, `kills` times or until the rig stops.
 * The waits are returned, to replay a failed run's timing.
 */
export async function killRepeatedly(rig: Rig, options: { kills: number; minMs: number; maxMs: number }): Promise<{ kills: number; waitsMs: number[] }> {
  const waitsMs: number[] = []
  while (waitsMs.length < options.kills && !rig.stopped) {
    const wait = Math.round(options.minMs + Math.random() * (options.maxMs - options.minMs))
    await sleep(wait)
    if (rig.stopped) break
    waitsMs.push(wait)
    await rig.crashAndRestart(rig.live())
  }
  return { kills: waitsMs.length, waitsMs }
}

/** The p-th percentile (0-100) of the values, in their unit. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
