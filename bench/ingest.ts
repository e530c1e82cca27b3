/**
 * npm run bench:ingest [-- http|inprocess|pipeline|statements|backlog|notifications ...]   (default: all six)
 *
 * backlog and notifications are the mailbox sync end to end, from delta to stored outcome
 * (bench/sync.ts, also `npm run bench:sync`): run after the phases below, in a child process
 * of their own, with the same database choice.
 *
 * Mail intake throughput, on embedded PGlite (on disk) and on PostgreSQL (BENCH_DATABASE_URL
 * or TEST_DATABASE_URL: a scratch database on that server, dropped afterwards; skipped with a
 * notice when unset). The mail is bench/ingest-mail.ts's: about 38 KB each (Outlook-style
 * multipart/alternative text + html with a 12 KB PDF), every one distinct, in a fixed mix of
 * ten whose outcomes are known in test/support/ingest.ts's world (with 100 more messages
 * Mailgate sent, for work items the replies spread over): 5 requested (3 to support@, 2 to
 * billing@), 3 appended (replies to Mailgate's sent messages), 1 unhandled (an automatic
 * reply) and 1 discarded (a blocked sender). After each phase the stored outcomes are counted
 * and compared with that mix, and any duplicate is reported (none is meant).
 *
 * http        POST /v1/ingest?connectorId=… as message/rfc822 from a keep-alive load client in
 *             a child process (bench/ingest-client.ts: 20 connections, each sending a distinct
 *             mail after another; 1 s warm-up, then 10 s): messages/s and p50/p99 latency,
 *             beside a bare Fastify route in the same run that reads the same body to its end
 *             and answers 201 with a small JSON. Mailgate ÷ bare is the figure to compare.
 * inprocess   app.services.inbound.ingestMime(connectorId, <the raw mail>) without HTTP,
 *             20 callers at once, 3,000 mails (or 15 s): streaming into storage, parsing, the
 *             pipeline.
 * pipeline    app.services.inbound.accept(...) alone: 3,000 mails (or 15 s) parsed beforehand (parseMime,
 *             then storable), one source blob written once and named by all, a distinct
 *             sha256 per mail; 20 callers at once. Dedupe keys, the stored row, the pipeline's
 *             steps, outcome and events: what every intake ends in. Target: 1,000 messages/s
 *             on PostgreSQL on the 2-core reference machine. Reported as an absolute figure.
 * statements  PostgreSQL only, a separate short run: every statement postgres.js sends
 *             (through its `debug` hook), counted per message by kind with the bytes of their
 *             parameters, for accept and for ingestMime, one caller, 20 cycles of the mix.
 *
 * For the in-process phases the CPU each side used is given in cores (of 2): this process,
 * and on PostgreSQL the server processes of the scratch database's connections (from
 * /proc, so only for a server on this machine). Everything Mailgate does runs in this
 * process; Microsoft is the test fake (nock), needed only to set up the world.
 *
 * BENCH_SECONDS (10), BENCH_WARMUP (1), BENCH_CONNECTIONS (20), BENCH_MESSAGES (3000),
 * BENCH_PHASE_SECONDS (15: an in-process phase stops taking new mails after this long, so
 * that a slow database does not stretch the run; its rate is of the mails it took),
 * BENCH_CONCURRENCY (20), BENCH_COUNTED (20 cycles of 10; BENCH_SHOW_SQL=1 prints every
 * statement text counted), BENCH_DATABASES=pglite or =postgres for one database only.
 * BENCH_CPU_PROFILE=<prefix> profiles the in-process phases on PostgreSQL (on PGlite when
 * PostgreSQL is not run) through the inspector, into <prefix>.inprocess.cpuprofile and
 * <prefix>.pipeline.cpuprofile; summarise one with `node bench/cpu-profile.ts <file>`.
 */
