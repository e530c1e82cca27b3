import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { Housekeeping } from '../workers/housekeeping.ts'
import { HEARTBEAT_INTERVAL_MS, Liveness } from '../workers/liveness.ts'
import { BackgroundLoop, WorkerMetrics, type LoopJob } from '../workers/runner.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** Every background loop of this instance: started when the app is ready, stopped when it closes. */
    workers: Workers
    /** Clean-up chores modules register; run every 10 minutes by the housekeeping loop. */
    housekeeping: Housekeeping
    /** This process's heartbeat and instance id; modules free what dead instances held through it. */
    liveness: Liveness
  }
}

/** A loop's name, how long it waits between rounds at most, and how many tasks it runs at once. */
export interface LoopShape {
  name: string
  pollMs: number
  maxConcurrent: number
}

interface Registered {
  loop: BackgroundLoop
  autostart: boolean
  graceMs: number
}

export class Workers {
  private readonly registered: Registered[] = []
  private readonly app: FastifyInstance
  private readonly metrics: WorkerMetrics

  constructor(app: FastifyInstance, metrics: WorkerMetrics) {
    this.app = app
    this.metrics = metrics
  }

  /** A loop running `job` with this app's log and metrics, not started or stopped by the app. */
  create(job: LoopJob, options: LoopShape): BackgroundLoop {
    return new BackgroundLoop(job, { ...options, log: this.app.log.child({ worker: options.name }), metrics: this.metrics })
  }

  /**
   * A loop of this instance. `autostart` starts it when the app is ready (the server does;
   * tests drive runOnce themselves); closing waits `graceMs` for its running tasks.
   */
  add(job: LoopJob, options: LoopShape & { autostart: boolean; graceMs?: number }): BackgroundLoop {
    const loop = this.create(job, options)
    this.registered.push({ loop, autostart: options.autostart, graceMs: options.graceMs ?? 10_000 })
    return loop
  }

  startAutostarted(): void {
    for (const { loop, autostart } of this.registered) {
      if (!autostart) continue
      loop.start()
      this.app.log.info({ worker: loop.name }, 'worker started')
    }
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.registered.map(({ loop, graceMs }) => loop.stop(graceMs)))
  }
}

export interface HousekeepingOptions {
  /** Run housekeeping in this instance (the server does; tests call housekeeping.run). */
  autostart: boolean
  /** Events, and webhook deliveries that ended, are kept this long (EVENT_RETENTION_DAYS, default 30). */
  eventRetentionDays?: number
}

export interface WorkersPluginOptions {
  housekeeping?: HousekeepingOptions
  /** Names this process's leases and request slots (`<id>/<role>`). */
  instanceId: string
  /** Beat and reap dead instances (the server does; tests call liveness.round). */
  heartbeat?: boolean
  clock?: () => Date
}

async function workersPlugin(app: FastifyInstance, options: WorkersPluginOptions) {
  const workers = new Workers(app, new WorkerMetrics(app.metrics))
  const housekeeping = new Housekeeping(app.log.child({ worker: 'housekeeping' }))
  app.decorate('workers', workers)
  app.decorate('housekeeping', housekeeping)
  const liveness = new Liveness({
    db: app.database.db,
    instanceId: options.instanceId,
    // An embedded database is this process's alone: whoever else beat there before is dead.
    exclusive: app.database.kind === 'embedded' && options.heartbeat === true,
    log: app.log.child({ worker: 'liveness' }),
    clock: options.clock,
  })
  app.decorate('liveness', liveness)
  workers.add(liveness, { name: 'liveness', pollMs: HEARTBEAT_INTERVAL_MS, maxConcurrent: 1, autostart: options.heartbeat ?? false })
  workers.add(housekeeping, { name: 'housekeeping', pollMs: 10 * 60_000, maxConcurrent: 1, autostart: options.housekeeping?.autostart ?? false })
  app.addHook('onReady', async () => workers.startAutostarted())
  app.addHook('onClose', async () => {
    await workers.stopAll()
    await liveness.retire()
  })
}

export default fp(workersPlugin, { name: 'workers', fastify: '5.x', dependencies: ['metrics', 'database'] })
