import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.ts'
import { ConfigError, loadConfig, type AppConfig } from './config.ts'
import { openEmbeddedDatabase, openExternalDatabase, type Database } from './database/index.ts'
import { TokenProvider } from './graph/token-provider.ts'
import { SecretBox } from './lib/secret-box.ts'
import { createLogger } from './logger.ts'
import { resolveSecretsKey } from './secrets-key.ts'

export async function openDatabase(config: AppConfig): Promise<Database> {
  return config.database.kind === 'embedded'
    ? openEmbeddedDatabase(config.database.dataDir)
    : openExternalDatabase(config.database.url)
}

async function main(): Promise<void> {
  let config: AppConfig
  try {
    config = loadConfig(process.env)
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`mailgate: ${error.message}\n`)
      process.exit(78) // EX_CONFIG
    }
    throw error
  }

  const log = createLogger(config.logLevel)
  const startedAt = performance.now()
  const secretBox = new SecretBox(await resolveSecretsKey(config, log), config.previousSecretsKeys)
  const database = await openDatabase(config)

  if (database.kind === 'embedded' || config.migrateOnStart) {
    await database.migrate()
  } else {
    const pending = await database.pendingMigrations()
    if (pending.length > 0) {
      log.fatal(
        { pending },
        'The database schema is behind this version. Run `npm run db:migrate` or set MIGRATE_ON_START=true.',
      )
      await database.close()
      process.exit(1)
    }
  }

  const app = await buildApp({
    database,
    secretBox,
    tokenProvider: new TokenProvider({ hostOverrides: config.microsoftHosts }),
    connectorFailureThreshold: config.connectorFailureThreshold,
    messageSizeLimit: config.messageSizeLimit,
    logger: log,
    bodyLimit: config.bodyLimit,
    graphql: { introspection: config.graphqlIntrospection },
    dispatcher: {
      autostart: config.dispatcher.enabled,
      settings: { perMinute: config.dispatcher.perMinute, maxAttempts: config.dispatcher.maxAttempts },
    },
    housekeeping: { autostart: config.dispatcher.enabled, eventRetentionDays: config.eventRetentionDays },
    ingest: { ...config.ingest, recovery: { autostart: config.dispatcher.enabled } },
    sync: { autostart: config.dispatcher.enabled, settings: { intervalMs: config.syncIntervalMs, maxConcurrentFolders: config.syncConcurrency }, publicBaseUrl: config.publicBaseUrl },
    webhooks: { autostart: config.dispatcher.enabled, ...config.webhooks },
    heartbeat: true,
  })

  const { resealed, unreadable } = await app.services.integrations.resealSecrets()
  if (resealed > 0) log.info({ resealed, keyId: secretBox.currentKeyId }, 're-sealed stored secrets with the current SECRETS_KEY')
  if (unreadable.length > 0) {
    log.warn(
      { unreadable },
      'some stored credentials were sealed with a key this server does not have: add it to SECRETS_KEY_PREVIOUS, or enter those credentials again',
    )
  }
  const webhookSecrets = await app.services.webhooks.resealSecrets()
  if (webhookSecrets.resealed > 0) log.info({ resealed: webhookSecrets.resealed, keyId: secretBox.currentKeyId }, 're-sealed webhook signing secrets with the current SECRETS_KEY')
  if (webhookSecrets.unreadable.length > 0) {
    log.warn({ webhookIds: webhookSecrets.unreadable }, 'some webhook signing secrets were sealed with a key this server does not have: add it to SECRETS_KEY_PREVIOUS, or rotate those secrets')
  }
  const bootstrap = await app.services.apiKeys.ensureInitialAdminKey(config.adminApiKey)
  if (bootstrap?.generatedKey) {
    // Printed once, straight to the terminal and never through the logger, so log shipping
    // does not carry it. It cannot be shown again: only its hash is stored.
    process.stdout.write(
      `\n  Mailgate created the first admin API key. Store it now; it is not shown again:\n\n    ${bootstrap.generatedKey}\n\n`,
    )
  } else if (bootstrap) {
    log.info('created the first admin API key from ADMIN_API_KEY')
  }

  // Past the workers' 10 s grace, so that the instance can still mark itself stopped and close the database.
  closeWithGrace({ delay: 15_000, logger: log }, async ({ signal, err }) => {
    if (err) log.error({ err }, 'shutting down after an error')
    else log.info({ signal }, 'shutting down: finishing in-flight requests and sends')
    await app.close()
    await database.close()
  })

  await app.listen({ port: config.port, host: config.host })
  log.info(
    { startupMs: Math.round(performance.now() - startedAt), database: database.kind },
    'mailgate is ready',
  )
}

await main()
