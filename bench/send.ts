/**
 * npm run bench:send [-- submit|dispatch|upload ...]   (default: all three)
 *
 * submit    POST /v1/messages throughput and p99 with autocannon, on PGlite (on disk) and on
 *           PostgreSQL (BENCH_DATABASE_URL or TEST_DATABASE_URL, skipped when unset), beside
 *           a bare Fastify route answering the same way, measured in the same run.
 * dispatch  The dispatcher against the fake Graph (100 ms per request) across 100 mailboxes
 *           (MAILBOXES): its burst capacity (full budgets, a backlog everywhere) and the
 *           headroom that gives over the demand of every mailbox sending at its budget of 30
 *           a minute; then, with budgets starting empty, the p50/p99/max delay from each
 *           budget token coming due to its message's send starting at Graph.
 * upload    Peak RSS of the server process while one 100 MB message is submitted as
 *           multipart/form-data, over its idle RSS.
 *
 * Microsoft is the test fake (nock, in this process); the load generator and the upload
 * client run as child processes so they do not share the server's CPU time or memory.
 * BENCH_DATABASES=pglite or =postgres runs one database only: measure the upload's memory
 * in a process of its own, as earlier runs leave the heap larger.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'
import { sql } from 'drizzle-orm'
import { buildApp, type App } from '../src/app.ts'
import { openEmbeddedDatabase, openExternalDatabase, rowsOf, schema, type Database } from '../src/database/index.ts'
import { TokenProvider } from '../src/graph/token-provider.ts'
import { SecretBox } from '../src/lib/secret-box.ts'
import { createLogger } from '../src/logger.ts'
import type { DispatcherSettings } from '../src/modules/outbound/dispatcher.ts'
import { createScratchPostgresDatabase } from '../test/support/database.ts'
import { FakeMicrosoft, type FakeTenant } from '../test/support/fake-microsoft.ts'
import { randomSecretsKey } from '../test/support/app.ts'
import { ADMIN_KEY, adminCall } from './support.ts'

const root = fileURLToPath(new URL('..', import.meta.url))
const postgresUrl = process.env.BENCH_DATABASE_URL || process.env.TEST_DATABASE_URL || undefined

interface Bench {
  app: App
  database: Database
  fake: FakeMicrosoft
  tenant: FakeTenant
  clientId: string
  close(): Promise<void>
}

async function openBench(kind: 'pglite' | 'postgres', options: { messageSizeLimit?: number; dispatcher?: Partial<DispatcherSettings> } = {}): Promise<Bench> {
  let database: Database
  let cleanup: () => Promise<void>
  if (kind === 'pglite') {
    const dir = await mkdtemp(join(tmpdir(), 'mailgate-bench-'))
    database = await openEmbeddedDatabase(dir)
    cleanup = () => rm(dir, { recursive: true, force: true })
  } else {
    const scratch = await createScratchPostgresDatabase(postgresUrl!)
    database = openExternalDatabase(scratch.url, { maxConnections: 10 })
    cleanup = scratch.drop
  }
  await database.migrate()
  const fake = new FakeMicrosoft().start()
  const tenant = fake.addTenant()
  const registered = fake.registerApp(tenant, { secrets: [{ value: 'bench-secret', expiresAt: new Date(Date.now() + 86_400_000) }] })
  const app = await buildApp({
    database,
    secretBox: new SecretBox(randomSecretsKey()),
    tokenProvider: new TokenProvider(),
    logger: createLogger(process.env.LOG_LEVEL === 'debug' ? 'info' : 'warn'),
    collectDefaultMetrics: false,
    messageSizeLimit: options.messageSizeLimit,
    dispatcher: { autostart: false, settings: options.dispatcher },
  })
  await app.services.apiKeys.ensureInitialAdminKey(ADMIN_KEY)
  await app.ready()
  return {
    app,
    database,
    fake,
    tenant,
    clientId: registered.clientId,
    async close() {
      await app.close()
      fake.stop()
      await database.close()
      await cleanup()
    },
  }
}

/** An integration and `count` enabled outgoing connectors, wired up through the API. */
async function connectors(bench: Bench, count: number): Promise<string[]> {
  const integration = await adminCall(bench.app, 'POST', '/v1/integrations', { name: 'bench', tenant: bench.tenant.id, clientId: bench.clientId, authMethod: 'clientSecret', clientSecret: 'bench-secret' })
  await adminCall(bench.app, 'POST', `/v1/integrations/${integration.id}/test`)
  const addresses: string[] = []
  for (let i = 0; i < count; i++) {
    const address = `mailbox${i}@contoso.com`
    bench.fake.addMailbox(bench.tenant, address)
    const connector = await adminCall(bench.app, 'POST', '/v1/connectors', { integrationId: integration.id, name: address, direction: 'outgoing', primaryAddress: address })
    await adminCall(bench.app, 'POST', `/v1/connectors/${connector.id}/test`)
    await adminCall(bench.app, 'POST', `/v1/connectors/${connector.id}/enable`)
    addresses.push(address)
  }
  return addresses
}

