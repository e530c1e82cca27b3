import { existsSync } from 'node:fs'
import { mkdir, readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { sql } from 'drizzle-orm'
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core'
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js'
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator'
import postgres from 'postgres'
import * as schema from '../../db/schema.ts'

export { schema }

/**
 * The one query interface every repository uses. PGlite and postgres.js both provide it,
 * and a transaction is one too, so repositories accept either.
 */
export type Db = PgDatabase<PgQueryResultHKT, typeof schema>

export interface Database {
  readonly kind: 'embedded' | 'external'
  readonly db: Db
  ping(): Promise<void>
  /** Applies pending migrations; safe when several instances start at once. */
  migrate(): Promise<void>
  /** Names of committed migrations the database has not applied yet. */
  pendingMigrations(): Promise<string[]>
  close(): Promise<void>
}

export const migrationsFolder = fileURLToPath(new URL('../../db/migrations', import.meta.url))

/** PGlite answers `execute` with { rows }, postgres.js with the rows themselves. */
export function rowsOf<T>(result: unknown): T[] {
  if (Array.isArray(result)) return result as T[]
  return ((result as { rows?: T[] }).rows ?? []) as T[]
}

interface JournalEntry {
  tag: string
  when: number
}

async function pendingMigrations(db: Db): Promise<string[]> {
  const journal = JSON.parse(await readFile(join(migrationsFolder, 'meta', '_journal.json'), 'utf8')) as {
    entries: JournalEntry[]
  }
  // Two statements: PostgreSQL resolves table names when it plans, so one query cannot
  // both test for the migrations table and read it.
  const [table] = rowsOf<{ present: boolean }>(
    await db.execute(sql`select to_regclass('drizzle.__drizzle_migrations') is not null as present`),
  )
  const [state] = table?.present
    ? rowsOf<{ applied: string | null }>(
        await db.execute(sql`select max(created_at)::text as applied from drizzle.__drizzle_migrations`),
      )
    : []
  const appliedUpTo = state?.applied ? Number(state.applied) : 0
  return journal.entries.filter((entry) => entry.when > appliedUpTo).map((entry) => entry.tag)
}

/**
 * The type parsers Drizzle's PGlite driver passes with every query: dates, times and
 * intervals (and their arrays) come back as text, which Drizzle's columns then map.
 */
const asText = (value: string) => value
const DRIZZLE_PARSERS = Object.fromEntries([1114, 1184, 1186, 1082, 1231, 1115, 1185, 1187, 1182].map((oid) => [oid, asText]))

interface PgliteLike {
  query(sql: string, params?: unknown[], options?: { parsers?: object }): Promise<unknown>
  transaction<T>(callback: (tx: PgliteLike) => Promise<T>): Promise<T>
}

/** Whether a parser set (Drizzle keeps one per prepared query) covers exactly DRIZZLE_PARSERS' types; `known` remembers those that do. */
function isInstanceParserSet(parsers: object, known: WeakSet<object>): boolean {
  if (known.has(parsers)) return true
  const types = Object.keys(parsers)
  const same = types.length === Object.keys(DRIZZLE_PARSERS).length && types.every((type) => type in DRIZZLE_PARSERS)
  if (same) known.add(parsers)
  return same
}

/**
 * The client as Drizzle gets it: when a query's parsers are the ones the instance already has
 * (DRIZZLE_PARSERS), they are not passed again. PGlite merges per-query parsers into a copy
 * of all of its ~300 parsers for every query, which cost about a tenth of a GET's CPU. Any
 * other parser set (a later Drizzle's) still goes through.
 */
function withInstanceParsers<T extends object>(client: T, known = new WeakSet<object>()): T {
  return new Proxy(client, {
    get(target, property) {
      const value = Reflect.get(target, property, target) as unknown
      if (property === 'query') {
        return (sql: string, params?: unknown[], options?: { parsers?: object }) =>
          (target as unknown as PgliteLike).query(
            sql,
            params,
            options?.parsers !== undefined && isInstanceParserSet(options.parsers, known) ? { ...options, parsers: undefined } : options,
          )
      }
      if (property === 'transaction') {
        return <R>(callback: (tx: PgliteLike) => Promise<R>) =>
          (target as unknown as PgliteLike).transaction((tx) => callback(withInstanceParsers(tx as unknown as object, known) as unknown as PgliteLike))
      }
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}

/** Embedded PGlite; a data directory persists it, `memory://` keeps it in memory. */
export async function openEmbeddedDatabase(dataDir: string | 'memory://'): Promise<Database> {
  let location: string | undefined
  let firstStart = false
  if (dataDir !== 'memory://') {
    location = join(resolve(dataDir), 'pgdata')
    await mkdir(location, { recursive: true })
    firstStart = !existsSync(join(location, 'PG_VERSION'))
  }
  // Loaded on demand: PGlite's WebAssembly build costs ~150 MiB of memory just to import,
  // which a deployment on an external PostgreSQL should not pay.
  const [{ PGlite }, { drizzle: drizzlePglite }, { migrate: migratePglite }] = await Promise.all([
    import('@electric-sql/pglite'),
    import('drizzle-orm/pglite'),
    import('drizzle-orm/pglite/migrator'),
  ])
  // PostgreSQL's default 128 MB of shared buffers is most of PGlite's memory and far more than
  // one service's configuration and queue need; the operating system caches the files anyway.
  const options = { postgresqlconf: ['shared_buffers = 16MB'], parsers: DRIZZLE_PARSERS }
  let client = await PGlite.create(location, options)
  if (location && firstStart) {
    // Creating the cluster ran initdb in a WebAssembly instance of its own and left ~130 MiB
    // resident; a fresh instance on the new cluster starts as small as any later start.
    await client.close()
    client = await PGlite.create(location, options)
  }
  const pglite = drizzlePglite({ client: withInstanceParsers(client), schema, casing: 'snake_case' })
  const db = pglite as unknown as Db
  return {
    kind: 'embedded',
    db,
    async ping() {
      await client.query('select 1')
    },
    async migrate() {
      await migratePglite(pglite, { migrationsFolder })
    },
    pendingMigrations: () => pendingMigrations(db),
    async close() {
      if (!client.closed) await client.close()
    },
  }
}

export interface ExternalDatabaseOptions {
  maxConnections?: number
}

export function openExternalDatabase(url: string, options: ExternalDatabaseOptions = {}): Database {
  const client = postgres(url, {
    max: options.maxConnections ?? 10,
    onnotice: () => {},
    connection: { application_name: 'mailgate' },
  })
  const db = drizzlePostgres({ client, schema, casing: 'snake_case' }) as unknown as Db
  return {
    kind: 'external',
    db,
    async ping() {
      await db.execute(sql`select 1`)
    },
    async migrate() {
      // A dedicated connection holds the advisory lock for the whole run, so a second
      // instance starting at the same moment waits instead of racing the same DDL.
      const lockClient = postgres(url, { max: 1, onnotice: () => {} })
      try {
        await lockClient`select pg_advisory_lock(${MIGRATION_LOCK_ID})`
        await migratePostgres(drizzlePostgres({ client: lockClient, casing: 'snake_case' }), { migrationsFolder })
        await lockClient`select pg_advisory_unlock(${MIGRATION_LOCK_ID})`
      } finally {
        await lockClient.end({ timeout: 5 })
      }
    },
    pendingMigrations: () => pendingMigrations(db),
    async close() {
      await client.end({ timeout: 10 })
    },
  }
}

const MIGRATION_LOCK_ID = 720_451_001