import { spawn } from 'node:child_process'
import { hash } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { Session } from 'node:inspector/promises'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { sql } from 'drizzle-orm'
import { drizzle } from 'drizzle-orm/postgres-js'
import Fastify from 'fastify'
import postgres from 'postgres'
import type { App } from '../src/app.ts'
import { openExternalDatabase, rowsOf, schema, type Database, type Db } from '../src/database/index.ts'
import type { Scope } from '../src/modules/api-keys/scopes.ts'
import { parseMime } from '../src/modules/inbound/mime.ts'
import { storable, type ParsedMail } from '../src/modules/inbound/parsed-mail.ts'
import type { TestApp } from '../test/support/app.ts'
import { createScratchPostgresDatabase } from '../test/support/database.ts'
import { FakeMicrosoft } from '../test/support/fake-microsoft.ts'
import { buildIngestWorld } from '../test/support/ingest.ts'
import { benchMail, expectedMix, kindOf, SENT_MESSAGES, sentMessageId, sentWorkItem } from './ingest-mail.ts'
import { ADMIN_KEY, adminCall, cpuMeter, benchApp, benchDatabaseKinds, benchPostgresUrl, printReproduce, scratchEmbeddedDatabase } from './support.ts'

type Kind = 'pglite' | 'postgres'

const root = fileURLToPath(new URL('..', import.meta.url))
const postgresUrl = benchPostgresUrl()
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10)
const WARMUP = Number(process.env.BENCH_WARMUP ?? 1)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 20)
const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 3000)
const PHASE_SECONDS = Number(process.env.BENCH_PHASE_SECONDS ?? 15)
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 20)
const COUNTED_CYCLES = Number(process.env.BENCH_COUNTED ?? 20)
const PROFILE = process.env.BENCH_CPU_PROFILE || undefined
const SHOW_SQL = Boolean(process.env.BENCH_SHOW_SQL)
/** Mailgate's default pool size. */
const POOL = 10

// ---------------------------------------------------------------------------------------
// Setup: a database, Mailgate on it, and the ingest world of the fixture corpus.
// ---------------------------------------------------------------------------------------

interface Setup {
  kind: Kind
  app: App
  db: Db
  connectorId: string
  ingestKey: string
  close(): Promise<void>
}

async function openDatabase(kind: Kind): Promise<{ database: Database; cleanup(): Promise<void> }> {
  if (kind === 'pglite') return scratchEmbeddedDatabase('mailgate-bench-ingest-')
  const scratch = await createScratchPostgresDatabase(postgresUrl!)
  return { database: openExternalDatabase(scratch.url, { maxConnections: POOL }), cleanup: scratch.drop }
}

/** SENT_MESSAGES messages sent from support@ for their work items, with the Message-IDs Graph reported: what replies answer. */
async function addSentMessages(app: App) {
  for (let k = 0; k < SENT_MESSAGES; k++) {
    const message = { from: 'support@contoso.example', to: [`customer${k}@fabrikam.example`], subject: 'Your printer', body: { contentType: 'text', content: 'We are on it.' } }
    const { id } = (await adminCall(app, 'POST', '/v1/messages', { ...message, workItemRef: sentWorkItem(k) })) as { id: string }
    await app.database.db.execute(sql`update outbound_messages set status = 'sent', sent_at = now(), graph_ids = ${JSON.stringify({ internetMessageId: sentMessageId(k) })}::jsonb where id = ${id}`)
  }
}

/** Mailgate on `database` (migrated here), with the world test/support/ingest.ts builds for the fixture corpus, and sent messages. */
async function setUp(kind: Kind, database: Database, cleanup: () => Promise<void>): Promise<Setup> {
  await database.migrate()
  const app = await benchApp(database)
  const keyWith = async (...scopes: Scope[]) => (await app.services.apiKeys.create({ keyId: null }, { name: `bench ${scopes.join(' ')}`, scopes })).key
  const testApp: TestApp = { app, db: { database, url: null, drop: async () => {} }, adminKey: ADMIN_KEY, logs: [], keyWith, close: async () => {} }
  const fake = new FakeMicrosoft().start()
  let world: Awaited<ReturnType<typeof buildIngestWorld>>
  try {
    world = await buildIngestWorld(testApp, fake, fake.addTenant())
    await addSentMessages(app)
  } finally {
    fake.stop() // intake never calls Microsoft
  }
  return {
    kind,
    app,
    db: database.db,
    connectorId: world.connectorId,
    ingestKey: world.ingestKey,
    async close() {
      await app.close()
      await database.close()
      await cleanup()
    },
  }
}

