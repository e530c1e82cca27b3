import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { AppOptions } from '../../app.ts'
import type { AppModule } from '../module.ts'
import { Counter } from 'prom-client'
import { notificationRoutes } from './notifications.ts'
import { MailboxSyncRepository } from './repository.ts'
import { FolderSubscriptions } from './subscriptions.ts'
import { mailboxSyncResolvers } from './resolvers.ts'
import { mailboxSyncRoutes } from './routes.ts'
import { ConnectorSync, FolderSyncState } from './schemas.ts'
import { MailboxSync, type MailboxSyncDeps, type MailboxSyncSettings } from './sync.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** This instance's mailbox sync. */
    mailboxSync: MailboxSync
  }
}

export interface MailboxSyncOptions {
  settings?: Partial<MailboxSyncSettings>
  /** Identifies its leases; unique per process by default. */
  owner?: string
  clock?: MailboxSyncDeps['clock']
  /** Test hook: called at each step of a folder's sync, where a test may stop it. */
  onStep?: MailboxSyncDeps['onStep']
}

export interface MailboxSyncPluginOptions extends MailboxSyncOptions {
  /** Start syncing when the app is ready (the server); tests drive `runOnce` themselves. */
  autostart: boolean
  /** PUBLIC_BASE_URL: with it, each synced folder gets a Graph change-notification subscription. */
  publicBaseUrl?: string
}

/**
 * A mailbox sync on the app's database and services. The app's own is registered with the
 * workers and shares the app's mailbox door; others (a second instance in a test) are not
 * registered and get a door of their own.
 */
export function createMailboxSync(app: FastifyInstance, options: MailboxSyncOptions & { subscriptions?: FolderSubscriptions }, register?: { autostart: boolean }): MailboxSync {
  const { services } = app
  return new MailboxSync(
    {
      db: app.database.db,
      repository: new MailboxSyncRepository(),
      mailboxes: register ? services.mailboxes : services.mailboxes.separate(),
      intake: services.inbound,
      health: services.connectors,
      log: app.log.child({ component: 'mailbox-sync' }),
      ...options,
      owner: options.owner ?? (register ? app.liveness.owner('sync') : undefined),
    },
    (job, settings) => {
      const shape = { name: 'mailbox-sync', pollMs: settings.intervalMs, maxConcurrent: settings.maxConcurrentFolders }
      return register ? app.workers.add(job, { ...shape, ...register }) : app.workers.create(job, shape)
    },
  )
}

async function mailboxSyncWorkers(app: FastifyInstance, options: AppOptions) {
  const { publicBaseUrl, ...configured } = options.sync ?? { autostart: false }
  const syncOptions = { ...configured, clock: configured.clock ?? options.clock }
  const subscriptions = new FolderSubscriptions({ db: app.database.db, secretBox: options.secretBox, publicBaseUrl, clock: syncOptions.clock })
  // Without PUBLIC_BASE_URL no subscriptions are made; the receiver stays (it believes nothing then).
  const sync = createMailboxSync(app, { ...syncOptions, subscriptions: publicBaseUrl ? subscriptions : undefined }, { autostart: syncOptions.autostart })
  app.decorate('mailboxSync', sync)
  app.services.mailboxSync.onWake(() => sync.wake())
  const notifications = new Counter({
    name: 'mailgate_graph_notifications_total',
    help: 'Graph change and lifecycle notification items, by whether they were believed (subscription and clientState match)',
    labelNames: ['kind', 'result'],
    registers: [app.metrics],
  })
  const repository = new MailboxSyncRepository()
  app.liveness.onDead('mailbox folders', (tx, dead) => repository.releaseLeasesOf(tx, dead), () => sync.wake())
  await app.register(
    notificationRoutes({
      subscriptions,
      wake: async (folders) => {
        // Folders already due are left to the round that will take them: a flood makes no extra rounds.
        if ((await repository.wakeFolders(app.database.db, folders, syncOptions.clock?.() ?? new Date())) > 0) sync.wake()
      },
      counted: (kind, result, n) => {
        if (n > 0) notifications.inc({ kind, result }, n)
      },
      log: app.log.child({ component: 'graph-notifications' }),
    }),
    { prefix: '/v1/graph' },
  )
}

export const mailboxSyncModule: AppModule = {
  name: 'mailbox-sync',
  tag: { name: 'Mailbox sync', description: 'Reading incoming connectors’ folders through Graph: state and manual sync' },
  schemas: [FolderSyncState, ConnectorSync],
  routes: mailboxSyncRoutes,
  resolvers: mailboxSyncResolvers,
  plugin: fp(mailboxSyncWorkers, { name: 'mailbox-sync-workers', fastify: '5.x', dependencies: ['database', 'services', 'workers', 'metrics'] }),
}
