import { randomBytes } from 'node:crypto'
import postgres from 'postgres'
import { openEmbeddedDatabase, openExternalDatabase, type Database } from '../../src/database/index.ts'

export interface TestDatabase {
  database: Database
  /** Where it lives, for tests that open a second connection or spawn the server. */
  url: string | null
  drop(): Promise<void>
}

export const externalTestUrl = process.env.TEST_DATABASE_URL || undefined

function withDatabaseName(url: string, name: string): string {
  const parsed = new URL(url)
  parsed.pathname = `/${name}`
  return parsed.toString()
}

/**
 * A fresh, migrated database for one test file: in-memory PGlite by default, or a new
 * database on the TEST_DATABASE_URL server that is dropped afterwards.
 */
export async function createTestDatabase(): Promise<TestDatabase> {
  if (!externalTestUrl) {
    const database = await openEmbeddedDatabase('memory://')
    await database.migrate()
    return { database, url: null, drop: () => database.close() }
  }
  const scratch = await createScratchPostgresDatabase(externalTestUrl)
  const database = openExternalDatabase(scratch.url, { maxConnections: 5 })
  await database.migrate()
  return {
    database,
    url: scratch.url,
    async drop() {
      await database.close()
      await scratch.drop()
    },
  }
}

/** An empty (unmigrated) database on the given server, dropped by drop(). */
export async function createScratchPostgresDatabase(serverUrl: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `mailgate_test_${randomBytes(6).toString('hex')}`
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} })
  await admin.unsafe(`create database "${name}"`)
  return {
    url: withDatabaseName(serverUrl, name),
    async drop() {
      await admin.unsafe(`drop database if exists "${name}" with (force)`)
      await admin.end({ timeout: 5 })
    },
  }
}