// ---------------------------------------------------------------------------------------
// What a phase is measured by: rate, outcomes stored, CPU used on each side.
// ---------------------------------------------------------------------------------------

interface Result {
  kind: Kind
  phase: string
  /** Mails measured (HTTP: answered in the measured seconds). */
  messages: number
  perSecond: number
  latency?: { p50: number; p99: number }
  bare?: number
  /** Cores used on average: this process, and PostgreSQL's backends (null: not measured). */
  cpu?: { node: number; postgres: number | null }
  outcomes: Record<string, number>
  expected: Record<string, number>
  failures: string[]
}

async function outcomeCounts(db: Db): Promise<Record<string, number>> {
  const rows = rowsOf<{ outcome: string; n: number }>(await db.execute(sql`select outcome, count(*)::int as n from inbound_emails group by outcome`))
  return Object.fromEntries(rows.map((row) => [row.outcome, row.n]))
}

function subtract(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(after).map(([key, n]) => [key, n - (before[key] ?? 0)]).filter(([, n]) => n !== 0))
}

const sameMix = (a: Record<string, number>, b: Record<string, number>) =>
  Object.keys({ ...a, ...b }).every((key) => (a[key] ?? 0) === (b[key] ?? 0))

const formatMix = (mix: Record<string, number>) =>
  Object.entries(mix)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([key, n]) => `${key} ${n}`)
    .join(', ')

/** Runs `measure`, and reports the cores each side used meanwhile. */
async function withCpu<T>(setup: Setup, measure: () => Promise<T>): Promise<{ value: T; cpu: { node: number; postgres: number | null } }> {
  const stop = await cpuMeter(setup.kind, setup.db)
  const value = await measure()
  return { value, cpu: await stop() }
}

/**
 * Calls `work` for indexes 0, 1, ... `concurrency` at a time, until `count` calls or until
 * PHASE_SECONDS have passed; how many were made (all finished), the time taken, what failed.
 */
async function runConcurrently(count: number, concurrency: number, work: (index: number) => Promise<unknown>) {
  let next = 0
  const failures: string[] = []
  const started = performance.now()
  const deadline = started + PHASE_SECONDS * 1000
  const caller = async () => {
    while (next < count && performance.now() < deadline) {
      const index = next++
      await work(index).catch((error: unknown) => failures.push(`#${index}: ${error instanceof Error ? error.message : String(error)}`))
    }
  }
  await Promise.all(Array.from({ length: concurrency }, caller))
  return { calls: next, ms: performance.now() - started, failures }
}

/** The first few calls that threw, and how many were answered as duplicates (status 200). */
function callFailures(thrown: string[], statuses: Record<number, number>): string[] {
  const failures = [...thrown.slice(0, 3), ...(thrown.length > 3 ? [`…and ${thrown.length - 3} more`] : [])]
  if (statuses[200]) failures.push(`${statuses[200]} taken for duplicates`)
  return failures
}

async function* once(raw: Buffer): AsyncGenerator<Buffer> {
  yield raw
}

// ---------------------------------------------------------------------------------------
// http: POST /v1/ingest against a bare route, from a load client in a child process.
// ---------------------------------------------------------------------------------------

interface LoadResult {
  requests: number
  perSecond: number
  latency: { p50: number; p99: number; max: number }
  statuses: Record<string, number>
  sent: number
  errors: number
}

function loadClient(url: string, key: string, tag: string): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const args = [join(root, 'bench/ingest-client.ts'), url, key, String(CONNECTIONS), String(WARMUP), String(SECONDS), tag]
    const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (data) => (out += data))
    child.on('error', reject)
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as LoadResult) : reject(new Error(`the load client exited ${code}`))))
  })
}

/** The ceiling of the HTTP stack: reads the raw body to its end, answers 201 with a small JSON. */
async function bareServer() {
  const bare = Fastify({ logger: false })
  const bodies = new WeakMap<object, AsyncIterable<Buffer>>()
  bare.addContentTypeParser('message/rfc822', (request, payload, done) => {
    bodies.set(request, payload)
    done(null, '')
  })
  bare.post('/v1/ingest', async (request, reply) => {
    let size = 0
    for await (const chunk of bodies.get(request)!) size += chunk.length
    return reply.code(201).send({ id: '01a2017b-39b3-77d7-8420-6279506f02f7', outcome: 'received', size })
  })
  return { url: await bare.listen({ port: 0, host: '127.0.0.1' }), close: () => bare.close() }
}

