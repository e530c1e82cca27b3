import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildApp, type App, type AppOptions } from '../src/app.ts'
import { sql } from 'drizzle-orm'
import { openEmbeddedDatabase, rowsOf, type Database, type Db } from '../src/database/index.ts'
import { TokenProvider } from '../src/graph/token-provider.ts'
import { SecretBox } from '../src/lib/secret-box.ts'
import { createLogger } from '../src/logger.ts'
import { randomSecretsKey } from '../test/support/app.ts'

/** The admin key the in-process benchmarks bootstrap their app with. */
export const ADMIN_KEY = 'bench-admin-key-0123456789abcdefghijklmnopqrstuv'

/** An admin request through inject; anything but a success stops the benchmark. */
export async function adminCall(app: App, method: 'POST' | 'GET', url: string, payload?: object) {
  const response = await app.inject({ method, url, headers: { authorization: `Bearer ${ADMIN_KEY}` }, payload })
  if (response.statusCode >= 300) throw new Error(`${method} ${url}: ${response.statusCode} ${response.body}`)
  return response.json()
}

/** Mailgate on a migrated `database`, as the in-process benchmarks run it: warn-level logs, the admin key bootstrapped, ready. */
export async function benchApp(database: Database, options: Partial<AppOptions> = {}): Promise<App> {
  const app = await buildApp({
    database,
    secretBox: new SecretBox(randomSecretsKey()),
    tokenProvider: new TokenProvider(),
    logger: createLogger('warn'),
    collectDefaultMetrics: false,
    dispatcher: { autostart: false },
    ...options,
  })
  await app.services.apiKeys.ensureInitialAdminKey(ADMIN_KEY)
  await app.ready()
  return app
}

export type BenchDatabaseKind = 'pglite' | 'postgres'

/** The PostgreSQL server a bench also runs on (BENCH_DATABASE_URL or TEST_DATABASE_URL), if any. */
export function benchPostgresUrl(): string | undefined {
  return process.env.BENCH_DATABASE_URL || process.env.TEST_DATABASE_URL || undefined
}

/** The databases to run on: PGlite, and PostgreSQL when a server is given; BENCH_DATABASES narrows it. */
export function benchDatabaseKinds(postgresUrl: string | undefined): BenchDatabaseKind[] {
  if (!postgresUrl) console.log('PostgreSQL runs skipped: set BENCH_DATABASE_URL (or TEST_DATABASE_URL) to a server to include them.')
  return (postgresUrl ? (['pglite', 'postgres'] as const) : (['pglite'] as const)).filter(
    (kind) => !process.env.BENCH_DATABASES || process.env.BENCH_DATABASES.split(',').includes(kind),
  )
}

/** An embedded database in a temporary directory, removed afterwards. */
export async function scratchEmbeddedDatabase(prefix: string): Promise<{ database: Database; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  return { database: await openEmbeddedDatabase(dir), cleanup: () => rm(dir, { recursive: true, force: true }) }
}

function redacted(url: string): string {
  const parsed = new URL(url)
  if (parsed.password) parsed.password = '…'
  return parsed.toString()
}

/** The line that runs the same measurement again: the server (password hidden), the settings, the phases asked for. */
export function printReproduce(script: string, postgresUrl: string | undefined, settings: Record<string, string | number>): void {
  const databases = process.env.BENCH_DATABASES ? ` BENCH_DATABASES=${process.env.BENCH_DATABASES}` : ''
  const url = postgresUrl ? `BENCH_DATABASE_URL=${redacted(postgresUrl)} ` : ''
  const parts = process.argv.slice(2).filter((arg) => !arg.startsWith('-'))
  console.log(`\nreproduce: ${url}${Object.entries(settings).map(([name, value]) => `${name}=${value}`).join(' ')}${databases} npm run ${script}${parts.length ? ` -- ${parts.join(' ')}` : ''}`)
}

/** CPU time (ms) of the server processes serving this database's connections, from /proc; null when not readable. */
async function postgresCpuMs(kind: BenchDatabaseKind, db: Db): Promise<Map<number, number> | null> {
  if (kind !== 'postgres') return null
  const rows = rowsOf<{ pid: number }>(await db.execute(sql`select pid from pg_stat_activity where datname = current_database()`))
  const ticks = new Map<number, number>()
  try {
    for (const { pid } of rows) {
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
      ticks.set(pid, ((Number(fields[11]) + Number(fields[12])) * 1000) / 100) // utime + stime, at 100 ticks a second
    }
  } catch {
    return null // the server runs elsewhere
  }
  return ticks
}

/** Measures the cores each side uses from now until the returned function is called. */
export async function cpuMeter(kind: BenchDatabaseKind, db: Db) {
  const pgBefore = await postgresCpuMs(kind, db)
  const started = performance.now()
  const nodeBefore = process.cpuUsage()
  return async () => {
    const node = process.cpuUsage(nodeBefore)
    const wallMs = performance.now() - started
    const pgAfter = await postgresCpuMs(kind, db)
    let postgresMs: number | null = null
    if (pgBefore && pgAfter) postgresMs = [...pgAfter].reduce((sum, [pid, ms]) => sum + ms - (pgBefore.get(pid) ?? 0), 0)
    return { node: (node.user + node.system) / 1000 / wallMs, postgres: postgresMs === null ? null : postgresMs / wallMs }
  }
}
