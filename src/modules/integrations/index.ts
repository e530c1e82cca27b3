import type { AppModule } from '../module.ts'
import { integrationResolvers } from './resolvers.ts'
import { integrationRoutes } from './routes.ts'
import { IntegrationSchema } from './schemas.ts'

export const integrationsModule: AppModule = {
  name: 'integrations',
  tag: { name: 'Integrations', description: 'Entra ID app registrations: tenant, app and credential' },
  schemas: [IntegrationSchema],
  routes: integrationRoutes,
  resolvers: integrationResolvers,
}
