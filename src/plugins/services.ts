import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { ApiKeyRepository } from '../modules/api-keys/repository.ts'
import { ApiKeyService } from '../modules/api-keys/service.ts'
import { AuditRepository } from '../modules/audit/repository.ts'
import { AuditService } from '../modules/audit/service.ts'

export interface Services {
  audit: AuditService
  apiKeys: ApiKeyService
}

declare module 'fastify' {
  interface FastifyInstance {
    services: Services
  }
}

/** Wires repositories into services once per app; REST routes and GraphQL resolvers share them. */
export function createServices(db: FastifyInstance['database']['db']): Services {
  const audit = new AuditService(db, new AuditRepository())
  const apiKeys = new ApiKeyService(db, new ApiKeyRepository(), audit)
  return { audit, apiKeys }
}

async function servicesPlugin(app: FastifyInstance) {
  app.decorate('services', createServices(app.database.db))
}

export default fp(servicesPlugin, { name: 'services', fastify: '5.x', dependencies: ['database'] })
