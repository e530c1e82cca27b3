/**
 * npm run bench:sync [-- backlog|notifications|flood ...]   (default: all three)
 *
 * The mailbox sync end to end (issue 13): Mailgate reading 100 shared mailboxes of the fake
 * Graph (test/support/fake-microsoft.ts, nock in this process), every Graph request answered
 * after 100 ms (the fake's latencyMs), on embedded PGlite (on disk) and on PostgreSQL
 * (BENCH_DATABASE_URL or TEST_DATABASE_URL: a scratch database on that server, dropped
 * afterwards; skipped with a notice when unset). Each mailbox has an incoming connector
 * (Inbox, fallback route) on one integration, created, tested and enabled through the API.
 * The mail is small text mail without attachments, so the sync takes it from the delta
 * page's JSON (no `$value` request). The sync runs with its default settings (pages of 50,
 * SYNC_CONCURRENCY 64 folders at once, 4 after-processing actions of a folder at once),
 * SYNC_INTERVAL 60 s. Every Graph request passes the per-mailbox gate (a slot row taken and
 * given back in the database). Also part of `npm run bench:ingest`.
 *
 * backlog and notifications run once per after-processing action of BENCH_SYNC_ACTIONS (none,markRead):
 * `markRead` is the API's default and its lightest action (one PATCH per message, done in
 * the folder's turn after the page is stored); `none` is not offered by the API (the
 * bench clears connectors.after_processing after the enable) and measures delta -> stored
 * alone, as the issue's figure asks.
 *
 * backlog        BENCH_SYNC_MESSAGES (20) messages wait in each Inbox; the first backlog
 *                enables the connectors with importExisting, a later one wakes them (manual
 *                sync). The app's sync loop (no PUBLIC_BASE_URL) is started, and runs until
 *                every message is stored and acted on. msg/s = messages ÷ (the last
 *                email's processed_at − start()). Beside it two ceilings, with L = latency,
 *                M = mailboxes, N = messages per mailbox, P = ceil(N / 50) delta pages per
 *                mailbox, r = Graph requests per message besides delta (0 for none, 1 for
 *                markRead), F = folders synced at once:
 *                  Graph's limits   M × N / ((P + r × N / 4) × L): requests per mailbox ÷
 *                                   concurrency × latency, except that a mailbox's delta pages
 *                                   come one after another (each link is in the page before),
 *                                   so the 4 concurrent requests can overlap only the per-message
 *                                   requests; all mailboxes run side by side. (Mail read as
 *                                   MIME, with attachments, adds 1 to r.)
 *                  the sync's shape F × N / ((P + r × N / 4) × L): the sync reads F folders
 *                                   at a time per instance; a folder reads its pages one after
 *                                   another and then does its actions 4 at a time, before any
 *                                   database or CPU time.
 *                From the measured rate, the time a folder's turn spent per message besides
 *                Graph's latency, F ÷ rate − (P + r × N / 4) × L ÷ N (the F turns share this
 *                process's CPU and the database).
 * notifications  A second app on the same database with PUBLIC_BASE_URL
 *                (https://mailgate.contoso.example; the fake reaches it through app.inject):
 *                one manual sync of every connector makes the 100 subscriptions, then the
 *                sync loop is started; with SYNC_INTERVAL 60 s only notifications wake
 *                folders. BENCH_SYNC_RATE (100) messages a second are delivered for
 *                BENCH_SYNC_SECONDS (10), round robin over the mailboxes (each gets one a
 *                second); each delivery makes the fake post a change notification at once.
 *                Per message, from deliver() to its inbound_emails row: seen (a poll every
 *                20 ms of the rows made since the oldest message not seen yet, ids being
 *                time-ordered; the time the poll answered) and processed_at (the pipeline's
 *                clock, set just before the row is written). p50/p95/p99 of "seen", against
 *                the target p95 < 1 s. Beside it: folders woken a second (min(rate, M))
 *                against the folder turns a second the sync can make at most with one
 *                message each, F ÷ ((1 + r) × L); the delta requests made (folder turns) and
 *                the messages each took; the notification answers; the sync loop's rounds,
 *                and how many started no folder.
 * flood          The notified app (as in notifications; made once for both), once, with the
 *                last action of BENCH_SYNC_ACTIONS; its sync loop running and NO mail delivered:
 *                BENCH_SYNC_FLOOD (10000) valid change-notification items (each subscription's
 *                id and clientState, changeType created, a made-up `Users/{id}/Messages/{id}`
 *                resource), round robin over the subscriptions, POSTed to
 *                PUBLIC_BASE_URL/v1/graph/notifications through the fake's transport (app.inject)
 *                in requests of BENCH_SYNC_FLOOD_BATCH (5) items, paced evenly over
 *                BENCH_SYNC_FLOOD_SECONDS (10; 1,000 items/s, harsher than the issue's 10,000 a
 *                minute), at most 20 requests in flight. Then until no folder is due or being
 *                synced (mailbox_folder_syncs: lease_owner null and due_at > now), at most 30 s.
 *                The answers by status (all must be 202) and their p50/p95/p99; the delta
 *                requests (folder turns) made, in all and per folder, against the items (how
 *                far the flood coalesced; the issue asks for one turn per folder) and against
 *                what the sync can make at most, F ÷ L a second with nothing to read; the sync
 *                loop's rounds; the time from the last answer until no folder was due.
 *
 * After backlog and notifications: every delivered message stored exactly once (counted by subject), no
 * duplicates, all outcomes `requested`, every action done (markRead); and how many were read
 * as Graph JSON or as MIME. The CPU each side used is given in cores: this process
 * (Mailgate, the fake Graph and the load all run here) and, on PostgreSQL, the server
 * processes of the scratch database's connections (from /proc, so only for a server on
 * this machine). The most requests one mailbox had in flight at once is printed too. After
 * flood: no inbound email made during the phase, every answer 202, and no notification
 * posted by the fake itself (no mail changed).
 *
 * BENCH_SYNC_MAILBOXES (100), BENCH_SYNC_MESSAGES (20), BENCH_SYNC_LATENCY (100 ms),
 * BENCH_SYNC_RATE (100 a second), BENCH_SYNC_SECONDS (10), BENCH_SYNC_FOLDERS (the sync's
 * maxConcurrentFolders, SYNC_CONCURRENCY; default: its default, 64), BENCH_SYNC_ACTIONS (none,markRead),
 * BENCH_SYNC_FLOOD (10000 items), BENCH_SYNC_FLOOD_BATCH (5 items a request), BENCH_SYNC_FLOOD_SECONDS (10),
 * BENCH_DATABASES=pglite or =postgres for one database only. BENCH_CPU_PROFILE=<prefix>
 * profiles each backlog and notifications phase into <prefix>.<database>.<phase>-<action>.cpuprofile
 * (summarise one with `node bench/cpu-profile.ts <file>`). BENCH_SYNC_STATEMENTS=1 counts every
 * statement sent to PostgreSQL (postgres.js's `debug` hook) and prints them per message.
 * A full run with both databases takes about 3¼ minutes on the 2-core reference machine, and
 * flood about 15 s more per database (`-- flood` alone, PGlite only: about 30 s).
 */
