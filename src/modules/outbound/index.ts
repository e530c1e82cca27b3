import type { AppModule } from '../module.ts'
import outboundWorkers from './dispatcher-plugin.ts'
import { messageResolvers } from './resolvers.ts'
import { messageRoutes } from './routes.ts'
import { MessageSchema } from './schemas.ts'

export const outboundModule: AppModule = {
  name: 'outbound',
  tag: { name: 'Messages', description: "Sending mail: the outbox and each message's status" },
  schemas: [MessageSchema],
  routes: messageRoutes,
  resolvers: messageResolvers,
  plugin: outboundWorkers,
}