function runChild(args: string[], env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (data) => (out += data))
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${args.join(' ')} exited ${code}`))))
  })
}

interface LoadResult {
  requests: { average: number }
  latency: { p99: number; average: number }
  non2xx: number
  errors: number
}

async function autocannon(url: string, body: string, headers: Record<string, string>, seconds: number): Promise<LoadResult> {
  const out = await runChild([
    join(root, 'node_modules/autocannon/autocannon.js'),
    '--json', '-c', '20', '-d', String(seconds), '-m', 'POST',
    '-H', 'content-type=application/json',
    ...Object.entries(headers).flatMap(([name, value]) => ['-H', `${name}=${value}`]),
    '-b', body,
    url,
  ])
  return JSON.parse(out) as LoadResult
}

async function benchSubmit(kind: 'pglite' | 'postgres', seconds: number) {
  const bench = await openBench(kind)
  try {
    const [from] = await connectors(bench, 1)
    const { key } = await bench.app.services.apiKeys.create({ keyId: null }, { name: 'bench', scopes: ['mail:send'] })
    const address = await bench.app.listen({ port: 0, host: '127.0.0.1' })
    const bare = Fastify()
    bare.post('/v1/messages', async (_request, reply) => reply.code(202).send({ id: '01a2017b-39b3-77d7-8420-6279506f02f7', status: 'queued', createdAt: new Date().toISOString() }))
    const bareAddress = await bare.listen({ port: 0, host: '127.0.0.1' })
    const body = JSON.stringify({ from, to: ['customer@example.com'], cc: ['cc@example.com'], subject: 'Your request', body: { contentType: 'html', content: '<p>Hello, we received your request.</p>'.repeat(10) }, headers: { 'x-ticket': 'T-1' } })
    const headers = { authorization: `Bearer ${key}` }
    const bareResult = await autocannon(`${bareAddress}/v1/messages`, body, headers, seconds)
    const submitResult = await autocannon(`${address}/v1/messages`, body, headers, seconds)
    await bare.close()
    const [stored] = rowsOf<{ n: number }>(await bench.database.db.execute(sql`select count(*)::int as n from outbound_messages`))
    const line = (name: string, result: LoadResult) =>
      `${name.padEnd(28)} ${result.requests.average.toFixed(0).padStart(6)} req/s   p99 ${String(result.latency.p99).padStart(4)} ms   non-2xx ${result.non2xx}, errors ${result.errors}`
    console.log(`\nsubmit on ${kind} (20 connections, ${seconds} s each)`)
    console.log(line('bare Fastify route', bareResult))
    console.log(line('POST /v1/messages', submitResult))
    console.log(`ratio ${(submitResult.requests.average / bareResult.requests.average).toFixed(3)}; ${stored!.n} messages stored`)
  } finally {
    await bench.close()
  }
}

interface DispatchRun {
  bench: Bench
  addresses: string[]
  total: number
  startedAt: number
  measuredMs: number
}

/** Queues `perMailbox` messages in each of `mailboxes` mailboxes, then runs the dispatcher until all are sent. */
async function dispatchAll(
  kind: 'pglite' | 'postgres',
  options: { mailboxes: number; perMailbox: number; perMinute: number; latencyMs: number; buckets: 'full' | 'empty' },
  use: (run: DispatchRun) => void,
) {
  const bench = await openBench(kind, { dispatcher: { perMinute: options.perMinute, maxConcurrentSends: 4 * options.mailboxes, pollMs: 200 } })
  try {
    const addresses = await connectors(bench, options.mailboxes)
    const { apiKey: { id: keyId } } = await bench.app.services.apiKeys.create({ keyId: null }, { name: 'bench', scopes: ['mail:send'] })
    for (let k = 0; k < options.perMailbox; k++) {
      await Promise.all(
        addresses.map((from) =>
          bench.app.services.messages.submit(keyId, { from, to: ['customer@example.com'], subject: `m${k}`, body: { contentType: 'text', content: 'hello' } }),
        ),
      )
    }
    await bench.database.db.delete(schema.mailboxSendBudgets) // every bucket starts full (made on first claim)...
    const startedAt = Date.now()
    if (options.buckets === 'empty') {
      // ...or empty, so that each message waits for a token that comes due at a known time.
      const connectorRows = await bench.database.db.select({ id: schema.connectors.id }).from(schema.connectors)
      await bench.database.db.insert(schema.mailboxSendBudgets).values(connectorRows.map((row) => ({ connectorId: row.id, tokens: 0, refilledAt: new Date(startedAt) })))
    }
    bench.fake.latencyMs = options.latencyMs
    bench.fake.maxConcurrentPerMailbox.clear()
    bench.fake.graphRequests.length = 0
    const total = options.mailboxes * options.perMailbox
    bench.app.dispatcher.start()
    let sent = 0
    while (sent < total) {
      await new Promise((resolve) => setTimeout(resolve, 50))
      const [row] = rowsOf<{ n: number }>(await bench.database.db.execute(sql`select count(*)::int as n from outbound_messages where status = 'sent'`))
      sent = row!.n
      if (Date.now() - startedAt > Number(process.env.GIVE_UP_MS ?? 600_000)) throw new Error(`only ${sent} of ${total} sent after 10 minutes`)
    }
    const measuredMs = Date.now() - startedAt
    await bench.app.dispatcher.stop()
    const [failed] = rowsOf<{ n: number }>(await bench.database.db.execute(sql`select count(*)::int as n from outbound_messages where status <> 'sent'`))
    if (failed!.n > 0) throw new Error(`${failed!.n} messages not sent`)
    use({ bench, addresses, total, startedAt, measuredMs })
  } finally {
    await bench.close()
  }
}

/** When each message's sending began at Graph (its draft was created, or sendMail called), per mailbox, in order. */
function sendStarts(bench: Bench): Map<string, number[]> {
  const starts = new Map<string, number[]>()
  for (const request of bench.fake.graphRequests) {
    const match = /^\/v1\.0\/users\/([^/]+)\/(messages|sendMail)$/.exec(request.path)
    if (request.method !== 'POST' || !match) continue
    const mailbox = decodeURIComponent(match[1]!).toLowerCase()
    starts.set(mailbox, [...(starts.get(mailbox) ?? []), request.at])
  }
  for (const times of starts.values()) times.sort((a, b) => a - b)
  return starts
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!

/**
 * Burst: every bucket full and every mailbox with a backlog, so only Graph (4 requests in
 * flight per mailbox, `latencyMs` each) and the dispatcher itself limit the rate: the
 * dispatcher's burst capacity in messages a second.
 */
async function burstCapacity(kind: 'pglite' | 'postgres', mailboxes: number, latencyMs: number): Promise<number> {
  let capacity = 0
  const perMailbox = 30
  await dispatchAll(kind, { mailboxes, perMailbox, perMinute: perMailbox, latencyMs, buckets: 'full' }, (run) => {
    const starts = sendStarts(run.bench)
    const first = Math.min(...[...starts.values()].map((times) => times[0]!))
    capacity = (run.total * 1000) / (run.measuredMs - (first - run.startedAt))
    const graphCeiling = (mailboxes * 4 * 1000) / (2 * latencyMs)
    const maxConcurrent = Math.max(...run.bench.fake.maxConcurrentPerMailbox.values())
    console.log(`\ndispatch burst on ${kind}: ${mailboxes} mailboxes x ${perMailbox} messages, buckets full, ${latencyMs} ms per Graph request (draft + send)`)
    console.log(`all ${run.total} sent in ${(run.measuredMs / 1000).toFixed(2)} s: burst capacity ${capacity.toFixed(1)} msg/s (Graph's own ceiling at 4 in flight per mailbox: ${graphCeiling.toFixed(0)} msg/s); most in flight to one mailbox: ${maxConcurrent}`)
  })
  return capacity
}

