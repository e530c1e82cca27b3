import { ConfigError, loadConfig } from '../config.ts'
import { openEmbeddedDatabase, openExternalDatabase } from '../database/index.ts'

/** `npm run db:migrate`: applies committed migrations to the configured database. */
try {
  const config = loadConfig(process.env)
  const database =
    config.database.kind === 'embedded'
      ? await openEmbeddedDatabase(config.database.dataDir)
      : openExternalDatabase(config.database.url, { maxConnections: 1 })
  const pending = await database.pendingMigrations()
  await database.migrate()
  await database.close()
  console.log(pending.length ? `applied ${pending.join(', ')}` : 'database schema is up to date')
} catch (error) {
  if (error instanceof ConfigError) {
    console.error(`mailgate: ${error.message}`)
    process.exit(78)
  }
  throw error
}