function answerFailures(result: LoadResult): string[] {
  return Object.entries(result.statuses)
    .filter(([status]) => status !== '201')
    .map(([status, n]) => `${n} answered ${status === '0' ? 'with no HTTP answer' : status}`)
}

async function benchHttp(setup: Setup): Promise<Result> {
  const bare = await bareServer()
  const bareResult = await loadClient(`${bare.url}/v1/ingest?connectorId=${setup.connectorId}`, '-', 'bare').finally(() => bare.close())
  const url = await setup.app.listen({ port: 0, host: '127.0.0.1' })
  const before = await outcomeCounts(setup.db)
  const { value: result, cpu } = await withCpu(setup, () => loadClient(`${url}/v1/ingest?connectorId=${setup.connectorId}`, setup.ingestKey, 'http'))
  const outcomes = subtract(await outcomeCounts(setup.db), before)
  return {
    kind: setup.kind,
    phase: 'HTTP intake (POST /v1/ingest)',
    messages: result.requests,
    perSecond: result.perSecond,
    latency: result.latency,
    bare: bareResult.perSecond,
    cpu,
    outcomes,
    expected: expectedMix(result.sent),
    failures: [...answerFailures(result), ...answerFailures(bareResult).map((failure) => `bare route: ${failure}`)],
  }
}

// ---------------------------------------------------------------------------------------
// inprocess: ingestMime without HTTP.
// ---------------------------------------------------------------------------------------

async function benchInProcess(setup: Setup, raws: Buffer[], profileFile?: string): Promise<Result> {
  const before = await outcomeCounts(setup.db)
  const statuses: Record<number, number> = {}
  const { value: run, cpu } = await withCpu(setup, () =>
    profiled(profileFile, () =>
      runConcurrently(raws.length, CONCURRENCY, async (index) => {
        const result = await setup.app.services.inbound.ingestMime(setup.connectorId, once(raws[index]!))
        statuses[result.status] = (statuses[result.status] ?? 0) + 1
      }),
    ),
  )
  const outcomes = subtract(await outcomeCounts(setup.db), before)
  const failures = callFailures(run.failures, statuses)
  return { kind: setup.kind, phase: 'in-process ingestMime', messages: run.calls, perSecond: (run.calls * 1000) / run.ms, cpu, outcomes, expected: expectedMix(run.calls), failures }
}

// ---------------------------------------------------------------------------------------
// pipeline: accept() alone, on mail parsed beforehand.
// ---------------------------------------------------------------------------------------

interface Prepared {
  mail: ParsedMail
  sourceHash: string
}

async function parseAll(count: number, tag: string): Promise<Prepared[]> {
  const prepared: Prepared[] = []
  for (let n = 0; n < count; n++) {
    const raw = benchMail(tag, n)
    prepared.push({ mail: storable(await parseMime(once(raw))), sourceHash: hash('sha256', raw) })
  }
  return prepared
}

/** Profiles `measure` with the inspector when `file` is given (sampling every 200 µs). */
async function profiled<T>(file: string | undefined, measure: () => Promise<T>): Promise<T> {
  if (!file) return measure()
  const session = new Session()
  session.connect()
  await session.post('Profiler.enable')
  await session.post('Profiler.setSamplingInterval', { interval: 200 })
  await session.post('Profiler.start')
  try {
    return await measure()
  } finally {
    const { profile } = await session.post('Profiler.stop')
    await writeFile(file, JSON.stringify(profile))
    session.disconnect()
    console.log(`CPU profile of the phase written to ${file}`)
  }
}

