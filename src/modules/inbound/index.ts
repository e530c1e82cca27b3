import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { Counter } from 'prom-client'
import type { AppOptions } from '../../app.ts'
import type { IngestSettings } from '../../config.ts'
import type { AppModule } from '../module.ts'
import { InboundRecovery, RECOVERY_INTERVAL_MS } from './recovery.ts'
import type { InboundServiceDeps } from './service.ts'
import { inboundResolvers } from './resolvers.ts'
import { inboundRoutes } from './routes.ts'
import { InboundEmailSchema, InboundEmailSummarySchema } from './schemas.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** Finishes emails a crash left `received`. */
    inboundRecovery: InboundRecovery
  }
}

export interface IngestOptions extends Partial<IngestSettings> {
  recovery?: { autostart: boolean }
  /** Test hook at the points where a crash matters (see InboundServiceDeps.onStage). */
  onStage?: InboundServiceDeps['onStage']
}

async function inboundWorkers(app: FastifyInstance, options: AppOptions) {
  const taken = new Counter({
    name: 'mailgate_inbound_emails_total',
    help: 'Received emails by the outcome intake or recovery gave them',
    labelNames: ['outcome'],
    registers: [app.metrics],
  })
  app.services.inbound.onOutcome((outcome) => taken.inc({ outcome }))
  const recovery = new InboundRecovery(app.services.inbound)
  app.decorate('inboundRecovery', recovery)
  app.workers.add(recovery, { name: 'inbound-recovery', pollMs: RECOVERY_INTERVAL_MS, maxConcurrent: 1, autostart: options.ingest?.recovery?.autostart ?? false })
}

export const inboundModule: AppModule = {
  name: 'inbound',
  tag: { name: 'Inbound', description: 'Received mail: intake, what the pipeline decided, unhandled mail' },
  schemas: [InboundEmailSchema, InboundEmailSummarySchema],
  routes: inboundRoutes,
  resolvers: inboundResolvers,
  plugin: fp(inboundWorkers, { name: 'inbound-workers', fastify: '5.x', dependencies: ['database', 'services', 'workers', 'metrics'] }),
}
