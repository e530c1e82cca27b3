import { outboundAttachments } from '../../db/schema.ts'
import type { Db } from '../database/index.ts'
import { ChangeSignal } from '../lib/change-signal.ts'
import { TokenProvider } from '../graph/token-provider.ts'
import type { SecretBox } from '../lib/secret-box.ts'
import { ApiKeyRepository } from './api-keys/repository.ts'
import { ApiKeyService } from './api-keys/service.ts'
import { AttachmentStore } from './attachments/store.ts'
import { AuditRepository } from './audit/repository.ts'
import { AuditService } from './audit/service.ts'
import { BlockedAddressRepository } from './blocked-addresses/repository.ts'
import { BlockedAddressService } from './blocked-addresses/service.ts'
import { ConnectionTestRepository } from './connection-tests/repository.ts'
import { ConnectionTests } from './connection-tests/service.ts'
import { ConnectorRepository } from './connectors/repository.ts'
import { ConnectorService } from './connectors/service.ts'
import { EmailRouteRepository } from './email-routes/repository.ts'
import { RouteBook } from './email-routes/route-book.ts'
import { EmailRouteService } from './email-routes/service.ts'
import { EventFeed } from './events/feed.ts'
import { DomainEventRepository } from './events/repository.ts'
import { EventRetention } from './events/retention.ts'
import { AddressPolicy, WebhookHttp } from './webhooks/http.ts'
import { WebhookRepository } from './webhooks/repository.ts'
import { WebhookService } from './webhooks/service.ts'
import { EventLog } from './events/service.ts'
import { InboundPipeline } from './inbound/pipeline.ts'
import { InboundRepository } from './inbound/repository.ts'
import { InboundService, type InboundServiceDeps } from './inbound/service.ts'
import { Threading } from './inbound/threading.ts'
import { Mailboxes } from './integrations/mailbox-access.ts'
import { IntegrationRepository } from './integrations/repository.ts'
import { IntegrationService } from './integrations/service.ts'
import { OutboundAttachmentRepository } from './outbound/attachment-repository.ts'
import { IdempotencyRepository } from './outbound/idempotency-repository.ts'
import { MessageRepository } from './outbound/message-repository.ts'
import { MessageService } from './outbound/service.ts'
import { SentMail } from './outbound/sent-mail.ts'
import { MailboxSyncRepository } from './mailbox-sync/repository.ts'
import { MailboxSyncService } from './mailbox-sync/service.ts'
import { inboundEmails } from '../../db/schema.ts'
import { DEFAULT_REFERENCE_PATTERN, type IngestSettings } from '../config.ts'
import type { FastifyBaseLogger } from 'fastify'

export interface Services {
  audit: AuditService
  apiKeys: ApiKeyService
  events: EventLog
  /** The event feed (GET /v1/events). */
  eventFeed: EventFeed
  /** Trims the feed (EVENT_RETENTION_DAYS). */
  eventRetention: EventRetention
  attachments: AttachmentStore
  integrations: IntegrationService
  /** The one door to a mailbox. */
  mailboxes: Mailboxes
  connectors: ConnectorService
  routes: EmailRouteService
  /** Blocked senders; `match` is the ingest pipeline's port. */
  blockedAddresses: BlockedAddressService
  messages: MessageService
  /** Mail intake, the pipeline and the received-mail API. */
  inbound: InboundService
  /** Where incoming connectors' folders stand, and syncing them now. */
  mailboxSync: MailboxSyncService
  webhooks: WebhookService
  /** The webhook endpoints' HTTP client (closed with the app). */
  webhookHttp: WebhookHttp
}

export interface ServiceDeps {
  db: Db
  secretBox: SecretBox
  tokens?: TokenProvider
  /** Failures in a row before a connector is disabled automatically (default 5). */
  connectorFailureThreshold?: number
  /** Largest total message size in bytes (default 35 MB), sent or taken in. */
  messageSizeLimit?: number
  ingest?: Partial<IngestSettings> & Pick<InboundServiceDeps, 'onStage'>
  log?: FastifyBaseLogger
  /** The time Graph pauses and request slots are measured in. */
  clock?: () => Date
  /** WEBHOOK_ALLOW_HTTP and WEBHOOK_ALLOWED_NETWORKS. */
  webhooks?: { allowHttp?: boolean; allowedNetworks?: string[] }
  /** This process's instance id: the Graph request slots it takes are held under it. */
  instanceId?: string
}

/**
 * The composition root: every service, once per app, with the ports each module declares
 * wired to the module that answers them. REST routes, GraphQL resolvers and workers share them.
 */
