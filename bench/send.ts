/**
 * npm run bench:send [-- submit|dispatch|upload ...]   (default: all three)
 *
 * submit    POST /v1/messages throughput and p99 with autocannon, on PGlite (on disk) and on
 *           PostgreSQL (BENCH_DATABASE_URL or TEST_DATABASE_URL, skipped when unset), beside
 *           a bare Fastify route answering the same way, measured in the same run.
 * dispatch  Dispatcher throughput against the fake Graph (100 ms per request) across 100
 *           mailboxes, as a fraction of the ceiling that 4 requests in flight per mailbox
 *           and the per-mailbox send budget allow.
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

const root = fileURLToPath(new URL('..', import.meta.url))
const postgresUrl = process.env.BENCH_DATABASE_URL || process.env.TEST_DATABASE_URL || undefined
const ADMIN_KEY = 'bench-admin-key-0123456789abcdefghijklmnopqrstuv'

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

async function call(app: App, method: 'POST' | 'GET', url: string, payload?: object) {
  const response = await app.inject({ method, url, headers: { authorization: `Bearer ${ADMIN_KEY}` }, payload })
  if (response.statusCode >= 300) throw new Error(`${method} ${url}: ${response.statusCode} ${response.body}`)
  return response.json()
}

/** An integration and `count` enabled outgoing connectors, wired up through the API. */
async function connectors(bench: Bench, count: number): Promise<string[]> {
  const integration = await call(bench.app, 'POST', '/v1/integrations', { name: 'bench', tenant: bench.tenant.id, clientId: bench.clientId, authMethod: 'clientSecret', clientSecret: 'bench-secret' })
  await call(bench.app, 'POST', `/v1/integrations/${integration.id}/test`)
  const addresses: string[] = []
  for (let i = 0; i < count; i++) {
    const address = `mailbox${i}@contoso.com`
    bench.fake.addMailbox(bench.tenant, address)
    const connector = await call(bench.app, 'POST', '/v1/connectors', { integrationId: integration.id, name: address, direction: 'outgoing', primaryAddress: address })
    await call(bench.app, 'POST', `/v1/connectors/${connector.id}/test`)
    await call(bench.app, 'POST', `/v1/connectors/${connector.id}/enable`)
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

/**
 * The earliest a mailbox can finish `count` messages: message k starts when its budget token
 * exists (the bucket starts full) and when the send 4 before it has finished.
 */
function idealMakespanMs(count: number, startTokens: number, perMinute: number, maxInFlight: number, perMessageMs: number): number {
  const finish: number[] = []
  for (let k = 0; k < count; k++) {
    const tokenAt = k < startTokens ? 0 : ((k - startTokens + 1) * 60_000) / perMinute
    const slotAt = k >= maxInFlight ? finish[k - maxInFlight]! : 0
    finish.push(Math.max(tokenAt, slotAt) + perMessageMs)
  }
  return Math.max(...finish)
}

async function benchDispatch(
  kind: 'pglite' | 'postgres',
  options: { mailboxes: number; perMailbox: number; perMinute: number; latencyMs: number; buckets: 'full' | 'empty' },
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
    await bench.database.db.delete(schema.mailboxSendBudgets) // every bucket starts full...
    const startTokens = options.buckets === 'full' ? options.perMinute : 0
    if (options.buckets === 'empty') {
      // ...or empty, so the run measures the steady state where the send rate is the limit.
      const connectorRows = await bench.database.db.select({ id: schema.connectors.id }).from(schema.connectors)
      await bench.database.db.insert(schema.mailboxSendBudgets).values(connectorRows.map((row) => ({ connectorId: row.id, tokens: 0, refilledAt: new Date() })))
    }
    bench.fake.latencyMs = options.latencyMs
    bench.fake.maxConcurrentPerMailbox.clear()
    const total = options.mailboxes * options.perMailbox
    const started = performance.now()
    bench.app.dispatcher.start()
    let sent = 0
    while (sent < total) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      const [row] = rowsOf<{ n: number }>(await bench.database.db.execute(sql`select count(*)::int as n from outbound_messages where status = 'sent'`))
      sent = row!.n
      if (performance.now() - started > Number(process.env.GIVE_UP_MS ?? 600_000)) throw new Error(`only ${sent} of ${total} sent after 10 minutes`)
    }
    const measured = performance.now() - started
    await bench.app.dispatcher.stop()
    const requestsPerMessage = 2 // the app holds Mail.ReadWrite: create the draft, then send it
    const perMessageMs = requestsPerMessage * options.latencyMs
    const ideal = idealMakespanMs(options.perMailbox, startTokens, options.perMinute, 4, perMessageMs)
    const maxConcurrent = Math.max(...bench.fake.maxConcurrentPerMailbox.values())
    const [failed] = rowsOf<{ n: number }>(await bench.database.db.execute(sql`select count(*)::int as n from outbound_messages where status <> 'sent'`))
    console.log(
      `\ndispatch on ${kind}: ${options.mailboxes} mailboxes x ${options.perMailbox} messages, ${options.perMinute}/min per mailbox, buckets start ${options.buckets}, ${options.latencyMs} ms per Graph request (draft + send)`,
    )
    console.log(`all ${total} sent in ${(measured / 1000).toFixed(2)} s (${((total * 1000) / measured).toFixed(1)} msg/s); ceiling ${(ideal / 1000).toFixed(2)} s (${((total * 1000) / ideal).toFixed(1)} msg/s)`)
    console.log(`fraction of ceiling ${((ideal / measured) * 100).toFixed(1)}%; most requests in flight to one mailbox: ${maxConcurrent}; not sent: ${failed!.n}`)
  } finally {
    await bench.close()
  }
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
if (run('dispatch')) {
  const mailboxes = Number(process.env.MAILBOXES ?? 100)
  for (const kind of kinds) {
    // Steady state: the budget (30 a minute per mailbox) is the limit the dispatcher must keep up with.
    if (process.env.SCENARIO !== 'burst') {
      await benchDispatch(kind, { mailboxes, perMailbox: Number(process.env.PER_MAILBOX ?? 15), perMinute: 30, latencyMs: 100, buckets: 'empty' })
    }
    if (process.env.SCENARIO === 'steady') continue
    // Burst: full buckets, so only 4 in flight per mailbox limits Graph; this shows the dispatcher's own ceiling.
    await benchDispatch(kind, { mailboxes, perMailbox: 30, perMinute: 30, latencyMs: 100, buckets: 'full' })
  }
}
if (run('upload')) for (const kind of kinds) await benchUpload(kind, Number(process.env.UPLOAD_MB ?? 100))
