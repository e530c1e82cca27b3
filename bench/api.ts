/**
 * npm run bench:api
 *
 * Throughput (req/s) and p99 latency of five API paths, each measured three ways back to back
 * in the same run, so that the ratios compare like with like on a noisy machine:
 *   bare      a Fastify route answering a fixed small JSON: the ceiling of the HTTP stack;
 *   lean      bench/lean/: a minimal Fastify server doing the same SQL work straight through
 *             postgres.js or PGlite's own `query`, in the fewest statements: the practical ceiling;
 *   Mailgate  buildApp from src/app.ts, listening on a port.
 * on embedded PGlite (on disk) and, when BENCH_DATABASE_URL is set, on PostgreSQL (a scratch
 * database created on that server and dropped afterwards).
 *
 * Before measuring, each path is requested once from lean and from Mailgate and the answers
 * (and, for submits, the stored rows) must agree, so the lean prototype is known to do the
 * same job. The servers run in this process; autocannon runs as a child process so that the
 * load generator does not share their event loop. Microsoft is the test fake (nock), needed
 * only to test and enable connectors during setup.
 *
 * BENCH_SECONDS (default 10) per measurement, after a 1 s warm-up; BENCH_CONNECTIONS (20);
 * BENCH_DATABASES=pglite or =postgres runs one database only.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { isDeepStrictEqual } from 'node:util'
import type { PGlite } from '@electric-sql/pglite'
import Fastify from 'fastify'
import type { App } from '../src/app.ts'
import { openEmbeddedDatabase, openExternalDatabase, type Database } from '../src/database/index.ts'
import { adminCall, benchApp } from './support.ts'
import { createScratchPostgresDatabase } from '../test/support/database.ts'
import { FakeMicrosoft } from '../test/support/fake-microsoft.ts'
import { leanPglite, leanPostgres, type LeanSql } from './lean/db.ts'
import { GRAPHQL_QUERY } from './lean/graphql.ts'
import { leanServer } from './lean/server.ts'

type Kind = 'pglite' | 'postgres'
type Server = 'bare' | 'lean' | 'Mailgate'
const SERVERS: Server[] = ['bare', 'lean', 'Mailgate']

const root = fileURLToPath(new URL('..', import.meta.url))
const postgresUrl = process.env.BENCH_DATABASE_URL || undefined
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 20)
/** Mailgate's default pool size; the lean prototype gets a pool as large. */
const POOL = 10
const INTEGRATIONS = 5
const CONNECTORS = 50

// ---------------------------------------------------------------------------------------
// Setup: a database, Mailgate on it, 50 enabled outgoing connectors over 5 integrations.
// ---------------------------------------------------------------------------------------

interface Setup {
  kind: Kind
  app: App
  lean: LeanSql
  /** Keys as a client holds them: one to send, one to read configuration. */
  sendKey: string
  readKey: string
  from: string
  connectorId: string
  close(): Promise<void>
}

