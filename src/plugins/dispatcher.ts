import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { Dispatcher, type DispatcherDeps, type DispatcherSettings } from '../workers/dispatcher.ts'

declare module 'fastify' {
  interface FastifyInstance {
    dispatcher: Dispatcher
  }
}

export interface DispatcherPluginOptions {
  /** Start sending when the app is ready (the server); tests drive `runOnce` themselves. */
  autostart: boolean
  settings?: Partial<DispatcherSettings>
  /** How long closing waits for sends in progress before leaving them to lease recovery. */
  closeGraceMs?: number
  owner?: string
  clock?: DispatcherDeps['clock']
  onStep?: DispatcherDeps['onStep']
}

/** The outbox dispatcher of this instance: started when the app is ready, stopped (gracefully) when it closes. */
async function dispatcherPlugin(app: FastifyInstance, options: DispatcherPluginOptions) {
  const { workers, integrations, connectors } = app.services
  const dispatcher = new Dispatcher({
    db: app.database.db,
    tokens: workers.tokens,
    integrations,
    connectors,
    connectorRepository: workers.connectorRepository,
    attachments: workers.attachments,
    log: app.log.child({ component: 'dispatcher' }),
    settings: options.settings,
    owner: options.owner,
    clock: options.clock,
    onStep: options.onStep,
  })
  app.decorate('dispatcher', dispatcher)
  if (options.autostart) {
    app.addHook('onReady', async () => {
      dispatcher.start()
      app.log.info({ owner: dispatcher.owner, ...options.settings }, 'dispatcher started')
    })
  }
  app.addHook('onClose', async () => dispatcher.stop(options.closeGraceMs))
}

export default fp(dispatcherPlugin, { name: 'dispatcher', fastify: '5.x', dependencies: ['database', 'services'] })