/**
 * Steady state: buckets start empty and every mailbox has a backlog, so the k-th message of a
 * mailbox may go when its k-th token comes due (at k x 60 s / perMinute). The delay from that
 * moment to the message's first Graph request is what a sender waits beyond the budget.
 */
async function tokenDelays(kind: 'pglite' | 'postgres', mailboxes: number, perMinute: number, latencyMs: number) {
  const perMailbox = Number(process.env.PER_MAILBOX ?? 15)
  await dispatchAll(kind, { mailboxes, perMailbox, perMinute, latencyMs, buckets: 'empty' }, (run) => {
    const delays: number[] = []
    for (const times of sendStarts(run.bench).values()) {
      times.forEach((at, k) => delays.push(at - (run.startedAt + ((k + 1) * 60_000) / perMinute)))
    }
    delays.sort((a, b) => a - b)
    console.log(`\ndispatch steady on ${kind}: ${mailboxes} mailboxes x ${perMailbox} messages, ${perMinute}/min per mailbox, buckets start empty, ${latencyMs} ms per Graph request`)
    console.log(
      `delay from a budget token coming due to the send starting (${delays.length} messages): p50 ${percentile(delays, 50)} ms, p99 ${percentile(delays, 99)} ms, max ${delays.at(-1)} ms; earliest ${delays[0]} ms`,
    )
  })
}

