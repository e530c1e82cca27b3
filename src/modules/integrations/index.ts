import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { AppModule } from '../module.ts'
import { releaseSlotsOf } from './mailbox-gate.ts'
import { integrationResolvers } from './resolvers.ts'
import { integrationRoutes } from './routes.ts'
import { IntegrationSchema } from './schemas.ts'

export const integrationsModule: AppModule = {
  name: 'integrations',
  tag: { name: 'Integrations', description: 'Entra ID app registrations: tenant, app and credential' },
  schemas: [IntegrationSchema],
  routes: integrationRoutes,
  resolvers: integrationResolvers,
  // Graph request slots a dead instance held come free at once, not when their hold runs out.
  plugin: fp(async (app: FastifyInstance) => app.liveness.onDead('mailbox request slots', (tx, dead) => releaseSlotsOf(tx, dead)), {
    name: 'integrations-liveness',
    fastify: '5.x',
    dependencies: ['workers'],
  }),
}
