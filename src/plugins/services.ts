import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { createServices, type ServiceDeps, type Services } from '../modules/services.ts'

declare module 'fastify' {
  interface FastifyInstance {
    services: Services
  }
}

/** The app's services, wired once (src/modules/services.ts); REST routes, GraphQL resolvers and workers share them. */
async function servicesPlugin(app: FastifyInstance, options: Omit<ServiceDeps, 'db'>) {
  app.decorate('services', createServices({ ...options, db: app.database.db, log: app.log }))
}

export default fp(servicesPlugin, { name: 'services', fastify: '5.x', dependencies: ['database'] })
