import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { Db } from '../../database/index.ts'
import { SecretUnreadableError } from '../../lib/secret-box.ts'
import { whileRenewing, type BackgroundLoop, type Checkpoint, type LoopJob, type TaskPool } from '../../workers/runner.ts'
import type { WebhookHttp } from './http.ts'
import type { ClaimedDelivery, WebhookRepository } from './repository.ts'
import type { WebhookService } from './service.ts'
import { signedHeaders } from './signing.ts'

/** Where a delivery may stop dead (tests stop it there, as a crash would). */
export type DeliveryStep = 'claimed' | 'answered'

export interface WebhookDeliverySettings {
  /** How often to look for work when nothing woke the loop. */
  pollMs: number
  /** A claim lasts this long; a dead instance's deliveries are taken over after it. */
  leaseMs: number
  /** Deliveries one instance makes at once, over all endpoints. */
  maxConcurrent: number
  /** Deliveries in flight at once to one parallel endpoint, over all instances. */
  perParallelEndpoint: number
  /** A delivery failing this long since its first attempt is given up (and its endpoint disabled). */
  giveUpAfterMs: number
}

export const DEFAULT_DELIVERY_SETTINGS: WebhookDeliverySettings = {
  pollMs: 1_000,
  leaseMs: 60_000,
  maxConcurrent: 32,
  perParallelEndpoint: 16,
  giveUpAfterMs: 3 * 24 * 3_600_000,
}

const FANOUT_MS = 200

/** Deliveries of an endpoint one task makes in a row before it lets the next round share out the work. */
const CHAIN_LENGTH = 100

/** Waits after the 1st, 2nd, ... failed attempt; the last repeats. With ±20 % jitter. */
export const RETRY_SCHEDULE_MS = [5_000, 30_000, 120_000, 600_000, 1_800_000, 3_600_000, 7_200_000, 14_400_000, 28_800_000]

export function retryDelay(attempts: number, random = Math.random): number {
  const base = RETRY_SCHEDULE_MS[Math.min(attempts, RETRY_SCHEDULE_MS.length) - 1]!
  return Math.round(base * (0.8 + 0.4 * random()))
}

export interface WebhookDeliveryDeps {
  db: Db
  repository: WebhookRepository
  service: WebhookService
  http: WebhookHttp
  log: FastifyBaseLogger
  settings?: Partial<WebhookDeliverySettings>
  owner?: string
  clock?: () => Date
  onStep?: Checkpoint<DeliveryStep>
  /** Counts each attempt's outcome (the metric). */
  counted?: (outcome: 'delivered' | 'retried' | 'failed' | 'gone') => void
}

/**
 * Delivers events to webhook endpoints, in every instance: fans new events of the feed out
 * into deliveries (one instance at a time, in one transaction with its place in the feed),
 * then POSTs due deliveries, each held by a lease. An ordered endpoint gets its events one
 * after another in feed order; a failed one is retried on a schedule and holds back the rest.
 * A delivery whose instance died is retried: at least once, with the same webhook-id.
 */
export class WebhookDelivery implements LoopJob {
  readonly owner: string
  /** Deliveries this process is making now. */
  private readonly running = new Set<string>()
  private readonly deps: WebhookDeliveryDeps
  private readonly settings: WebhookDeliverySettings
  private readonly loop: BackgroundLoop
  private fannedAt = 0
  private fanOutMore = false

  constructor(deps: WebhookDeliveryDeps, loopFor: (job: LoopJob, settings: WebhookDeliverySettings) => BackgroundLoop) {
    this.deps = deps
    this.settings = { ...DEFAULT_DELIVERY_SETTINGS, ...deps.settings }
    this.owner = deps.owner ?? `webhooks-${randomUUID()}`
    this.loop = loopFor(this, this.settings)
  }

  start(): void {
    this.loop.start()
  }

  async runOnce(): Promise<number> {
    return this.loop.runOnce()
  }

  wake(): void {
    this.loop.wake()
  }

  private now(): Date {
    return this.deps.clock?.() ?? new Date()
  }

  async round(pool: TaskPool, { thorough }: { thorough: boolean }): Promise<{ started: number; nextInMs: number }> {
    const { db, repository } = this.deps
    // Finishing deliveries wake the loop many times a second; the fan-out (a locking
    // transaction) runs at most every FANOUT_MS unless it has more to do.
    let fanned = 0
    if (thorough || this.fanOutMore || Date.now() - this.fannedAt >= FANOUT_MS) {
      fanned = await repository.fanOut(db, this.now())
      this.fannedAt = Date.now()
      this.fanOutMore = fanned > 0
    }
    const claimed = await repository.claimDue(db, this.owner, pool.capacity, this.settings.leaseMs, this.now(), this.settings.perParallelEndpoint)
    for (const delivery of claimed) {
      // Ours already (a lease freed while this process still delivers it, claimed back): the running task keeps it.
      if (this.running.has(delivery.id)) continue
      pool.launch(`endpoint:${delivery.endpointId}`, () => this.deliverInTurn(delivery, pool))
    }
    const busy = fanned > 0 || (claimed.length > 0 && pool.capacity === 0)
    return { started: claimed.length, nextInMs: busy ? 0 : this.settings.pollMs }
  }