async function benchPipeline(setup: Setup, mails: Prepared[], profileFile?: string): Promise<Result> {
  const blob = await setup.app.services.attachments.write(setup.db, benchMail('pipeline-source', 0))
  const before = await outcomeCounts(setup.db)
  const statuses: Record<number, number> = {}
  const { value: run, cpu } = await withCpu(setup, () =>
    profiled(profileFile, () =>
      runConcurrently(mails.length, CONCURRENCY, async (index) => {
        const { mail, sourceHash } = mails[index]!
        const result = await setup.app.services.inbound.accept(setup.connectorId, 'mime', blob, sourceHash, mail)
        statuses[result.status] = (statuses[result.status] ?? 0) + 1
      }),
    ),
  )
  const outcomes = subtract(await outcomeCounts(setup.db), before)
  const failures = callFailures(run.failures, statuses)
  return { kind: setup.kind, phase: 'pipeline alone (accept)', messages: run.calls, perSecond: (run.calls * 1000) / run.ms, cpu, outcomes, expected: expectedMix(run.calls), failures }
}

// ---------------------------------------------------------------------------------------
// statements: what each message sends to PostgreSQL, counted through postgres.js's debug hook.
// ---------------------------------------------------------------------------------------

/** `insert inbound_emails`, `select inbound_emails for update`, `select inbound_dedupe_keys+inbound_emails`, `begin`... */
function statementLabel(text: string): string {
  const statement = text.replace(/\s+/g, ' ').trim().toLowerCase()
  const verb = statement.startsWith('select distinct') ? 'select distinct' : statement.split(' ')[0]!
  const target = /^(?:insert into|update|delete from) "?(\w+)"?/.exec(statement)?.[1]
  const tables = target ? [target] : [...statement.matchAll(/ (?:from|join) "?(\w+)"?/g)].map((match) => match[1]!)
  const extras = [statement.includes('on conflict') ? 'on conflict' : '', statement.includes(' for update') ? 'for update' : '', statement.includes(' returning ') ? 'returning' : '']
  return [verb, [...new Set(tables)].join('+'), ...extras].filter(Boolean).join(' ')
}

/** Bytes of a statement's parameters, about as they travel (text format). */
function parameterBytes(parameters: unknown[]): number {
  return parameters.reduce<number>((sum, value) => sum + (Buffer.isBuffer(value) ? value.length : value === null || value === undefined ? 0 : Buffer.byteLength(String(value))), 0)
}

/** A Database like openExternalDatabase's, whose every statement is passed to `onStatement`. */
function countingDatabase(url: string, onStatement: (text: string, parameters: unknown[]) => void): Database {
  const client = postgres(url, {
    max: POOL,
    onnotice: () => {},
    connection: { application_name: 'mailgate' },
    debug: (_connection, text, parameters) => onStatement(text, parameters as unknown[]),
  })
  const db = drizzle({ client, schema, casing: 'snake_case' }) as unknown as Db
  return {
    kind: 'external',
    db,
    ping: async () => void (await db.execute(sql`select 1`)),
    migrate: () => Promise.resolve(), // migrated beforehand by openExternalDatabase
    pendingMigrations: () => Promise.resolve([]),
    close: () => client.end({ timeout: 10 }),
  }
}

interface StatementCount {
  path: string
  messages: number
  byLabel: Map<string, { count: number; bytes: number; texts: Set<string> }>
  byMailKind: Map<string, number[]>
}

async function countStatements(): Promise<StatementCount[]> {
  const scratch = await createScratchPostgresDatabase(postgresUrl!)
  const migrating = openExternalDatabase(scratch.url, { maxConnections: 1 })
  await migrating.migrate()
  await migrating.close()
  let current: { text: string; bytes: number }[] | null = null
  const setup = await setUp('postgres', countingDatabase(scratch.url, (text, parameters) => current?.push({ text, bytes: parameterBytes(parameters) })), scratch.drop)
  try {
    const messages = COUNTED_CYCLES * 10
    const blob = await setup.app.services.attachments.write(setup.db, benchMail('count-source', 0))
    const mails = await parseAll(messages, 'count-accept')
    const paths: [string, (n: number) => Promise<unknown>][] = [
      ['pipeline alone (accept)', (n) => setup.app.services.inbound.accept(setup.connectorId, 'mime', blob, mails[n]!.sourceHash, mails[n]!.mail)],
      ['in-process ingestMime', (n) => setup.app.services.inbound.ingestMime(setup.connectorId, once(benchMail('count-ingest', n)))],
    ]
    const counts: StatementCount[] = []
    for (const [path, call] of paths) {
      const count: StatementCount = { path, messages, byLabel: new Map(), byMailKind: new Map() }
      for (let n = 0; n < messages; n++) {
        current = []
        await call(n)
        for (const { text, bytes } of current) {
          const entry = count.byLabel.get(statementLabel(text)) ?? { count: 0, bytes: 0, texts: new Set<string>() }
          entry.count++
          entry.bytes += bytes
          entry.texts.add(text)
          count.byLabel.set(statementLabel(text), entry)
        }
        count.byMailKind.set(kindOf(n), [...(count.byMailKind.get(kindOf(n)) ?? []), current.length])
        current = null
      }
      counts.push(count)
    }
    return counts
  } finally {
    await setup.close()
  }
}

