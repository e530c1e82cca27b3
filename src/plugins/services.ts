import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Db } from '../database/index.ts'
import { TokenProvider } from '../graph/token-provider.ts'
import type { SecretBox } from '../lib/secret-box.ts'
import { ApiKeyRepository } from '../modules/api-keys/repository.ts'
import { ApiKeyService } from '../modules/api-keys/service.ts'
import { AuditRepository } from '../modules/audit/repository.ts'
import { AuditService } from '../modules/audit/service.ts'
import { ConnectionTestRepository } from '../modules/connection-tests/repository.ts'
import { IntegrationRepository } from '../modules/integrations/repository.ts'
import { IntegrationService } from '../modules/integrations/service.ts'

export interface Services {
  audit: AuditService
  apiKeys: ApiKeyService
  integrations: IntegrationService
}

export interface ServiceDeps {
  db: Db
  secretBox: SecretBox
  tokens?: TokenProvider
}

declare module 'fastify' {
  interface FastifyInstance {
    services: Services
  }
}

/** Wires repositories into services once per app; REST routes and GraphQL resolvers share them. */
export function createServices(deps: ServiceDeps): Services {
  const { db, secretBox } = deps
  const audit = new AuditService(db, new AuditRepository())
  const connectionTests = new ConnectionTestRepository()
  const apiKeys = new ApiKeyService(db, new ApiKeyRepository(), audit)
  const integrations = new IntegrationService({
    db,
    repository: new IntegrationRepository(),
    tests: connectionTests,
    audit,
    secretBox,
    tokens: deps.tokens ?? new TokenProvider(),
  })
  return { audit, apiKeys, integrations }
}

async function servicesPlugin(app: FastifyInstance, options: Omit<ServiceDeps, 'db'>) {
  app.decorate('services', createServices({ ...options, db: app.database.db }))
}

export default fp(servicesPlugin, { name: 'services', fastify: '5.x', dependencies: ['database'] })
