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
import { ConnectionTests } from '../modules/connection-tests/service.ts'
import { ConnectorRepository } from '../modules/connectors/repository.ts'
import { EmailRouteRepository } from '../modules/email-routes/repository.ts'
import { EmailRouteService } from '../modules/email-routes/service.ts'
import { ConnectorService } from '../modules/connectors/service.ts'
import { AttachmentStore } from '../modules/messages/attachment-store.ts'
import { MessageRepository } from '../modules/messages/repository.ts'
import { MessageService } from '../modules/messages/service.ts'
import { IntegrationRepository } from '../modules/integrations/repository.ts'
import { IntegrationService } from '../modules/integrations/service.ts'

export interface Services {
  audit: AuditService
  apiKeys: ApiKeyService
  integrations: IntegrationService
  connectors: ConnectorService
  routes: EmailRouteService
  messages: MessageService
  /** Lower-level parts the background workers use alongside the services. */
  workers: { tokens: TokenProvider; connectorRepository: ConnectorRepository; attachments: AttachmentStore }
}

export interface ServiceDeps {
  db: Db
  secretBox: SecretBox
  tokens?: TokenProvider
  /** Failures in a row before a connector is disabled automatically (default 5). */
  connectorFailureThreshold?: number
  /** Largest total message size in bytes (default 35 MB). */
  messageSizeLimit?: number
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
  const testRecords = new ConnectionTests(connectionTests, audit)
  const apiKeys = new ApiKeyService(db, new ApiKeyRepository(), audit)
  const tokens = deps.tokens ?? new TokenProvider()
  const connectorRepository = new ConnectorRepository()
  const routeRepository = new EmailRouteRepository()
  const integrations = new IntegrationService({
    db,
    repository: new IntegrationRepository(),
    tests: connectionTests,
    testRecords,
    audit,
    secretBox,
    tokens,
    usage: { connectorCount: (executor, integrationId) => connectorRepository.countByIntegration(executor, integrationId) },
  })
  const connectors = new ConnectorService({
    db,
    repository: connectorRepository,
    routes: routeRepository,
    tests: connectionTests,
    testRecords,
    audit,
    integrations,
    tokens,
    failureThreshold: deps.connectorFailureThreshold ?? 5,
  })
  const routes = new EmailRouteService({
    db,
    repository: routeRepository,
    connectors: connectorRepository,
    tests: connectionTests,
    testRecords,
    audit,
    integrations,
    tokens,
  })
  const attachments = new AttachmentStore()
  const messages = new MessageService({
    db,
    repository: new MessageRepository(),
    routes: routeRepository,
    integrations,
    attachments,
    sizeLimit: deps.messageSizeLimit ?? 35 * 1024 * 1024,
  })
  return { audit, apiKeys, integrations, connectors, routes, messages, workers: { tokens, connectorRepository, attachments } }
}

async function servicesPlugin(app: FastifyInstance, options: Omit<ServiceDeps, 'db'>) {
  app.decorate('services', createServices({ ...options, db: app.database.db }))
}

export default fp(servicesPlugin, { name: 'services', fastify: '5.x', dependencies: ['database'] })