import { writeFile } from 'node:fs/promises'
import { Session } from 'node:inspector/promises'
import { availableParallelism, loadavg } from 'node:os'
import { gte, sql } from 'drizzle-orm'
import { drizzle } from 'drizzle-orm/postgres-js'
import postgres from 'postgres'
import type { App } from '../src/app.ts'
import { openExternalDatabase, rowsOf, schema, type Database, type Db } from '../src/database/index.ts'
import { SecretBox } from '../src/lib/secret-box.ts'
import { DEFAULT_SYNC_SETTINGS, type MailboxSyncSettings } from '../src/modules/mailbox-sync/sync.ts'
import { randomSecretsKey } from '../test/support/app.ts'
import { createScratchPostgresDatabase } from '../test/support/database.ts'
import { FakeMicrosoft, type FakeMailbox, type FakeSubscription } from '../test/support/fake-microsoft.ts'
import { adminCall, cpuMeter, benchApp, benchDatabaseKinds, benchPostgresUrl, printReproduce, scratchEmbeddedDatabase } from './support.ts'

type Kind = 'pglite' | 'postgres'
/** A connector's after-processing action: the API's lightest (and the default), or none at all. */
type Action = 'markRead' | 'none'

const postgresUrl = benchPostgresUrl()
const MAILBOXES = Number(process.env.BENCH_SYNC_MAILBOXES ?? 100)
const MESSAGES = Number(process.env.BENCH_SYNC_MESSAGES ?? 20)
const LATENCY = Number(process.env.BENCH_SYNC_LATENCY ?? 100)
const RATE = Number(process.env.BENCH_SYNC_RATE ?? 100)
const SECONDS = Number(process.env.BENCH_SYNC_SECONDS ?? 10)
const FLOOD = Number(process.env.BENCH_SYNC_FLOOD ?? 10_000)
const FLOOD_BATCH = Number(process.env.BENCH_SYNC_FLOOD_BATCH ?? 5)
const FLOOD_SECONDS = Number(process.env.BENCH_SYNC_FLOOD_SECONDS ?? 10)
/** Flood: notification requests in flight at most. */
const FLOOD_IN_FLIGHT = 20
/** Flood: how long the folders may take to be quiet again after the last answer. */
const QUIET_WITHIN_MS = 30_000
const FOLDERS = process.env.BENCH_SYNC_FOLDERS ? Number(process.env.BENCH_SYNC_FOLDERS) : DEFAULT_SYNC_SETTINGS.maxConcurrentFolders
/** Mailgate's default pool size. */
const POOL = 10
const PUBLIC_BASE_URL = 'https://mailgate.contoso.example'
/** SYNC_INTERVAL in the notifications phase: long, so that only notifications wake folders. */
const INTERVAL_MS = 60_000
const ACTIONS_AT_ONCE = DEFAULT_SYNC_SETTINGS.actionConcurrency
const SETTINGS: Partial<MailboxSyncSettings> = { intervalMs: INTERVAL_MS, maxConcurrentFolders: FOLDERS }
const PAGE = DEFAULT_SYNC_SETTINGS.pageSize
const ACTIONS = (process.env.BENCH_SYNC_ACTIONS ?? 'none,markRead').split(',').filter((action): action is Action => action === 'none' || action === 'markRead')
const GIVE_UP_MS = 120_000
const PROFILE = process.env.BENCH_CPU_PROFILE || undefined
const STATEMENTS = Boolean(process.env.BENCH_SYNC_STATEMENTS)
/** On PostgreSQL with BENCH_SYNC_STATEMENTS: every statement sent, by label (statementLabel), since the phase began. */
const statements = new Map<string, number>()

const BODY = 'Hello,\n\nthe printer on the second floor jams on every second page since this morning. ' + 'It shows error 0x51 and asks for tray 2. '.repeat(8) + '\n\nRegards,\nAlice'

// ---------------------------------------------------------------------------------------
// Setup: a database, the fake Microsoft with 100 mailboxes, Mailgate with a connector each.
// ---------------------------------------------------------------------------------------

interface World {
  kind: Kind
  database: Database
  fake: FakeMicrosoft
  secretBox: SecretBox
  mailboxes: FakeMailbox[]
  connectorIds: string[]
  close(): Promise<void>
}

async function openDatabase(kind: Kind): Promise<{ database: Database; cleanup(): Promise<void> }> {
  if (kind === 'pglite') return scratchEmbeddedDatabase('mailgate-bench-sync-')
  const scratch = await createScratchPostgresDatabase(postgresUrl!)
  if (!STATEMENTS) return { database: openExternalDatabase(scratch.url, { maxConnections: POOL }), cleanup: scratch.drop }
  const migrating = openExternalDatabase(scratch.url, { maxConnections: 1 })
  await migrating.migrate()
  await migrating.close()
  return { database: countingDatabase(scratch.url), cleanup: scratch.drop }
}

/** A Database like openExternalDatabase's (migrated beforehand) whose every statement is counted in `statements`. */
function countingDatabase(url: string): Database {
  const client = postgres(url, {
    max: POOL,
    onnotice: () => {},
    connection: { application_name: 'mailgate' },
    debug: (_connection, text) => statements.set(statementLabel(text), (statements.get(statementLabel(text)) ?? 0) + 1),
  })
  const db = drizzle({ client, schema, casing: 'snake_case' }) as unknown as Db
  return {
    kind: 'external',
    db,
    ping: async () => void (await db.execute(sql`select 1`)),
    migrate: () => Promise.resolve(),
    pendingMigrations: () => Promise.resolve([]),
    close: () => client.end({ timeout: 10 }),
  }
}

