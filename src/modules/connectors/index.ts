import type { AppModule } from '../module.ts'
import { connectorLoaders, connectorResolvers } from './resolvers.ts'
import { connectorRoutes } from './routes.ts'
import { ConnectorSchema } from './schemas.ts'

export const connectorsModule: AppModule = {
  name: 'connectors',
  tag: { name: 'Connectors', description: 'Shared mailboxes: incoming (read into work) and outgoing (send from)' },
  schemas: [ConnectorSchema],
  routes: connectorRoutes,
  resolvers: connectorResolvers,
  loaders: connectorLoaders,
}
