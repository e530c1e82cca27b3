import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { AppOptions } from '../../app.ts'
import { Dispatcher, type DispatcherDeps, type DispatcherSettings } from './dispatcher.ts'
import { IdempotencyRepository } from './idempotency-repository.ts'
import { MessageRepository } from './message-repository.ts'
import { Outbox } from './outbox.ts'
import { IDEMPOTENCY_WINDOW_MS } from './service.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** This instance's outbox dispatcher. */
    dispatcher: Dispatcher
  }
}

export interface DispatcherOptions {
  settings?: Partial<DispatcherSettings>
  /** Identifies its leases; unique per process by default. */
  owner?: string
  clock?: DispatcherDeps['clock']
  /** Test hook: called at each step of a send, where a test may hold it. */
  onStep?: DispatcherDeps['onStep']
}

export interface DispatcherPluginOptions extends DispatcherOptions {
  /** Start sending when the app is ready (the server); tests drive `runOnce` themselves. */
  autostart: boolean
  /** How long closing waits for sends in progress before leaving them to lease recovery. */
  closeGraceMs?: number
}

/**
 * A dispatcher on the app's database and services. The app's own is registered with the
 * workers (started and stopped with the app) and shares the app's mailbox door; others
 * (a second instance in a test) are not registered and get a door of their own.
 */
export function createDispatcher(app: FastifyInstance, options: DispatcherOptions, register?: { autostart: boolean; graceMs?: number }): Dispatcher {
  const { services } = app
  return new Dispatcher(
    {
      db: app.database.db,
      outbox: new Outbox({ events: services.events }),
      mailboxes: register ? services.mailboxes : services.mailboxes.separate(),
      health: services.connectors,
      attachments: services.attachments,
      log: app.log.child({ component: 'dispatcher' }),
      ...options,
      owner: options.owner ?? (register ? app.liveness.owner('dispatcher') : undefined),
    },
    (job, settings: DispatcherSettings) => {
      const shape = { name: 'dispatcher', pollMs: settings.pollMs, maxConcurrent: settings.maxConcurrentSends }
      return register ? app.workers.add(job, { ...shape, ...register }) : app.workers.create(job, shape)
    },
  )
}

async function outboundWorkers(app: FastifyInstance, options: AppOptions) {
  const dispatcherOptions = options.dispatcher ?? { autostart: false }
  const dispatcher = createDispatcher(app, { ...dispatcherOptions, clock: dispatcherOptions.clock ?? options.clock }, { autostart: dispatcherOptions.autostart, graceMs: dispatcherOptions.closeGraceMs })
  app.decorate('dispatcher', dispatcher)
  if (dispatcherOptions.autostart) {
    app.addHook('onReady', async () => app.log.info({ owner: dispatcher.owner, ...dispatcherOptions.settings }, 'dispatcher started'))
  }
  const messages = new MessageRepository()
  app.liveness.onDead('outbound messages', (tx, dead) => messages.releaseLeasesOf(tx, dead), () => dispatcher.wake())
  const idempotency = new IdempotencyRepository()
  app.housekeeping.add('idempotencyKeys', (now) => idempotency.removeOlderThan(app.database.db, new Date(now.getTime() - IDEMPOTENCY_WINDOW_MS)))
}

export default fp(outboundWorkers, { name: 'outbound-workers', fastify: '5.x', dependencies: ['database', 'services', 'workers'] })
