import type { FastifyBaseLogger } from 'fastify'
import { Counter, Gauge, type Registry } from 'prom-client'

/** Where a loop's job starts its tasks. */
export interface TaskPool {
  /** Tasks the loop can still take on now. */
  readonly capacity: number
  /** Tasks running here for a key (a mailbox, a folder, an endpoint). */
  running(key: string): number
  /**
   * Starts a task; when it ends the loop wakes for another round, unless the task says it
   * left nothing due ('quiet') and the pool was not full (so no due work waited for room).
   */
  launch(key: string, work: () => Promise<void | 'quiet'>): void
  /** The loop is stopping: a task should finish what it holds and take on nothing more. */
  readonly stopping: boolean
}

/** What a background loop does each round. */
export interface LoopJob {
  /**
   * Finds work and launches it. `thorough` asks for a full scan (the first round, runOnce).
   * Returns how many tasks it started and, when it knows, how soon another round is worth it.
   */
  round(pool: TaskPool, options: { thorough: boolean }): Promise<{ started: number; nextInMs?: number }>
}

export interface LoopOptions {
  /** Names the loop in logs and metrics. */
  name: string
  /** The longest wait between rounds when nothing wakes the loop. */
  pollMs: number
  /** Tasks running at once. */
  maxConcurrent: number
  log: FastifyBaseLogger
  metrics?: WorkerMetrics
}

/** Points of a task where a test may hold it, as a crash between two steps would leave it. */
export type Checkpoint<Step extends string> = (step: Step, id: string) => void | Promise<void>

/** The app's worker metrics, shared by every loop (labelled by loop name). */
export class WorkerMetrics {
  readonly tasks: Counter<'worker' | 'outcome'>
  readonly active: Gauge<'worker'>
  readonly roundFailures: Counter<'worker'>

  constructor(registry: Registry) {
    this.tasks = new Counter({ name: 'mailgate_worker_tasks_total', help: 'Background tasks finished, by worker and outcome', labelNames: ['worker', 'outcome'], registers: [registry] })
    this.active = new Gauge({ name: 'mailgate_worker_tasks_active', help: 'Background tasks running now', labelNames: ['worker'], registers: [registry] })
    this.roundFailures = new Counter({ name: 'mailgate_worker_round_failures_total', help: 'Rounds of a worker loop that failed (retried on the next round)', labelNames: ['worker'], registers: [registry] })
  }
}

/**
 * Runs a job in rounds: a round launches tasks up to the loop's concurrency, a finished task
 * or `wake()` starts the next round at once, otherwise the loop waits until the job's next
 * time or `pollMs`. A failed round is logged and retried; `stop` stops starting rounds and
 * waits for running tasks up to a grace period (what outlives it is left to lease recovery).
 */
export class BackgroundLoop implements TaskPool {
  readonly name: string
  private readonly job: LoopJob
  private readonly options: LoopOptions
  private readonly tasks = new Set<Promise<void>>()
  private readonly perKey = new Map<string, number>()
  private started = false
  private stopRequested = false
  private loop: Promise<void> | undefined
  private waking: (() => void) | undefined
  /** A wake-up that came while a round was running: the next wait ends at once. */
  private wakePending = false

  constructor(job: LoopJob, options: LoopOptions) {
    this.job = job
    this.options = options
    this.name = options.name
  }

  get capacity(): number {
    return this.options.maxConcurrent - this.tasks.size
  }

  running(key: string): number {
    return this.perKey.get(key) ?? 0
  }

  get stopping(): boolean {
    return this.stopRequested
  }

  launch(key: string, work: () => Promise<void | 'quiet'>): void {
    const { metrics } = this.options
    this.perKey.set(key, this.running(key) + 1)
    metrics?.active.inc({ worker: this.name })
    let quiet = false
    const task: Promise<void> = work()
      .then(
        (result) => {
          quiet = result === 'quiet'
          metrics?.tasks.inc({ worker: this.name, outcome: 'done' })
        },
        (error: unknown) => {
          metrics?.tasks.inc({ worker: this.name, outcome: 'failed' })
          this.options.log.error({ err: error, worker: this.name, key }, 'background task failed unexpectedly')
        },
      )
      .finally(() => {
        const left = this.running(key) - 1
        if (left > 0) this.perKey.set(key, left)
        else this.perKey.delete(key)
        metrics?.active.dec({ worker: this.name })
        const wasFull = this.capacity === 0
        this.tasks.delete(task)
        if (!quiet || wasFull) this.wake()
      })
    this.tasks.add(task)
  }

  start(): void {
    if (this.started) return
    this.started = true
    this.stopRequested = false
    this.loop = this.run()
  }

  /** Stops starting rounds and waits up to `graceMs` for running tasks. */
  async stop(graceMs = 10_000): Promise<void> {
    this.started = false
    this.stopRequested = true
    this.wake()
    await this.loop
    await Promise.race([Promise.allSettled([...this.tasks]), new Promise((resolve) => setTimeout(resolve, graceMs).unref())])
  }

  /** Starts the next round now (new work arrived, or room freed up). */
  wake(): void {
    if (this.waking) this.waking()
    else this.wakePending = true
  }

  /** One thorough round, then waits for the tasks it started. Returns how many it started. */
  async runOnce(): Promise<number> {
    const { started } = await this.job.round(this, { thorough: true })
    await Promise.allSettled([...this.tasks])
    return started
  }

  private async run(): Promise<void> {
    let thorough = true
    while (this.started) {
      let nextInMs = this.options.pollMs
      try {
        const result = await this.job.round(this, { thorough })
        if (result.nextInMs !== undefined) nextInMs = Math.min(nextInMs, result.nextInMs)
        thorough = false
      } catch (error) {
        this.options.metrics?.roundFailures.inc({ worker: this.name })
        this.options.log.error({ err: error, worker: this.name }, 'worker round failed; trying again shortly')
      }
      if (!this.started) break
      if (this.wakePending) {
        this.wakePending = false
        continue
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(5, nextInMs))
        this.waking = () => {
          clearTimeout(timer)
          resolve()
        }
      })
      this.waking = undefined
    }
  }
}

/**
 * Keeps a lease alive while `work` runs. A renewal that fails is ignored here: the work's own
 * lease-fenced writes notice a lost lease and stop.
 */
export async function whileRenewing<T>(renew: () => Promise<unknown>, everyMs: number, work: () => Promise<T>): Promise<T> {
  const timer = setInterval(() => void renew().catch(() => {}), everyMs)
  timer.unref()
  try {
    return await work()
  } finally {
    clearInterval(timer)
  }
}