/** `insert inbound_emails`, `update mailbox_folder_syncs returning`, `select graph_subscriptions`... (as bench/ingest.ts labels them). */
function statementLabel(text: string): string {
  const statement = text.replace(/\s+/g, ' ').trim().toLowerCase()
  const verb = statement.startsWith('with') ? 'with' : statement.split(' ')[0]!
  const target = /^(?:insert into|update|delete from) "?(\w+)"?/.exec(statement)?.[1]
  const tables = target ? [target] : [...statement.matchAll(/ (?:from|join|update) "?(\w+)"?/g)].map((match) => match[1]!)
  const extras = [statement.includes('on conflict') ? 'on conflict' : '', statement.includes(' for update') ? 'for update' : '', statement.includes(' returning ') ? 'returning' : '']
  return [verb, [...new Set(tables)].join('+'), ...extras].filter(Boolean).join(' ')
}

/** The statements counted since `statements` was cleared, per message, most frequent first. */
function printStatements(messages: number) {
  if (!STATEMENTS || statements.size === 0) return
  const total = [...statements.values()].reduce((sum, n) => sum + n, 0)
  console.log(`    statements per message on PostgreSQL: ${(total / messages).toFixed(1)} (the bench's own polls included)`)
  for (const [label, n] of [...statements].sort(([, a], [, b]) => b - a).slice(0, 20)) console.log(`      ${(n / messages).toFixed(2).padStart(6)}  ${label}`)
}

/**
 * The world every phase uses: MAILBOXES empty mailboxes and a connector on each, created and
 * tested through the API of a first app (`app`, no PUBLIC_BASE_URL), not yet enabled. The
 * fake answers at once here.
 */
async function setUp(kind: Kind): Promise<{ world: World; app: App }> {
  const { database, cleanup } = await openDatabase(kind)
  await database.migrate()
  const secretBox = new SecretBox(randomSecretsKey())
  const fake = new FakeMicrosoft().start()
  const tenant = fake.addTenant()
  const registered = fake.registerApp(tenant, { secrets: [{ value: 'bench-secret', expiresAt: new Date(Date.now() + 86_400_000) }] })
  const app = await benchApp(database, { secretBox, sync: { autostart: false, settings: SETTINGS } })
  const integration = await adminCall(app, 'POST', '/v1/integrations', { name: 'bench', tenant: tenant.id, clientId: registered.clientId, authMethod: 'clientSecret', clientSecret: 'bench-secret' })
  await adminCall(app, 'POST', `/v1/integrations/${integration.id}/test`)
  const mailboxes = Array.from({ length: MAILBOXES }, (_, m) => fake.addMailbox(tenant, `shared${m}@contoso.example`))
  const connectorIds: string[] = []
  // Ten at a time: setting up is not measured.
  for (let m = 0; m < MAILBOXES; m += 10) {
    const ids = await Promise.all(
      mailboxes.slice(m, m + 10).map(async ({ address }) => {
        const connector = await adminCall(app, 'POST', '/v1/connectors', {
          integrationId: integration.id,
          name: address,
          direction: 'incoming',
          primaryAddress: address,
          fallbackRoute: { workItemType: 'ticket', processId: 'support' },
        })
        await adminCall(app, 'POST', `/v1/connectors/${connector.id}/test`)
        return connector.id as string
      }),
    )
    connectorIds.push(...ids)
  }
  return {
    app,
    world: {
      kind,
      database,
      fake,
      secretBox,
      mailboxes,
      connectorIds,
      async close() {
        fake.stop()
        await database.close()
        await cleanup()
      },
    },
  }
}

// ---------------------------------------------------------------------------------------
// What a phase is measured by.
// ---------------------------------------------------------------------------------------

interface Check {
  delivered: number
  stored: number
  distinct: number
  duplicates: number
  missing: number
  outcomes: Record<string, number>
  formats: Record<string, number>
  /** After-processing states (`none` when the email has no action). */
  actions: Record<string, number>
}

interface Result {
  kind: Kind
  phase: 'backlog' | 'notifications' | 'flood'
  action: Action
  messages: number
  seconds: number
  perSecond: number
  /** Backlog: from the start until every action was done too (markRead). */
  actionsSeconds?: number
  /** Backlog: Graph's ceiling and the sync's. */
  ceiling?: { graph: number; sync: number; perMessageMs: number }
  /** Notifications: deliver → row seen, and deliver → processed_at. */
  seen?: Percentiles
  processed?: Percentiles
  deliveredPerSecond?: number
  /** Notifications: folder turns a second the sync can make at most, one message each. */
  turnCapacity?: number
  rounds?: { all: number; empty: number }
  notifications?: { posts: number; notOk: number; p95Ms: number }
  flood?: Flood
  graphRequests: Record<string, number>
  maxInFlight: number
  cpu: { node: number; postgres: number | null }
  check: Check
}

/** What a notification flood did. */
interface Flood {
  items: number
  requests: number
  /** Seconds from the first POST to the last answer. */
  postedSeconds: number
  /** Answers by status (`error` when the transport threw). */
  statuses: Record<string, number>
  answers: Percentiles
  subscriptions: number
  /** Folder turns (delta requests) per folder, every subscribed folder included (0 when it had none). */
  turnsPerFolder: { max: number; mean: number; min: number }
  /** Seconds from the last answer until no folder was due or being synced; null when not within QUIET_WITHIN_MS. */
  quietSeconds: number | null
  /** Inbound emails made during the phase (any subject): none, as no mail was delivered. */
  created: number
  /** Change notifications the fake itself posted during the phase (mail changing): none. */
  fakePosts: number
}