async function setUp(kind: Kind): Promise<Setup> {
  let database: Database
  let lean: LeanSql
  let cleanup: () => Promise<void>
  if (kind === 'pglite') {
    const dir = await mkdtemp(join(tmpdir(), 'mailgate-bench-api-'))
    database = await openEmbeddedDatabase(dir)
    lean = leanPglite((database.db as unknown as { $client: PGlite }).$client)
    cleanup = () => rm(dir, { recursive: true, force: true })
  } else {
    const scratch = await createScratchPostgresDatabase(postgresUrl!)
    database = openExternalDatabase(scratch.url, { maxConnections: POOL })
    lean = leanPostgres(scratch.url, POOL)
    cleanup = scratch.drop
  }
  await database.migrate()
  const app = await benchApp(database)

  const fake = new FakeMicrosoft().start()
  const connectorIds: string[] = []
  try {
    for (let n = 0; n < INTEGRATIONS; n++) {
      const tenant = fake.addTenant()
      const registered = fake.registerApp(tenant, { secrets: [{ value: 'bench-secret', expiresAt: new Date(Date.now() + 86_400_000) }] })
      const integration = await adminCall(app, 'POST', '/v1/integrations', {
        name: `integration ${n}`, tenant: tenant.id, clientId: registered.clientId, authMethod: 'clientSecret', clientSecret: 'bench-secret',
      })
      await adminCall(app, 'POST', `/v1/integrations/${integration.id}/test`)
      for (let i = n; i < CONNECTORS; i += INTEGRATIONS) {
        const address = `mailbox${i}@contoso.com`
        fake.addMailbox(tenant, address)
        const connector = await adminCall(app, 'POST', '/v1/connectors', { integrationId: integration.id, name: address, direction: 'outgoing', primaryAddress: address })
        await adminCall(app, 'POST', `/v1/connectors/${connector.id}/test`)
        await adminCall(app, 'POST', `/v1/connectors/${connector.id}/enable`)
        connectorIds.push(connector.id)
      }
    }
  } finally {
    fake.stop() // the measured paths never call Microsoft
  }
  const { key: sendKey } = await app.services.apiKeys.create({ keyId: null }, { name: 'bench send', scopes: ['mail:send'] })
  const { key: readKey } = await app.services.apiKeys.create({ keyId: null }, { name: 'bench read', scopes: ['config:read'] })
  return {
    kind,
    app,
    lean,
    sendKey,
    readKey,
    from: 'mailbox0@contoso.com',
    connectorId: connectorIds[0]!,
    async close() {
      await app.close()
      await lean.close()
      await database.close()
      await cleanup()
    },
  }
}

/** The ceiling of the HTTP stack: the same routes, answering a fixed small JSON. */
function bareServer() {
  const bare = Fastify({ logger: false })
  const fixed = { id: '01a2017b-39b3-77d7-8420-6279506f02f7', status: 'queued', createdAt: '2026-01-01T00:00:00.000Z' }
  bare.post('/v1/messages', async (_request, reply) => reply.code(202).send(fixed))
  bare.get('/v1/connectors/:id', async () => fixed)
  bare.get('/v1/connectors', async () => fixed)
  bare.post('/graphql', async () => fixed)
  return bare
}

// ---------------------------------------------------------------------------------------
// The paths, and a check that lean and Mailgate answer them alike.
// ---------------------------------------------------------------------------------------

interface Path {
  name: string
  method: 'GET' | 'POST'
  url: string
  headers: Record<string, string>
  body?: string
  /**
   * autocannon replaces `[<id>]` in the request with a new id each time. (Not at the end of an
   * argument: autocannon's argument parser would take a trailing `]` for the end of a sub-argument.)
   */
  uniqueIds?: boolean
}

function pathsOf(setup: Setup): Path[] {
  const json = { 'content-type': 'application/json' }
  const send = { ...json, authorization: `Bearer ${setup.sendKey}` }
  const read = { authorization: `Bearer ${setup.readKey}` }
  const message = JSON.stringify({
    from: setup.from,
    to: ['customer@example.com'],
    subject: 'Your request',
    body: { contentType: 'text', content: 'Hello, we received your request and will answer within a day.' },
  })
  return [
    { name: 'POST /v1/messages', method: 'POST', url: '/v1/messages', headers: send, body: message },
    { name: 'POST /v1/messages + Idempotency-Key', method: 'POST', url: '/v1/messages', headers: { ...send, 'idempotency-key': '[<id>]-bench' }, body: message, uniqueIds: true },
    { name: 'GET /v1/connectors/{id}', method: 'GET', url: `/v1/connectors/${setup.connectorId}`, headers: read },
    { name: `GET /v1/connectors?limit=50`, method: 'GET', url: '/v1/connectors?limit=50', headers: read },
    { name: 'POST /graphql connectors+routes+integration', method: 'POST', url: '/graphql', headers: { ...json, ...read }, body: JSON.stringify({ query: GRAPHQL_QUERY }) },
  ]
}

async function request(base: string, path: Path, key = `check-${Math.random()}`) {
  const headers = Object.fromEntries(Object.entries(path.headers).map(([name, value]) => [name, value.replace('[<id>]', key)]))
  const response = await fetch(base + path.url, { method: path.method, headers, body: path.body })
  return { status: response.status, replayed: response.headers.get('idempotent-replayed'), body: (await response.json()) as Record<string, unknown> }
}

