import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { migrationsFolder, openExternalDatabase, type Database } from '../src/database/index.ts'
import { SecretBox } from '../src/lib/secret-box.ts'
import { createServices } from '../src/modules/services.ts'
import { createScratchPostgresDatabase, externalTestUrl } from './support/database.ts'

if (!externalTestUrl) {
  console.warn(
    '[postgres.test.ts] SKIPPED: these tests need a real PostgreSQL server. Set TEST_DATABASE_URL ' +
      '(e.g. postgres://postgres@127.0.0.1:55432/postgres); `bash .ci/run` starts one.',
  )
}

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

async function scratch() {
  const db = await createScratchPostgresDatabase(externalTestUrl!)
  cleanups.push(db.drop)
  return db
}

function open(url: string): Database {
  const database = openExternalDatabase(url, { maxConnections: 3 })
  cleanups.push(() => database.close())
  return database
}

const root = fileURLToPath(new URL('..', import.meta.url))

function run(args: string[], env: Record<string, string>) {
  const child = spawn(process.execPath, args, { cwd: root, env: { PATH: process.env.PATH, ...env } })
  let output = ''
  child.stdout.on('data', (chunk) => (output += chunk))
  child.stderr.on('data', (chunk) => (output += chunk))
  return { child, output: () => output, exited: new Promise<number | null>((resolve) => child.on('exit', resolve)) }
}

const SECRETS_KEY = Buffer.alloc(32, 7).toString('base64')

describe.skipIf(!externalTestUrl)('on a real PostgreSQL server', () => {
  it('instances migrating at the same moment both succeed and apply each migration once', async () => {
    const { url } = await scratch()
    const instances = [open(url), open(url), open(url)]
    const journal = JSON.parse(await readFile(join(migrationsFolder, 'meta', '_journal.json'), 'utf8'))
    const all = journal.entries.map((entry: { tag: string }) => entry.tag)
    expect(all[0]).toBe('0000_init')
    expect(await instances[0]!.pendingMigrations()).toEqual(all)
    await Promise.all(instances.map((instance) => instance.migrate()))
    expect(await instances[1]!.pendingMigrations()).toEqual([])
  })

  it('instances bootstrapping at the same moment create exactly one admin key', async () => {
    const { url } = await scratch()
    const first = open(url)
    await first.migrate()
    const instances = [first, open(url), open(url), open(url)]
    const results = await Promise.all(
      instances.map((instance) => createServices({ db: instance.db, secretBox: new SecretBox(SECRETS_KEY) }).apiKeys.ensureInitialAdminKey(undefined)),
    )
    expect(results.filter((result) => result?.generatedKey)).toHaveLength(1)
    const page = await createServices({ db: first.db, secretBox: new SecretBox(SECRETS_KEY) }).apiKeys.list({ limit: 10, includeRevoked: true })
    expect(page.items).toHaveLength(1)
  })

  it('the server refuses to start on a schema that is behind, naming the fix; MIGRATE_ON_START fixes it', async () => {
    const { url } = await scratch()
    const env = { DATABASE_URL: url, SECRETS_KEY, HOST: '127.0.0.1', PORT: '0' }
    const refused = run(['src/server.ts'], env)
    expect(await refused.exited).toBe(1)
    expect(refused.output()).toContain('npm run db:migrate')

    const started = run(['src/server.ts'], { ...env, MIGRATE_ON_START: 'true' })
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(started.output())), 30_000)
      started.child.stdout.on('data', () => {
        if (started.output().includes('mailgate is ready')) {
          clearTimeout(timer)
          resolve()
        }
      })
    })
    started.child.kill('SIGTERM')
    expect(await started.exited).toBe(0)
  })

  it('npm run db:migrate applies pending migrations to DATABASE_URL', async () => {
    const { url } = await scratch()
    const migrate = run(['src/cli/migrate.ts'], { DATABASE_URL: url, SECRETS_KEY })
    expect(await migrate.exited).toBe(0)
    expect(migrate.output()).toMatch(/applied 0000_init, 0001_integrations/)
    expect(await open(url).pendingMigrations()).toEqual([])
  })
})