interface Percentiles {
  p50: number
  p95: number
  p99: number
  max: number
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!

function percentiles(values: number[]): Percentiles {
  const sorted = [...values].sort((a, b) => a - b)
  return { p50: percentile(sorted, 50), p95: percentile(sorted, 95), p99: percentile(sorted, 99), max: sorted.at(-1) ?? Number.NaN }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
/** Wall-clock time with sub-millisecond resolution (comparable with Date values). */
const nowMs = () => performance.timeOrigin + performance.now()
/** Graph requests each message costs in its folder's turn besides the delta pages. */
const requestsPerMessage = (action: Action) => (action === 'none' ? 0 : 1)

/** The smallest UUIDv7 of millisecond `ms`: ids (newId) made at or after `ms` sort at or after it. */
function firstIdAt(ms: number): string {
  const hex = Math.floor(ms).toString(16).padStart(12, '0')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-7000-8000-000000000000`
}

/** Every connector's after-processing action from now on (`none`: the column cleared, which the API does not offer). */
async function setAction(db: Db, action: Action): Promise<void> {
  await db.execute(sql`update connectors set after_processing = ${action === 'none' ? null : action} where direction = 'incoming'`)
}

async function countWhere(db: Db, prefix: string, condition = sql`true`): Promise<number> {
  const [row] = rowsOf<{ n: number }>(await db.execute(sql`select count(*)::int as n from inbound_emails where subject like ${`${prefix}%`} and ${condition}`))
  return row!.n
}

/** Waits until the emails of `prefix` have no after-processing action pending (or GIVE_UP_MS passed). */
async function actionsSettled(db: Db, prefix: string): Promise<void> {
  const started = nowMs()
  while ((await countWhere(db, prefix, sql`after_action ->> 'state' = 'pending'`)) > 0 && nowMs() - started < GIVE_UP_MS) await sleep(100)
}

/** Every delivered subject (those starting with `prefix`) stored once: counts by subject, outcome, source format and action state. */
async function check(db: Db, prefix: string, delivered: number): Promise<Check> {
  const like = `${prefix}%`
  const [counts] = rowsOf<{ stored: number; distinct: number }>(
    await db.execute(sql`select count(*)::int as stored, count(distinct subject)::int as distinct from inbound_emails where subject like ${like}`),
  )
  const byKey = async (key: ReturnType<typeof sql>) =>
    Object.fromEntries(rowsOf<{ key: string; n: number }>(await db.execute(sql`select ${key} as key, count(*)::int as n from inbound_emails where subject like ${like} group by 1`)).map((row) => [row.key, row.n]))
  const outcomes = await byKey(sql`outcome`)
  const [doubled] = rowsOf<{ n: number }>(
    await db.execute(sql`select coalesce(sum(n - 1), 0)::int as n from (select count(*) as n from inbound_emails where subject like ${like} group by subject having count(*) > 1) d`),
  )
  return {
    delivered,
    stored: counts!.stored,
    distinct: counts!.distinct,
    duplicates: doubled!.n + (outcomes['duplicate'] ?? 0),
    missing: delivered - counts!.distinct,
    outcomes,
    formats: await byKey(sql`source_format`),
    actions: await byKey(sql`coalesce(after_action ->> 'state', 'none')`),
  }
}

function checkOk(check: Check, action: Action): boolean {
  const stored = check.stored === check.delivered && check.distinct === check.delivered && check.duplicates === 0 && (check.outcomes['requested'] ?? 0) === check.delivered
  return stored && (check.actions[action === 'none' ? 'none' : 'done'] ?? 0) === check.delivered
}

/** The fake's Graph requests from index `from` on, by kind. */
function requestKinds(fake: FakeMicrosoft, from: number): Record<string, number> {
  const kinds: Record<string, number> = {}
  for (const request of fake.graphRequests.slice(from)) {
    const kind = request.path.endsWith('/messages/delta')
      ? 'delta'
      : request.path.endsWith('/$value')
        ? '$value'
        : request.path.startsWith('/v1.0/subscriptions')
          ? 'subscriptions'
          : request.method === 'PATCH' && /\/messages\/[^/]+$/.test(request.path)
            ? 'markRead'
            : `${request.method} other`
    kinds[kind] = (kinds[kind] ?? 0) + 1
  }
  return kinds
}

const maxInFlight = (fake: FakeMicrosoft) => Math.max(0, ...fake.maxConcurrentPerMailbox.values())

/** Counts the sync loop's rounds, and those that started no folder (the loop calls the job's `round`). */
function countRounds(app: App) {
  const counts = { all: 0, empty: 0 }
  const sync = app.mailboxSync as unknown as { round: (...args: unknown[]) => Promise<{ started: number }> }
  const original = sync.round.bind(sync)
  sync.round = async (...args: unknown[]) => {
    const result = await original(...args)
    counts.all++
    if (result.started === 0) counts.empty++
    return result
  }
  return counts
}

/** Starts the inspector's CPU profiler when BENCH_CPU_PROFILE is set; the returned function writes `<prefix>.<name>.cpuprofile`. */
async function profiler(name: string): Promise<() => Promise<void>> {
  if (!PROFILE) return async () => {}
  const session = new Session()
  session.connect()
  await session.post('Profiler.enable')
  await session.post('Profiler.setSamplingInterval', { interval: 200 })
  await session.post('Profiler.start')
  return async () => {
    const { profile } = await session.post('Profiler.stop')
    const file = `${PROFILE}.${name}.cpuprofile`
    await writeFile(file, JSON.stringify(profile))
    session.disconnect()
    console.log(`    CPU profile of the phase written to ${file}`)
  }
}

// ---------------------------------------------------------------------------------------
// backlog: mail waiting everywhere, the sync started.
// ---------------------------------------------------------------------------------------

/**
 * MESSAGES new messages in every mailbox, the connectors' action set to `action`; the first
 * backlog enables the connectors with importExisting, later ones wake them (manual sync).
 * The app's sync loop runs from the start until every message is stored and acted on.
 */
async function benchBacklog(world: World, app: App, action: Action, first: boolean): Promise<Result> {
  const { fake, database } = world
  const db = database.db
  const prefix = `backlog-${action} `
  fake.latencyMs = 0
  const receivedAt = new Date(Date.now() - 60_000)
  for (const [m, mailbox] of world.mailboxes.entries()) {
    for (let n = 0; n < MESSAGES; n++) await fake.deliver(mailbox, { subject: `${prefix}${m}.${n}`, body: BODY, to: [mailbox.address], from: `Customer ${n} <customer${n}@fabrikam.example>` }, { receivedAt })
  }
  const importSince = new Date(Date.now() - 3_600_000).toISOString()
  for (const connectorId of world.connectorIds) {
    if (first) await adminCall(app, 'POST', `/v1/connectors/${connectorId}/enable`, { importExisting: true, importSince })
    else await app.services.mailboxSync.syncNow(connectorId)
  }
  // After the enable: the action is part of the configuration its test covered.
  await setAction(db, action)
  const total = MAILBOXES * MESSAGES
  fake.latencyMs = LATENCY
  fake.maxConcurrentPerMailbox.clear()
  const firstRequest = fake.graphRequests.length
  const profiled = await profiler(`${world.kind}.backlog-${action}`)
  const meter = await cpuMeter(world.kind, db)
  statements.clear()
  const startedAt = nowMs()
  app.mailboxSync.start()
  let stored = 0
  while (stored < total && nowMs() - startedAt < GIVE_UP_MS) {
    await sleep(100)
    stored = await countWhere(db, prefix)
  }
  const [last] = rowsOf<{ at: string }>(await db.execute(sql`select max(processed_at)::text as at from inbound_emails where subject like ${`${prefix}%`}`))
  let actionsSeconds: number | undefined
  if (action !== 'none') {
    await actionsSettled(db, prefix)
    actionsSeconds = (nowMs() - startedAt) / 1000
  }
  const cpu = await meter()
  await app.mailboxSync.stop()
  await profiled()
  printStatements(stored)
  const seconds = (new Date(last!.at).getTime() - startedAt) / 1000
  const perSecond = stored / seconds
  const pages = Math.max(1, Math.ceil(MESSAGES / PAGE))
  const latency = LATENCY / 1000
  const r = requestsPerMessage(action)
  const folders = Math.min(FOLDERS, MAILBOXES)
  const ceiling = {
    graph: (MAILBOXES * MESSAGES) / ((pages + (r * MESSAGES) / 4) * latency),
    sync: (folders * MESSAGES) / ((pages + (r * MESSAGES) / ACTIONS_AT_ONCE) * latency),
    perMessageMs: (folders / perSecond) * 1000 - ((pages + (r * MESSAGES) / ACTIONS_AT_ONCE) * LATENCY) / MESSAGES,
  }
  return {
    kind: world.kind,
    phase: 'backlog',
    action,
    messages: stored,
    seconds,
    perSecond,
    actionsSeconds,
    ceiling,
    graphRequests: requestKinds(fake, firstRequest),
    maxInFlight: maxInFlight(fake),
    cpu,
    check: await check(db, prefix, total),
  }
}

// ---------------------------------------------------------------------------------------
// notifications: subscriptions made, mail arriving at RATE a second, each notified.
// ---------------------------------------------------------------------------------------

/** A second app on the database, with PUBLIC_BASE_URL, reached by the fake; one sync of every folder makes the subscriptions. */
async function notifiedApp(world: World): Promise<{ app: App; rounds: { all: number; empty: number } }> {
  const { fake } = world
  const app = await benchApp(world.database, { secretBox: world.secretBox, sync: { autostart: false, publicBaseUrl: PUBLIC_BASE_URL, settings: SETTINGS } })
  // Graph reaches Mailgate's public URL: here, the app itself.
  fake.setNotificationTransport(async (request) => {
    const url = new URL(request.url)
    const response = await app.inject({ method: 'POST', url: url.pathname + url.search, headers: request.headers, payload: request.body })
    return { status: response.statusCode, contentType: String(response.headers['content-type'] ?? ''), body: response.body }
  })
  const started = nowMs()
  for (const connectorId of world.connectorIds) await app.services.mailboxSync.syncNow(connectorId)
  for (let run = 0; run < 20 && (await app.mailboxSync.runOnce()) > 0; run++);
  const subscriptions = fake.subscriptions().length
  console.log(`  subscriptions: ${subscriptions} made in ${((nowMs() - started) / 1000).toFixed(1)} s (one sync of every folder, ${LATENCY} ms per Graph request)`)
  if (subscriptions !== MAILBOXES) throw new Error(`expected ${MAILBOXES} subscriptions, the fake has ${subscriptions}`)
  return { app, rounds: countRounds(app) }
}

async function benchNotifications(world: World, app: App, rounds: { all: number; empty: number }, action: Action): Promise<Result> {
  const { fake, database } = world
  const db = database.db
  const prefix = `notify-${action} `
  await setAction(db, action)
  app.mailboxSync.start()
  await sleep(200) // the loop's first (thorough) round, with nothing due
  rounds.all = 0
  rounds.empty = 0
  fake.maxConcurrentPerMailbox.clear()
  const firstRequest = fake.graphRequests.length
  const firstPost = fake.notificationDeliveries.length
  const total = Math.round(RATE * SECONDS)
  const gap = 1000 / RATE
  const deliveredAt = new Map<string, number>()
  const seenAt = new Map<string, number>()
  const processedAt = new Map<string, number>()
  const meter = await cpuMeter(world.kind, db)
  statements.clear()
  const profiled = await profiler(`${world.kind}.notifications-${action}`)
  const startedAt = nowMs()

  // Every 20 ms, the rows made since the oldest message not seen yet (ids are time-ordered).
  let delivering = true
  const polling = (async () => {
    while (delivering || seenAt.size < deliveredAt.size) {
      const asked = nowMs()
      let oldest = asked
      for (const [subject, at] of deliveredAt) {
        if (seenAt.has(subject)) continue
        oldest = at
        break
      }
      const rows = await db
        .select({ subject: schema.inboundEmails.subject, processedAt: schema.inboundEmails.processedAt })
        .from(schema.inboundEmails)
        .where(gte(schema.inboundEmails.id, firstIdAt(oldest - 1)))
      const answered = nowMs()
      for (const row of rows) {
        if (!row.subject.startsWith(prefix) || seenAt.has(row.subject)) continue
        seenAt.set(row.subject, answered)
        processedAt.set(row.subject, row.processedAt!.getTime())
      }
      if (answered - startedAt > SECONDS * 1000 + GIVE_UP_MS) break
      await sleep(Math.max(0, 20 - (nowMs() - asked)))
    }
  })()

  for (let i = 0; i < total; i++) {
    const wait = startedAt + i * gap - nowMs()
    if (wait > 1) await sleep(wait)
    const m = i % MAILBOXES
    const subject = `${prefix}${m}.${Math.floor(i / MAILBOXES)}`
    const mailbox = world.mailboxes[m]!
    deliveredAt.set(subject, nowMs())
    await fake.deliver(mailbox, { subject, body: BODY, to: [mailbox.address], from: 'Bob Customer <bob@fabrikam.example>' })
  }
  const deliveredFor = (nowMs() - startedAt) / 1000
  delivering = false
  await polling
  await fake.flushNotifications()
  await actionsSettled(db, prefix)
  const cpu = await meter()
  await profiled()
  await app.mailboxSync.stop()
  printStatements(seenAt.size)

  const seen: number[] = []
  const processed: number[] = []
  for (const [subject, at] of deliveredAt) {
    const seenTime = seenAt.get(subject)
    if (seenTime === undefined) continue
    seen.push(seenTime - at)
    processed.push(processedAt.get(subject)! - at)
  }
  const posts = fake.notificationDeliveries.slice(firstPost)
  const lastSeen = Math.max(...seenAt.values())
  return {
    kind: world.kind,
    phase: 'notifications',
    action,
    messages: seenAt.size,
    seconds: (lastSeen - startedAt) / 1000,
    perSecond: seenAt.size / ((lastSeen - startedAt) / 1000),
    deliveredPerSecond: total / deliveredFor,
    seen: percentiles(seen),
    processed: percentiles(processed),
    turnCapacity: Math.min(FOLDERS, MAILBOXES) / ((1 + requestsPerMessage(action)) * (LATENCY / 1000)),
    rounds: { ...rounds },
    notifications: { posts: posts.length, notOk: posts.filter((post) => !post.ok).length, p95Ms: percentiles(posts.map((post) => post.ms)).p95 },
    graphRequests: requestKinds(fake, firstRequest),
    maxInFlight: maxInFlight(fake),
    cpu,
    check: await check(db, prefix, total),
  }
}

// ---------------------------------------------------------------------------------------
// flood: valid change notifications by the thousand, no mail behind them.
// ---------------------------------------------------------------------------------------

/** A change notification as Graph sends it for a new message in the subscription's folder (the message is made up). */
function changeNotification(subscription: FakeSubscription, n: number): Record<string, unknown> {
  const id = `AAMkAGZsb29k${Buffer.from(`flood-${n}`).toString('base64url')}AAA=`
  const resource = `Users/${subscription.userId}/Messages/${id}`
  return {
    subscriptionId: subscription.id,
    subscriptionExpirationDateTime: subscription.expirationDateTime,
    changeType: 'created',
    resource,
    resourceData: { '@odata.type': '#Microsoft.Graph.Message', '@odata.id': resource, '@odata.etag': `W/"CQAAABYAAAD${n.toString(36)}"`, id },
    clientState: subscription.clientState ?? null,
    tenantId: subscription.tenantId,
  }
}

/** Folders due now or being synced (mailbox_folder_syncs). */
async function busyFolders(db: Db): Promise<number> {
  const [row] = rowsOf<{ n: number }>(
    await db.execute(sql`select count(*)::int as n from mailbox_folder_syncs where lease_owner is not null or due_at <= ${new Date().toISOString()}::timestamptz`),
  )
  return row!.n
}

/** Waits until no folder is due or being synced; the ms it took, or null when not within `withinMs`. */
async function foldersQuiet(db: Db, withinMs: number): Promise<number | null> {
  const started = nowMs()
  for (;;) {
    if ((await busyFolders(db)) === 0) return nowMs() - started
    if (nowMs() - started > withinMs) return null
    await sleep(50)
  }
}

/** Delta requests from index `from` on, per folder (`{mailbox}/{folder id}`, as the request path names them). */
function deltaPerFolder(fake: FakeMicrosoft, from: number): Map<string, number> {
  const folders = new Map<string, number>()
  for (const request of fake.graphRequests.slice(from)) {
    if (!request.path.endsWith('/messages/delta')) continue
    const path = decodeURIComponent(request.path)
    const match = /\/users\/([^/]+)\/mailFolders(?:\('([^']+)'\)|\/([^/]+))\/messages\/delta$/i.exec(path)
    const key = match ? `${match[1]!.toLowerCase()}/${match[2] ?? match[3]}` : path
    folders.set(key, (folders.get(key) ?? 0) + 1)
  }
  return folders
}

/**
 * FLOOD valid change-notification items, round robin over the subscriptions, in requests of
 * FLOOD_BATCH paced evenly over FLOOD_SECONDS (at most FLOOD_IN_FLIGHT in flight), with the
 * sync loop running and no mail delivered; then until the folders are quiet again.
 */
async function benchFlood(world: World, app: App, rounds: { all: number; empty: number }, action: Action): Promise<Result> {
  const { fake, database } = world
  const db = database.db
  await setAction(db, action)
  const subscriptions = fake.subscriptions()
  const url = `${PUBLIC_BASE_URL}/v1/graph/notifications`
  app.mailboxSync.start()
  await sleep(200) // the loop's first (thorough) round
  if ((await foldersQuiet(db, QUIET_WITHIN_MS)) === null) throw new Error('the folders are not quiet before the flood')
  rounds.all = 0
  rounds.empty = 0
  fake.maxConcurrentPerMailbox.clear()
  const firstRequest = fake.graphRequests.length
  const firstPost = fake.notificationDeliveries.length
  const requests = Math.ceil(FLOOD / FLOOD_BATCH)
  const gap = (FLOOD_SECONDS * 1000) / requests
  const statuses: Record<string, number> = {}
  const answerMs: number[] = []
  const inFlight = new Set<Promise<void>>()
  const meter = await cpuMeter(world.kind, db)
  statements.clear()
  const startedAt = nowMs()

  let items = 0
  for (let r = 0; r < requests; r++) {
    const wait = startedAt + r * gap - nowMs()
    if (wait > 1) await sleep(wait)
    while (inFlight.size >= FLOOD_IN_FLIGHT) await Promise.race(inFlight)
    const value: Record<string, unknown>[] = []
    for (; value.length < FLOOD_BATCH && items < FLOOD; items++) value.push(changeNotification(subscriptions[items % subscriptions.length]!, items))
    const sent = nowMs()
    const post: Promise<void> = fake
      .postNotification(url, { value })
      .then(
        (answer) => {
          answerMs.push(nowMs() - sent)
          statuses[answer.status] = (statuses[answer.status] ?? 0) + 1
        },
        () => void (statuses['error'] = (statuses['error'] ?? 0) + 1),
      )
      .finally(() => inFlight.delete(post))
    inFlight.add(post)
  }
  await Promise.all(inFlight)
  const answeredAt = nowMs()
  const quietMs = await foldersQuiet(db, QUIET_WITHIN_MS)
  const cpu = await meter()
  await app.mailboxSync.stop()

  const perFolder = subscriptions.length ? [...deltaPerFolder(fake, firstRequest).values()] : []
  const turns = perFolder.reduce((sum, n) => sum + n, 0)
  const folders = Math.max(subscriptions.length, perFolder.length)
  const [created] = rowsOf<{ n: number }>(await db.execute(sql`select count(*)::int as n from inbound_emails where id >= ${firstIdAt(startedAt - 1)}::uuid`))
  return {
    kind: world.kind,
    phase: 'flood',
    action,
    messages: 0,
    seconds: (answeredAt - startedAt) / 1000,
    perSecond: items / ((answeredAt - startedAt) / 1000),
    turnCapacity: Math.min(FOLDERS, MAILBOXES) / (LATENCY / 1000),
    rounds: { ...rounds },
    flood: {
      items,
      requests,
      postedSeconds: (answeredAt - startedAt) / 1000,
      statuses,
      answers: percentiles(answerMs),
      subscriptions: subscriptions.length,
      turnsPerFolder: { max: Math.max(0, ...perFolder), mean: turns / folders, min: perFolder.length < folders ? 0 : Math.min(...perFolder) },
      quietSeconds: quietMs === null ? null : quietMs / 1000,
      created: created!.n,
      fakePosts: fake.notificationDeliveries.length - firstPost,
    },
    graphRequests: requestKinds(fake, firstRequest),
    maxInFlight: maxInFlight(fake),
    cpu,
    check: await check(db, 'flood ', 0),
  }
}

// ---------------------------------------------------------------------------------------
// The run.
// ---------------------------------------------------------------------------------------

const label = (kind: Kind) => (kind === 'pglite' ? 'PGlite (on disk)' : 'PostgreSQL')
const cores = (n: number | null) => (n === null ? '–' : n.toFixed(2))
const mix = (values: Record<string, number>) =>
  Object.entries(values)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([key, n]) => `${key} ${n}`)
    .join(', ')
const ms = (p: Percentiles) => `${p.p50.toFixed(0)} / ${p.p95.toFixed(0)} / ${p.p99.toFixed(0)}`
const actionLabel = (action: Action) => (action === 'none' ? 'none' : action)

/** Flood: every answer 202, no email made, nothing posted by the fake itself. */
const floodOk = (flood: Flood) => (flood.statuses['202'] ?? 0) === flood.requests && flood.created === 0 && flood.fakePosts === 0

function printFlood(result: Result, flood: Flood) {
  const turns = result.graphRequests['delta'] ?? 0
  const { turnsPerFolder } = flood
  const quiet = flood.quietSeconds === null ? `NOT within ${QUIET_WITHIN_MS / 1000} s` : `${flood.quietSeconds.toFixed(2)} s`
  console.log(
    `  flood, after-processing ${actionLabel(result.action)}: ${flood.items} notification items in ${flood.requests} requests of ${FLOOD_BATCH} over ${flood.postedSeconds.toFixed(2)} s ` +
      `(${result.perSecond.toFixed(0)} items/s, round robin over ${flood.subscriptions} subscriptions, at most ${FLOOD_IN_FLIGHT} requests in flight)`,
  )
  console.log(`    answers ${mix(flood.statuses)}; answer p50/p95/p99 ${ms(flood.answers)} ms (max ${flood.answers.max.toFixed(0)})`)
  console.log(
    `    folder turns (delta requests) ${turns}: ${(flood.items / turns).toFixed(1)} items per turn; per folder max ${turnsPerFolder.max}, mean ${turnsPerFolder.mean.toFixed(1)}, min ${turnsPerFolder.min} ` +
      `(one turn per folder would be ${flood.subscriptions}); at most ${result.turnCapacity!.toFixed(0)} turns/s with nothing to read`,
  )
  console.log(`    no folder due or syncing ${quiet} after the last answer; sync loop rounds ${result.rounds!.all}, ${result.rounds!.empty} of them starting no folder`)
  console.log(`    Graph requests: ${mix(result.graphRequests)}; most in flight for one mailbox ${result.maxInFlight}; CPU cores: this process ${cores(result.cpu.node)}, PostgreSQL ${cores(result.cpu.postgres)}`)
  console.log(`    check: inbound emails made during the phase ${flood.created}, answers 202 ${flood.statuses['202'] ?? 0} of ${flood.requests}, notifications posted by the fake itself ${flood.fakePosts}: ${floodOk(flood) ? 'ok' : 'NOT OK'}`)
}

function printResult(result: Result) {
  if (result.flood) return printFlood(result, result.flood)
  const { check } = result
  console.log(`  ${result.phase}, after-processing ${actionLabel(result.action)}: ${result.messages} messages stored in ${result.seconds.toFixed(2)} s: ${result.perSecond.toFixed(0)} msg/s`)
  if (result.ceiling) {
    const { ceiling } = result
    const actions = result.actionsSeconds === undefined ? '' : `; every action done after ${result.actionsSeconds.toFixed(2)} s`
    console.log(`    ceiling by Graph's limits ${ceiling.graph.toFixed(0)} msg/s; by the sync's shape (${FOLDERS} folders at once, actions ${ACTIONS_AT_ONCE} at a time) ${ceiling.sync.toFixed(0)} msg/s${actions}`)
    console.log(`    measured ÷ sync's ceiling ${(result.perSecond / ceiling.sync).toFixed(2)}; a folder's turn spent ${ceiling.perMessageMs.toFixed(1)} ms per message besides Graph's latency (${FOLDERS} turns sharing CPU and database)`)
  }
  if (result.seen && result.processed) {
    console.log(
      `    delivered at ${result.deliveredPerSecond!.toFixed(1)} msg/s; deliver → row seen p50/p95/p99 ${ms(result.seen)} ms (max ${result.seen.max.toFixed(0)}), → processed_at ${ms(result.processed)} ms: ` +
        `p95 ${result.seen.p95 < 1000 ? 'under' : 'OVER'} 1 s`,
    )
    const turns = result.graphRequests['delta'] ?? 0
    console.log(
      `    folder turns (delta requests) ${turns}, ${(result.messages / turns).toFixed(2)} messages each; at most ${result.turnCapacity!.toFixed(0)} turns/s with one message each, ` +
        `against ${Math.min(RATE, MAILBOXES)} folders woken a second; sync loop rounds ${result.rounds!.all}, ${result.rounds!.empty} of them starting no folder`,
    )
    console.log(`    notification posts ${result.notifications!.posts}, not answered 2xx in time ${result.notifications!.notOk}, answer p95 ${result.notifications!.p95Ms.toFixed(0)} ms`)
  }
  console.log(`    Graph requests: ${mix(result.graphRequests)}; most in flight for one mailbox ${result.maxInFlight}; CPU cores: this process ${cores(result.cpu.node)}, PostgreSQL ${cores(result.cpu.postgres)}`)
  console.log(
    `    check: delivered ${check.delivered}, stored ${check.stored} (${check.distinct} distinct), missing ${check.missing}, duplicates ${check.duplicates}; outcomes ${mix(check.outcomes)}; ` +
      `read as ${mix(check.formats)}; actions ${mix(check.actions)}: ${checkOk(check, result.action) ? 'ok' : 'NOT OK'}`,
  )
}

function summary(results: Result[]) {
  console.log(`\n=== Summary: node ${process.version}, ${availableParallelism()} cores, ${new Date().toISOString().slice(0, 10)}; ${MAILBOXES} mailboxes, ${LATENCY} ms per Graph request, ${FOLDERS} folders at once`)
  console.log('| database | phase | after-processing | messages | msg/s | ceiling: Graph / sync | deliver → stored p50 / p95 / p99 ms | p95 < 1 s | delta requests | CPU cores: node / PostgreSQL | stored once |')
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
  for (const result of results) {
    if (result.flood) {
      const { flood } = result
      const turns = result.graphRequests['delta'] ?? 0
      console.log(
        `| ${label(result.kind)} | flood (${flood.items} notification items in ${FLOOD_SECONDS} s, no mail) | ${actionLabel(result.action)} | 0 | – | ` +
          `${flood.items} items → ${turns} turns (${(flood.items / turns).toFixed(1)} items a turn; per folder max ${flood.turnsPerFolder.max}, mean ${flood.turnsPerFolder.mean.toFixed(1)}) | ` +
          `answer ${ms(flood.answers)} | – | ${turns} | ${cores(result.cpu.node)} / ${cores(result.cpu.postgres)} | ${floodOk(flood) ? 'yes (none made, all 202)' : 'NO'} |`,
      )
      continue
    }
    const ceiling = result.ceiling
      ? `${result.ceiling.graph.toFixed(0)} / ${result.ceiling.sync.toFixed(0)} msg/s`
      : `${Math.min(RATE, MAILBOXES)} wakes/s vs ${result.turnCapacity!.toFixed(0)} turns/s`
    const latency = result.seen ? ms(result.seen) : '–'
    const target = result.seen ? (result.seen.p95 < 1000 ? 'yes' : 'no') : '–'
    const what = result.phase === 'backlog' ? `backlog (${MESSAGES} per mailbox)` : `notifications (${RATE}/s for ${SECONDS} s)`
    console.log(
      `| ${label(result.kind)} | ${what} | ${actionLabel(result.action)} | ${result.messages} | ${result.perSecond.toFixed(0)} | ${ceiling} | ${latency} | ${target} | ${result.graphRequests['delta'] ?? 0} | ` +
        `${cores(result.cpu.node)} / ${cores(result.cpu.postgres)} | ${checkOk(result.check, result.action) ? 'yes' : 'NO'} |`,
    )
  }
  const settings = {
    BENCH_SYNC_MAILBOXES: MAILBOXES,
    BENCH_SYNC_MESSAGES: MESSAGES,
    BENCH_SYNC_LATENCY: LATENCY,
    BENCH_SYNC_RATE: RATE,
    BENCH_SYNC_SECONDS: SECONDS,
    BENCH_SYNC_FOLDERS: FOLDERS,
    BENCH_SYNC_ACTIONS: ACTIONS.join(','),
    BENCH_SYNC_FLOOD: FLOOD,
    BENCH_SYNC_FLOOD_BATCH: FLOOD_BATCH,
    BENCH_SYNC_FLOOD_SECONDS: FLOOD_SECONDS,
  }
  printReproduce('bench:sync', postgresUrl, settings)
}

async function main() {
  const parts = process.argv.slice(2).filter((arg) => !arg.startsWith('-'))
  const run = (part: string) => parts.length === 0 || parts.includes(part)
  const kinds: Kind[] = benchDatabaseKinds(postgresUrl)
  console.log(`load average ${loadavg().map((n) => n.toFixed(2)).join(' ')}`)

  const results: Result[] = []
  for (const kind of kinds) {
    const started = performance.now()
    const { world, app } = await setUp(kind)
    let closed = false
    const closeOnce = async () => {
      if (!closed) await app.close()
      closed = true
    }
    try {
      console.log(`\n=== ${kind === 'pglite' ? 'PGlite (embedded, on disk)' : 'PostgreSQL'}: ${MAILBOXES} mailboxes and their connectors set up in ${((performance.now() - started) / 1000).toFixed(1)} s`)
      if (run('backlog')) {
        for (const [index, action] of ACTIONS.entries()) {
          const result = await benchBacklog(world, app, action, index === 0)
          printResult(result)
          results.push(result)
        }
      } else {
        // Enabled all the same, from now on.
        for (const connectorId of world.connectorIds) await adminCall(app, 'POST', `/v1/connectors/${connectorId}/enable`, {})
        world.fake.latencyMs = LATENCY
      }
      await closeOnce()
      if (run('notifications') || run('flood')) {
        const notified = await notifiedApp(world)
        try {
          for (const action of run('notifications') ? ACTIONS : []) {
            const result = await benchNotifications(world, notified.app, notified.rounds, action)
            printResult(result)
            results.push(result)
          }
          if (run('flood')) {
            const result = await benchFlood(world, notified.app, notified.rounds, ACTIONS.at(-1) ?? 'markRead')
            printResult(result)
            results.push(result)
          }
        } finally {
          world.fake.setNotificationTransport(undefined)
          await notified.app.close()
        }
      }
    } finally {
      await closeOnce()
      await world.close()
    }
  }
  summary(results)
}

await main()