async function benchDispatch(kind: 'pglite' | 'postgres', mailboxes: number) {
  const perMinute = 30
  const latencyMs = 100
  const capacity = await burstCapacity(kind, mailboxes, latencyMs)
  const demand = (mailboxes * perMinute) / 60
  console.log(`headroom on ${kind}: burst capacity ${capacity.toFixed(1)} msg/s / demand ${demand.toFixed(1)} msg/s (${mailboxes} mailboxes at their budget of ${perMinute}/min) = ${(capacity / demand).toFixed(1)}x`)
  await tokenDelays(kind, mailboxes, perMinute, latencyMs)
}

async function benchUpload(kind: 'pglite' | 'postgres', megabytes: number) {
  const bench = await openBench(kind, { messageSizeLimit: 150 * 1024 * 1024 })
  try {
    const [from] = await connectors(bench, 1)
    const { key } = await bench.app.services.apiKeys.create({ keyId: null }, { name: 'bench', scopes: ['mail:send'] })
    const address = await bench.app.listen({ port: 0, host: '127.0.0.1' })
    globalThis.gc?.()
    await new Promise((resolve) => setTimeout(resolve, 2_000))
    const idle = process.memoryUsage.rss()
    let peak = idle
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 20)
    const started = performance.now()
    const out = await runChild([join(root, 'bench/upload-client.ts'), `${address}/v1/messages`, key, from!, String(megabytes)])
    clearInterval(sampler)
    const elapsed = performance.now() - started
    const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(1)
    console.log(`\nupload on ${kind}: one ${megabytes} MB attachment as multipart/form-data -> ${out.trim()} in ${(elapsed / 1000).toFixed(1)} s`)
    console.log(`server RSS idle ${mib(idle)} MiB, peak ${mib(peak)} MiB: ${mib(peak - idle)} MiB above idle`)
  } finally {
    await bench.close()
  }
}

const parts = process.argv.slice(2).filter((arg) => !arg.startsWith('-'))
const run = (part: string) => parts.length === 0 || parts.includes(part)
const kinds = (postgresUrl ? (['pglite', 'postgres'] as const) : (['pglite'] as const)).filter(
  (kind) => !process.env.BENCH_DATABASES || process.env.BENCH_DATABASES.split(',').includes(kind),
)
if (!postgresUrl) console.log('PostgreSQL runs skipped: set BENCH_DATABASE_URL (or TEST_DATABASE_URL) to a server to include them.')
console.log(`node ${process.version}`)
if (run('submit')) for (const kind of kinds) await benchSubmit(kind, Number(process.env.SECONDS ?? 10))
if (run('dispatch')) for (const kind of kinds) await benchDispatch(kind, Number(process.env.MAILBOXES ?? 100))
if (run('upload')) for (const kind of kinds) await benchUpload(kind, Number(process.env.UPLOAD_MB ?? 100))
