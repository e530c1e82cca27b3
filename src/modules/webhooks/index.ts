import { Counter, Gauge } from 'prom-client'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { AppOptions } from '../../app.ts'
import { eventRetentionCutoff } from '../../workers/housekeeping.ts'
import type { AppModule } from '../module.ts'
import { WebhookDelivery, type WebhookDeliveryDeps, type WebhookDeliverySettings } from './delivery.ts'
import { WebhookRepository } from './repository.ts'
import { webhookResolvers } from './resolvers.ts'
import { webhookRoutes } from './routes.ts'
import { ReplayResultSchema, WebhookDeliverySchema, WebhookEndpointSchema, WebhookTestResultSchema, WebhookWithSecretSchema } from './schemas.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** This instance's webhook delivery worker. */
    webhookDelivery: WebhookDelivery
  }
}

export interface WebhookPluginOptions {
  /** Deliver when the app is ready (the server); tests drive `runOnce` themselves. */
  autostart: boolean
  allowHttp?: boolean
  allowedNetworks?: string[]
  settings?: Partial<WebhookDeliverySettings>
  owner?: string
  clock?: WebhookDeliveryDeps['clock']
  onStep?: WebhookDeliveryDeps['onStep']
}

/** A delivery worker on the app's services; `register` makes it the app's own (started and stopped with it). */
export function createWebhookDelivery(
  app: FastifyInstance,
  options: Omit<WebhookPluginOptions, 'autostart'> & Pick<WebhookDeliveryDeps, 'counted'>,
  register?: { autostart: boolean },
): WebhookDelivery {
  const { services } = app
  return new WebhookDelivery(
    {
      db: app.database.db,
      repository: new WebhookRepository(),
      service: services.webhooks,
      http: services.webhookHttp,
      log: app.log.child({ component: 'webhooks' }),
      settings: options.settings,
      owner: options.owner ?? (register ? app.liveness.owner('webhooks') : undefined),
      clock: options.clock,
      onStep: options.onStep,
      counted: options.counted,
    },
    (job, settings) => {
      const shape = { name: 'webhooks', pollMs: settings.pollMs, maxConcurrent: settings.maxConcurrent }
      return register ? app.workers.add(job, { ...shape, ...register }) : app.workers.create(job, shape)
    },
  )
}

async function webhookWorkers(app: FastifyInstance, options: AppOptions) {
  const configured = options.webhooks ?? { autostart: false }
  const outcomes = new Counter({
    name: 'mailgate_webhook_deliveries_total',
    help: 'Webhook delivery attempts by outcome: delivered, retried, failed (given up), gone (410: endpoint disabled)',
    labelNames: ['outcome'],
    registers: [app.metrics],
  })
  const repository = new WebhookRepository()
  new Gauge({
    name: 'mailgate_webhook_lag_seconds',
    help: 'Per endpoint, the age of its oldest undelivered event',
    labelNames: ['endpoint'],
    registers: [app.metrics],
    async collect() {
      this.reset()
      const now = (configured.clock ?? options.clock)?.().getTime() ?? Date.now()
      for (const { endpointId, occurredAt } of await repository.oldestPending(app.database.db)) this.set({ endpoint: endpointId }, Math.max(0, now - occurredAt.getTime()) / 1000)
    },
  })
  const delivery = createWebhookDelivery(
    app,
    { ...configured, clock: configured.clock ?? options.clock, counted: (outcome) => outcomes.inc({ outcome }) },
    { autostart: configured.autostart },
  )
  app.decorate('webhookDelivery', delivery)
  app.liveness.onDead('webhook deliveries', (tx, dead) => repository.releaseLeasesOf(tx, dead), () => delivery.wake())
  app.housekeeping.add('webhookDeliveries', (now) => app.services.webhooks.removeExpired(eventRetentionCutoff(now, options.housekeeping?.eventRetentionDays), now))
  app.addHook('onClose', async () => app.services.webhookHttp.close())
}

export const webhooksModule: AppModule = {
  name: 'webhooks',
  tag: { name: 'Webhooks', description: 'Endpoints that receive events as signed POSTs (Standard Webhooks), their deliveries and replays' },
  schemas: [WebhookEndpointSchema, WebhookWithSecretSchema, WebhookTestResultSchema, WebhookDeliverySchema, ReplayResultSchema],
  routes: webhookRoutes,
  resolvers: webhookResolvers,
  plugin: fp(webhookWorkers, { name: 'webhook-workers', fastify: '5.x', dependencies: ['database', 'services', 'workers', 'metrics'] }),
}