function printStatements(counts: StatementCount[]) {
  for (const count of counts) {
    const total = [...count.byLabel.values()].reduce((sum, entry) => sum + entry.count, 0)
    const bytes = [...count.byLabel.values()].reduce((sum, entry) => sum + entry.bytes, 0)
    console.log(
      `\nstatements per message, ${count.path} on PostgreSQL (${count.messages} messages, one caller): ${(total / count.messages).toFixed(1)}, ` +
        `with ${(bytes / count.messages / 1024).toFixed(1)} KiB of parameters`,
    )
    const kinds = [...count.byMailKind].map(([kind, ns]) => `${kind} ${(ns.reduce((a, b) => a + b, 0) / ns.length).toFixed(0)}`)
    console.log(`  by mail: ${kinds.join(', ')}`)
    const labels = [...count.byLabel].sort(([, a], [, b]) => b.count - a.count)
    for (const [label, entry] of labels) {
      const kib = `${(entry.bytes / count.messages / 1024).toFixed(1).padStart(5)} KiB`
      console.log(`  ${(entry.count / count.messages).toFixed(2).padStart(6)}  ${kib}  ${label}${entry.texts.size > 1 ? `   (${entry.texts.size} different texts)` : ''}`)
      if (SHOW_SQL) for (const text of entry.texts) console.log(`            ${text.replace(/\s+/g, ' ')}`)
    }
  }
}

// ---------------------------------------------------------------------------------------
// The run.
// ---------------------------------------------------------------------------------------

function printResult(result: Result) {
  const cores = (n: number | null) => (n === null ? 'n/a' : n.toFixed(2))
  const parts = [`${result.perSecond.toFixed(0).padStart(6)} msg/s (${result.messages})`]
  if (result.latency) parts.push(`p50 ${result.latency.p50.toFixed(0)} ms, p99 ${result.latency.p99.toFixed(0)} ms`)
  if (result.bare !== undefined) parts.push(`bare route ${result.bare.toFixed(0)} msg/s, ratio ${(result.perSecond / result.bare).toFixed(3)}`)
  if (result.cpu) parts.push(`CPU cores: this process ${cores(result.cpu.node)}, PostgreSQL ${cores(result.cpu.postgres)}`)
  console.log(`  ${result.phase.padEnd(30)} ${parts.join('   ')}`)
  const mix = sameMix(result.outcomes, result.expected) ? 'as expected' : `EXPECTED ${formatMix(result.expected)}`
  console.log(`  ${''.padEnd(30)} outcomes: ${formatMix(result.outcomes)} (${mix}); duplicates ${result.outcomes['duplicate'] ?? 0}`)
  for (const failure of result.failures) console.log(`  ${''.padEnd(30)} !! ${failure}`)
}