  /**
   * Delivers a claimed delivery and, while they go through, the endpoint's next ones (each
   * claimed as the last settles), up to CHAIN_LENGTH and not once the loop is stopping: a
   * task keeps the endpoint's connection busy instead of taking one delivery per round, and
   * claims (a pass over every pending delivery) stay rare.
   */
  private async deliverInTurn(first: ClaimedDelivery, pool: TaskPool): Promise<void> {
    let next: ClaimedDelivery | undefined = first
    for (let delivered = 1; next; delivered++) {
      const delivery: ClaimedDelivery = next
      if (this.running.has(delivery.id)) return
      this.running.add(delivery.id)
      try {
        next = await whileRenewing<ClaimedDelivery | undefined>(
          () => this.deps.repository.renew(this.deps.db, delivery.id, this.owner, new Date(this.now().getTime() + this.settings.leaseMs)),
          Math.max(1_000, this.settings.leaseMs / 3),
          () => this.deliver(delivery, () => delivered < CHAIN_LENGTH && !pool.stopping),
        )
      } finally {
        this.running.delete(delivery.id)
      }
    }
  }

  /** One attempt; the endpoint's next delivery when `chain` still says so and it was taken. */
  private async deliver(delivery: ClaimedDelivery, chain: () => boolean): Promise<ClaimedDelivery | undefined> {
    const { db, repository, service, http } = this.deps
    await this.deps.onStep?.('claimed', delivery.id)
    // Read now, not carried over from the last delivery: a change committed meanwhile counts.
    const endpoint = await repository.findEndpoint(db, delivery.endpointId)
    if (!endpoint?.enabled) return undefined // disabled meanwhile: the delivery waits for it to be enabled again
    const { event } = delivery
    const body = JSON.stringify({ id: event.id, type: event.type, occurredAt: event.occurredAt.toISOString(), subject: { type: event.subjectType, id: event.subjectId }, data: event.payload })
    const at = this.now()
    let secrets: string[]
    try {
      secrets = service.signingSecrets(endpoint, at)
    } catch (error) {
      if (!(error instanceof SecretUnreadableError)) throw error
      this.deps.log.error({ endpointId: endpoint.id }, 'a webhook signing secret no configured key opens: add the key to SECRETS_KEY_PREVIOUS or rotate the secret; the delivery waits')
      return undefined
    }
    // The signature's timestamp is the wall clock's: receivers hold it against theirs.
    const result = await http.post(endpoint.url, signedHeaders(event.id, new Date(), body, secrets), body)
    await this.deps.onStep?.('answered', delivery.id)
    const attempts = delivery.attempts + 1
    const now = this.now()
    const ok = result.status !== null && result.status >= 200 && result.status < 300
    const gone = result.status === 410
    const firstAttemptAt = delivery.firstAttemptAt ?? at
    const givingUp = !ok && !gone && now.getTime() - firstAttemptAt.getTime() >= this.settings.giveUpAfterMs
    const lastError = ok ? null : (result.error ?? `answered ${result.status}`)
    const outcome = ok ? 'delivered' : gone ? 'gone' : givingUp ? 'failed' : 'retried'
    const next = await db.transaction(async (tx): Promise<ClaimedDelivery | undefined> => {
      // The endpoint first, then the delivery: settles of one endpoint take turns, and a disable cannot deadlock with them.
      const locked = await repository.findEndpoint(tx, endpoint.id, { forUpdate: true })
      if (!locked) return undefined // deleted meanwhile, with its deliveries
      // The attempt happened whatever comes next: it is in the delivery's log.
      await repository.recordAttempt(tx, delivery.id, at, result)
      const settled = await repository.settle(tx, delivery.id, this.owner, {
        state: ok ? 'delivered' : gone || givingUp ? 'failed' : 'pending',
        attempts,
        ...(ok || gone || givingUp ? {} : { nextAttemptAt: new Date(now.getTime() + retryDelay(attempts)) }),
        lastStatus: result.status,
        lastError,
        ...(ok ? { deliveredAt: now } : {}),
        ...(ok || gone || givingUp ? { endedAt: now } : {}),
      })
      // Taken over by another instance meanwhile: the outcome is its to record.
      if (!settled) return undefined
      // A success at an endpoint that was not failing changes nothing (the common case: no statement).
      const health = ok && !locked.failingSince ? undefined : await repository.markHealth(tx, endpoint.id, !ok, now)
      if (gone) {
        await service.disableForFailures(tx, locked, 'The endpoint answered 410 Gone.')
      } else if (!ok && health?.failingSince && now.getTime() - health.failingSince.getTime() >= this.settings.giveUpAfterMs) {
        await service.disableForFailures(tx, locked, `Every delivery failed for 3 days (since ${health.failingSince.toISOString()}); last: ${lastError}`)
      }
      if (!ok || !chain() || !locked.enabled) return undefined
      // The clock read after the endpoint's lock was granted: the new lease is a whole one.
      return repository.claimNextOf(tx, locked, this.owner, this.settings.leaseMs, this.now())
    })
    this.deps.counted?.(outcome)
    if (!ok) this.deps.log.info({ endpointId: endpoint.id, deliveryId: delivery.id, status: result.status, error: result.error, outcome }, 'webhook delivery failed')
    return next
  }
}
