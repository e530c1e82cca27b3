import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyServerOptions,
  type RawServerDefault,
} from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import packageJson from '../package.json' with { type: 'json' }
import type { Database } from './database/index.ts'
import type { TokenProvider } from './graph/token-provider.ts'
import type { SecretBox } from './lib/secret-box.ts'
import { createAjv } from './lib/validation.ts'
import { appModules } from './modules/index.ts'
import type { DispatcherPluginOptions } from './modules/outbound/dispatcher-plugin.ts'
import type { MailboxSyncPluginOptions } from './modules/mailbox-sync/index.ts'
import type { WebhookPluginOptions } from './modules/webhooks/index.ts'
import type { IngestOptions } from './modules/inbound/index.ts'
import authPlugin, { apiKeyScope } from './plugins/auth.ts'
import databasePlugin from './plugins/database.ts'
import errorsPlugin, { clientErrorHandler, sendProblem, toDomainError } from './plugins/errors.ts'
import graphiqlPlugin from './plugins/graphiql.ts'
import graphqlPlugin from './plugins/graphql.ts'
import healthPlugin from './plugins/health.ts'
import jsonBodyPlugin from './plugins/json-body.ts'
import metricsPlugin from './plugins/metrics.ts'
import requestLifecyclePlugin from './plugins/request-lifecycle.ts'
import servicesPlugin from './plugins/services.ts'
import swaggerPlugin from './plugins/swagger.ts'
import workersPlugin, { type HousekeepingOptions } from './plugins/workers.ts'

export type App = FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, FastifyBaseLogger, TypeBoxTypeProvider>

export interface AppOptions {
  database: Database
  /** Seals and opens stored credentials (SECRETS_KEY and its predecessors). */
  secretBox: SecretBox
  /** Defaults to one talking to Microsoft's public hosts. */
  tokenProvider?: TokenProvider
  connectorFailureThreshold?: number
  messageSizeLimit?: number
  /** A pino logger (see createLogger); without one the app logs nothing. */
  logger?: FastifyBaseLogger
  bodyLimit?: number
  collectDefaultMetrics?: boolean
  /** The outbox dispatcher; it starts only when `autostart` is set. */
  dispatcher?: DispatcherPluginOptions
  /** GraphQL switches; introspection is on unless set false (GRAPHQL_INTROSPECTION). */
  graphql?: { introspection?: boolean }
  /** Housekeeping (expired data); it runs every 10 minutes only when `autostart` is set. */
  housekeeping?: HousekeepingOptions
  /** Mail intake settings (INGEST_*); recovery of unfinished emails runs only when `recovery.autostart` is set. */
  ingest?: IngestOptions
  /** The mailbox sync of incoming connectors; it starts only when `autostart` is set. */
  sync?: MailboxSyncPluginOptions
  /** Webhook delivery (WEBHOOK_*); the delivery worker starts only when `autostart` is set. */
  webhooks?: WebhookPluginOptions
  /** Names this process's leases and request slots; a new UUID unless given. */
  instanceId?: string
  /** Beat every 5 s and free what dead instances held (the server does; tests drive `app.liveness` themselves). */
  heartbeat?: boolean
  /** The time leases, pauses and retries are measured in; the workers use it unless given their own (tests move it). */
  clock?: () => Date
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/**
 * Bodies are validated strictly (no type coercion, unknown fields rejected); query strings,
 * path params and headers arrive as text, so those coerce.
 */
function validatorCompilers(): NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']> {
  return {
    buildValidator(externalSchemas: Record<string, unknown>) {
      const body = createAjv(false)
      const text = createAjv('array')
      for (const schema of Object.values(externalSchemas)) {
        body.addSchema(schema as object)
        text.addSchema(schema as object)
      }
      return ({ schema, httpPart }: { schema: object; httpPart?: string }) =>
        (httpPart === 'body' ? body : text).compile(schema)
    },
  } as unknown as NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>
}

export async function buildApp(appOptions: AppOptions): Promise<App> {
  const options = { ...appOptions, instanceId: appOptions.instanceId ?? randomUUID() }
  const app = Fastify({
    ...(options.logger ? { loggerInstance: options.logger } : { logger: false }),
    bodyLimit: options.bodyLimit ?? 1_048_576,
    requestIdHeader: false,
    logController: new LogController({ requestIdLogLabel: 'requestId' }),
    genReqId: (request) => {
      const given = request.headers['x-request-id']
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
    },
    // Closing is answered by the request-lifecycle plugin, as problem+json like every error.
    return503OnClosing: false,
    frameworkErrors: (error, _request, reply) => sendProblem(reply, toDomainError(error)),
    clientErrorHandler,
    // Node would answer a Host-less HTTP/1.1 request with a bare 400; request-lifecycle answers it.
    http: { requireHostHeader: false },
    schemaController: { compilersFactory: validatorCompilers() },
  }).withTypeProvider<TypeBoxTypeProvider>()

  await app.register(errorsPlugin)
  await app.register(requestLifecyclePlugin)
  await app.register(jsonBodyPlugin)
  await app.register(databasePlugin, { database: options.database })
  await app.register(servicesPlugin, {
    secretBox: options.secretBox,
    tokens: options.tokenProvider,
    connectorFailureThreshold: options.connectorFailureThreshold,
    messageSizeLimit: options.messageSizeLimit,
    ingest: options.ingest,
    clock: options.clock,
    webhooks: options.webhooks,
    instanceId: options.instanceId,
  })
  await app.register(authPlugin)
  for (const schema of appModules.flatMap((module) => module.schemas ?? [])) app.addSchema(schema)
  await app.register(swaggerPlugin, { version: packageJson.version, tags: appModules.flatMap((module) => (module.tag ? [module.tag] : [])),
    webhooks: Object.assign({}, ...appModules.map((module) => module.webhooks ?? {})),
  })
  await app.register(healthPlugin)
  await app.register(metricsPlugin, { collectDefaults: options.collectDefaultMetrics })
  await app.register(workersPlugin, { housekeeping: options.housekeeping, instanceId: options.instanceId, heartbeat: options.heartbeat, clock: options.clock })
  for (const module of appModules) if (module.plugin) await app.register(module.plugin, options)
  await app.register(graphqlPlugin, {
    resolvers: appModules.flatMap((module) => (module.resolvers ? [module.resolvers] : [])),
    loaders: Object.assign({}, ...appModules.map((module) => module.loaders ?? {})),
    introspection: options.graphql?.introspection,
  })
  await app.register(graphiqlPlugin)

  await app.register(
    async (v1) => {
      await apiKeyScope(v1)
      for (const module of appModules) if (module.routes) await v1.register(module.routes)
    },
    { prefix: '/v1' },
  )

  return app
}