function summary(results: Result[], counts: StatementCount[]) {
  const label = (kind: Kind) => (kind === 'pglite' ? 'PGlite (on disk)' : 'PostgreSQL')
  const cores = (n: number | null | undefined) => (n === null || n === undefined ? '–' : n.toFixed(2))
  console.log(`\n=== Summary: node ${process.version}, ${availableParallelism()} cores, ${new Date().toISOString().slice(0, 10)}`)
  console.log('| database | phase | mails | msg/s | p50 / p99 ms | bare route msg/s | ÷ bare | CPU cores: node / PostgreSQL | outcomes as expected | duplicates |')
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
  for (const result of results) {
    console.log(
      `| ${label(result.kind)} | ${result.phase} | ${result.messages} | ${result.perSecond.toFixed(0)} | ${result.latency ? `${result.latency.p50.toFixed(0)} / ${result.latency.p99.toFixed(0)}` : '–'} | ` +
        `${result.bare?.toFixed(0) ?? '–'} | ${result.bare ? (result.perSecond / result.bare).toFixed(3) : '–'} | ${cores(result.cpu?.node)} / ${cores(result.cpu?.postgres)} | ` +
        `${sameMix(result.outcomes, result.expected) && result.failures.length === 0 ? 'yes' : 'NO'} | ${result.outcomes['duplicate'] ?? 0} |`,
    )
  }
  for (const count of counts) {
    const total = [...count.byLabel.values()].reduce((sum, entry) => sum + entry.count, 0)
    console.log(`statements per message on PostgreSQL, ${count.path}: ${(total / count.messages).toFixed(1)}`)
  }
  const settings = { BENCH_SECONDS: SECONDS, BENCH_WARMUP: WARMUP, BENCH_CONNECTIONS: CONNECTIONS, BENCH_MESSAGES: MESSAGES, BENCH_PHASE_SECONDS: PHASE_SECONDS, BENCH_CONCURRENCY: CONCURRENCY, BENCH_COUNTED: COUNTED_CYCLES }
  printReproduce('bench:ingest', postgresUrl, settings)
}

async function main() {
  const parts = process.argv.slice(2).filter((arg) => !arg.startsWith('-'))
  const run = (part: string) => parts.length === 0 || parts.includes(part)
  const kinds: Kind[] = benchDatabaseKinds(postgresUrl)
  const profileKind: Kind = kinds.includes('postgres') ? 'postgres' : 'pglite'
  const profileFile = (kind: Kind, phase: string) => (PROFILE && kind === profileKind ? `${PROFILE}.${phase}.cpuprofile` : undefined)

  const raws = run('inprocess') ? Array.from({ length: MESSAGES }, (_, n) => benchMail('inprocess', n)) : []
  let mails: Prepared[] = []
  if (run('pipeline')) {
    const started = performance.now()
    mails = await parseAll(MESSAGES, 'pipeline')
    console.log(`parsed ${MESSAGES} mails for the pipeline phase in ${((performance.now() - started) / 1000).toFixed(1)} s (${((performance.now() - started) / MESSAGES).toFixed(2)} ms each, one at a time)`)
  }
  const sizes = Array.from({ length: 10 }, (_, n) => benchMail('size', n).length)
  console.log(`mail size ${Math.min(...sizes)}–${Math.max(...sizes)} bytes`)

  const results: Result[] = []
  for (const kind of kinds) {
    const started = performance.now()
    const { database, cleanup } = await openDatabase(kind)
    const setup = await setUp(kind, database, cleanup)
    try {
      console.log(`\n=== ${kind === 'pglite' ? 'PGlite (embedded, on disk)' : 'PostgreSQL'}: set up in ${((performance.now() - started) / 1000).toFixed(1)} s`)
      const phases: [string, () => Promise<Result>][] = [
        ['http', () => benchHttp(setup)],
        ['inprocess', () => benchInProcess(setup, raws, profileFile(kind, 'inprocess'))],
        ['pipeline', () => benchPipeline(setup, mails, profileFile(kind, 'pipeline'))],
      ]
      for (const [part, phase] of phases) {
        if (!run(part)) continue
        const result = await phase()
        printResult(result)
        results.push(result)
      }
    } finally {
      await setup.close()
    }
  }
  const counts = run('statements') && kinds.includes('postgres') ? await countStatements() : []
  printStatements(counts)
  summary(results, counts)
  const syncParts = ['backlog', 'notifications'].filter(run)
  if (syncParts.length > 0) await runSyncBench(parts.length === 0 ? [] : syncParts)
}

/** The sync phases, bench/sync.ts, in a process of their own (their own heap and nock). */
async function runSyncBench(parts: string[]): Promise<void> {
  console.log(`\n=== the mailbox sync end to end (bench/sync.ts ${parts.join(' ')})`)
  const child = spawn(process.execPath, [fileURLToPath(new URL('./sync.ts', import.meta.url)), ...parts], { stdio: 'inherit' })
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
  if (code !== 0) throw new Error(`bench/sync.ts ended with ${code}`)
}

await main()