function mustEqual(what: string, lean: unknown, mailgate: unknown) {
  if (!isDeepStrictEqual(lean, mailgate)) {
    throw new Error(`lean and Mailgate differ on ${what}:\nlean     ${JSON.stringify(lean)}\nMailgate ${JSON.stringify(mailgate)}`)
  }
}

/** Columns that differ between any two submits of the same message. */
function storedMessage(row: Record<string, unknown>) {
  const { id: _id, created_at: _c, updated_at: _u, next_attempt_at: _n, ...rest } = row
  return rest
}

async function verify(setup: Setup, paths: Path[], urls: Record<Server, string>) {
  for (const path of paths) {
    const [lean, mailgate] = [await request(urls.lean, path), await request(urls.Mailgate, path)]
    const expected = path.url === '/v1/messages' ? 202 : 200
    for (const [server, answer] of [['lean', lean], ['Mailgate', mailgate]] as const) {
      if (answer.status !== expected) throw new Error(`${server} answered ${path.name} with ${answer.status}: ${JSON.stringify(answer.body)}`)
    }
    if (path.method === 'GET' || path.url === '/graphql') {
      mustEqual(path.name, lean.body, mailgate.body)
      continue
    }
    mustEqual(`${path.name} (answer)`, Object.keys(lean.body).sort(), Object.keys(mailgate.body).sort())
    const rows = await setup.lean.query<Record<string, unknown>>('select * from outbound_messages where id in ($1, $2) order by id', [lean.body.id, mailgate.body.id])
    if (rows.length !== 2) throw new Error(`${path.name}: expected both messages stored, found ${rows.length}`)
    mustEqual(`${path.name} (stored message)`, storedMessage(rows[0]!), storedMessage(rows[1]!))
    if (!path.uniqueIds) continue
    // A key used by one server is replayed by the other: the stored request hash and answer agree.
    for (const [first, second] of [['lean', 'Mailgate'], ['Mailgate', 'lean']] as const) {
      const key = `check-${Math.random()}`
      const answer = await request(urls[first], path, key)
      const replay = await request(urls[second], path, key)
      mustEqual(`${path.name} (${first}'s answer replayed by ${second})`, { status: 202, replayed: 'true', body: answer.body }, replay)
    }
    const [pending] = await setup.lean.query<{ n: number }>('select count(*)::int as n from idempotency_keys where response_status <> 202', [])
    mustEqual(`${path.name} (idempotency rows not finished)`, pending!.n, 0)
  }
}

// ---------------------------------------------------------------------------------------
// Measuring with autocannon, in a child process.
// ---------------------------------------------------------------------------------------

interface LoadResult {
  requests: { average: number; total: number }
  latency: { p99: number; average: number }
  non2xx: number
  errors: number
  timeouts: number
}

function autocannon(base: string, path: Path): Promise<LoadResult> {
  const args = [
    join(root, 'node_modules/autocannon/autocannon.js'),
    '--json', '-c', String(CONNECTIONS), '-d', String(SECONDS),
    '--warmup', '[', '-c', String(CONNECTIONS), '-d', '1', ']',
    '-m', path.method,
    ...Object.entries(path.headers).flatMap(([name, value]) => ['-H', `${name}=${value}`]),
    ...(path.body ? ['-b', path.body] : []),
    ...(path.uniqueIds ? ['-I'] : []),
    base + path.url,
  ]
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (data) => (out += data))
    child.on('error', reject)
    // With a warm-up, autocannon prints the warm-up's result on a line of its own first.
    const last = () => JSON.parse(out.trim().split('\n').at(-1)!) as LoadResult
    child.on('exit', (code) => (code === 0 ? resolve(last()) : reject(new Error(`autocannon exited ${code}`))))
  })
}

/**
 * Lets a server finish the requests the load generator left in flight, so they do not run into
 * the next measurement (or into closing): PGlite and the connection pools queue statements in
 * order, so one more request returns about when they are done; then a short pause.
 */
async function settle(base: string, path: Path) {
  await request(base, path).catch(() => {})
  await new Promise((resolve) => setTimeout(resolve, 250))
}

interface Measured {
  kind: Kind
  path: string
  results: Record<Server, LoadResult>
}

