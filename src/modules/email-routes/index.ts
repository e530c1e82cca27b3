import type { AppModule } from '../module.ts'
import { emailRouteResolvers } from './resolvers.ts'
import { emailRouteRoutes } from './routes.ts'
import { RouteSchema } from './schemas.ts'

export const emailRoutesModule: AppModule = {
  name: 'email-routes',
  tag: { name: 'Routes', description: 'Incoming routes (which process mail becomes) and outgoing aliases' },
  schemas: [RouteSchema],
  routes: emailRouteRoutes,
  resolvers: emailRouteResolvers,
}