export function createServices(deps: ServiceDeps): Services {
  const { db, secretBox } = deps
  const tokens = deps.tokens ?? new TokenProvider()
  const audit = new AuditService(db, new AuditRepository())
  const events = new EventLog()
  const tests = new ConnectionTests(db, new ConnectionTestRepository(), audit)
  const attachments = new AttachmentStore()
  attachments.addOwner(outboundAttachments.blobId)
  attachments.addOwner(inboundEmails.sourceBlobId)
  const apiKeys = new ApiKeyService(db, new ApiKeyRepository(), audit)

  const integrationRepository = new IntegrationRepository()
  // Writes to any of these clear intake's cached connectors, routes and blocked addresses.
  const configChanges = new ChangeSignal()
  const connectorRepository = new ConnectorRepository(configChanges)
  const integrations = new IntegrationService({
    db,
    repository: integrationRepository,
    tests,
    audit,
    secretBox,
    tokens,
    usage: { connectorCount: (executor, integrationId) => connectorRepository.countByIntegration(executor, integrationId) },
  })
  const mailboxes = new Mailboxes({ db, repository: integrationRepository, secretBox, tokens, clock: deps.clock, instanceId: deps.instanceId })

  // Connectors and routes need each other: each reaches the other through a port.
  const routeRepository = new EmailRouteRepository(configChanges)
  const routeBook = new RouteBook({ db, repository: routeRepository, tests, audit })
  const routes: EmailRouteService = new EmailRouteService({
    db,
    repository: routeRepository,
    connectors: {
      find: (executor, id, options) => connectors.find(executor, id, options),
      findMany: (executor, ids) => connectors.findMany(executor, ids),
    },
    tests,
    audit,
    integrations,
    mailboxes,
  })
  const mailboxSync: MailboxSyncService = new MailboxSyncService({
    db,
    repository: new MailboxSyncRepository(),
    connectors: { find: (executor, id) => connectors.find(executor, id) },
  })
  const webhookRepository = new WebhookRepository()
  const connectors: ConnectorService = new ConnectorService({
    db,
    repository: connectorRepository,
    routes: routeBook,
    tests,
    audit,
    integrations,
    mailboxes,
    failureThreshold: deps.connectorFailureThreshold ?? 5,
    sync: mailboxSync,
    events,
    webhooks: { removeAllFor: (tx, connectorId) => webhookRepository.deleteEndpointsOfConnector(tx, connectorId) },
  })
  const blockedAddresses = new BlockedAddressService({ db, repository: new BlockedAddressRepository(configChanges), audit })
  const messages = new MessageService({
    db,
    repository: new MessageRepository(),
    attachmentRows: new OutboundAttachmentRepository(),
    idempotency: new IdempotencyRepository(),
    senders: routeBook,
    integrations,
    attachments,
    sizeLimit: deps.messageSizeLimit ?? 35 * 1024 * 1024,
  })
  const ingestSettings: IngestSettings = {
    dedupeScope: deps.ingest?.dedupeScope ?? 'global',
    threadingMode: deps.ingest?.threadingMode ?? 'mixed',
    referencePattern: deps.ingest?.referencePattern ?? DEFAULT_REFERENCE_PATTERN,
  }
  const inboundRepository = new InboundRepository(db)
  const sentMail = new SentMail(db, events)
  // Intake reads the connector of every email: a copy at most CONFIG_CACHE_MAX_AGE_MS old will do.
  const intakeConnectors = { find: (executor: Db, id: string) => connectors.findRecent(executor, id) }
  const inbound = new InboundService({
    db,
    repository: inboundRepository,
    pipeline: new InboundPipeline({
      repository: inboundRepository,
      events,
      threading: new Threading(ingestSettings),
      connectors: intakeConnectors,
      routes: routeBook,
      blocked: blockedAddresses,
      connectionTests: tests,
      sentMail,
    }),
    store: attachments,
    audit,
    connectors: intakeConnectors,
    routes,
    settings: ingestSettings,
    sizeLimit: deps.messageSizeLimit ?? 35 * 1024 * 1024,
    log: deps.log?.child({ component: 'inbound' }),
    events,
    sentAnyOf: (outboxIds, messageIds) => sentMail.sentAnyOf(outboxIds, messageIds),
    onStage: deps.ingest?.onStage,
  })
  const webhookHttp = new WebhookHttp(new AddressPolicy(deps.webhooks?.allowedNetworks ?? []))
  const webhooks = new WebhookService({
    db,
    repository: webhookRepository,
    secretBox,
    audit,
    events,
    http: webhookHttp,
    connectors: { exists: async (executor, id) => (await connectorRepository.findById(executor, id)) !== undefined },
    allowHttp: deps.webhooks?.allowHttp ?? false,
    clock: deps.clock,
  })
  const eventRepository = new DomainEventRepository()
  // Webhooks hold the events still to fan out or deliver; the feed keeps them.
  const eventRetention = new EventRetention({ db, repository: eventRepository, holds: [(executor) => webhookRepository.firstNeeded(executor)] })
  return { webhooks, webhookHttp, audit, apiKeys, events, eventFeed: new EventFeed(db, eventRepository), eventRetention, attachments, integrations, mailboxes, connectors, routes, blockedAddresses, messages, inbound, mailboxSync }
}