const LABELS: Record<Server, string> = { bare: 'bare Fastify route', lean: 'lean prototype', Mailgate: 'Mailgate' }

function printPath(measured: Measured) {
  const { bare, lean, Mailgate } = measured.results
  console.log(`\n${measured.path}`)
  for (const server of SERVERS) {
    const result = measured.results[server]
    const failures = result.non2xx + result.errors + result.timeouts
    const ratio = server === 'Mailgate' ? `   ${(Mailgate.requests.average / bare.requests.average).toFixed(3)} of bare, ${(Mailgate.requests.average / lean.requests.average).toFixed(3)} of lean` : ''
    console.log(
      `  ${LABELS[server].padEnd(20)} ${result.requests.average.toFixed(0).padStart(6)} req/s   p99 ${String(result.latency.p99).padStart(4)} ms${ratio}` +
        (failures ? `   !! non-2xx ${result.non2xx}, errors ${result.errors}, timeouts ${result.timeouts}` : ''),
    )
  }
}

async function benchDatabase(kind: Kind): Promise<Measured[]> {
  const started = performance.now()
  const setup = await setUp(kind)
  const bare = bareServer()
  const lean = leanServer(setup.lean)
  try {
    const urls: Record<Server, string> = {
      bare: await bare.listen({ port: 0, host: '127.0.0.1' }),
      lean: await lean.listen({ port: 0, host: '127.0.0.1' }),
      Mailgate: await setup.app.listen({ port: 0, host: '127.0.0.1' }),
    }
    const paths = pathsOf(setup)
    await verify(setup, paths, urls)
    const label = kind === 'pglite' ? 'PGlite (embedded, on disk)' : 'PostgreSQL'
    console.log(`\n=== ${label}: set up and checked in ${((performance.now() - started) / 1000).toFixed(1)} s; lean and Mailgate answer alike`)
    const measured: Measured[] = []
    for (const path of paths) {
      const results = {} as Record<Server, LoadResult>
      for (const server of SERVERS) {
        results[server] = await autocannon(urls[server], path)
        await settle(urls[server], path)
      }
      measured.push({ kind, path: path.name, results })
      printPath(measured.at(-1)!)
    }
    const [counts] = await setup.lean.query<{ messages: number; keys: number }>(
      'select (select count(*)::int from outbound_messages) as messages, (select count(*)::int from idempotency_keys) as keys',
      [],
    )
    console.log(`\nstored during the run: ${counts!.messages} messages, ${counts!.keys} idempotency keys`)
    return measured
  } finally {
    await bare.close()
    await lean.close()
    await setup.close()
  }
}

function printSummary(all: Measured[]) {
  console.log('\nSummary (req/s; Mailgate as a fraction of the bare route and of the lean prototype)')
  console.log(`${'path'.padEnd(44)} ${'database'.padEnd(9)} ${'bare'.padStart(7)} ${'lean'.padStart(7)} ${'Mailgate'.padStart(9)} ${'/bare'.padStart(6)} ${'/lean'.padStart(6)}`)
  for (const { kind, path, results } of all) {
    const [bare, lean, mailgate] = SERVERS.map((server) => results[server].requests.average)
    console.log(
      `${path.padEnd(44)} ${kind.padEnd(9)} ${bare!.toFixed(0).padStart(7)} ${lean!.toFixed(0).padStart(7)} ${mailgate!.toFixed(0).padStart(9)} ${(mailgate! / bare!).toFixed(3).padStart(6)} ${(mailgate! / lean!).toFixed(3).padStart(6)}`,
    )
  }
}

const kinds = (['pglite', 'postgres'] as const).filter(
  (kind) => (kind === 'pglite' || postgresUrl) && (!process.env.BENCH_DATABASES || process.env.BENCH_DATABASES.split(',').includes(kind)),
)
console.log(`node ${process.version}, ${availableParallelism()} CPUs; ${CONNECTIONS} connections, ${SECONDS} s per measurement after a 1 s warm-up`)
if (!postgresUrl) console.log('PostgreSQL skipped: set BENCH_DATABASE_URL to a server (a scratch database is created on it and dropped).')
const all: Measured[] = []
for (const kind of kinds) all.push(...(await benchDatabase(kind)))
printSummary(all)
