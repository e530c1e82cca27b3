/**
 * npm run bench:events [-- receiver|one|fifty|feed ...]   (default: all four)
 *
 * Events out (issue 14), on embedded PGlite (on disk) and on PostgreSQL (BENCH_DATABASE_URL
 * or TEST_DATABASE_URL: a scratch database, dropped afterwards; skipped with a notice when
 * unset). The receiver is a node:http server on 127.0.0.1 in this process that reads each
 * body and answers 200 (the app allows http and 127.0.0.0/8 for it).
 *
 * receiver  The receiver's own ceiling: a keep-alive undici client POSTing event-sized signed
 *           bodies, BENCH_EVENTS_CONCURRENCY (32, the delivery worker's) at once, for
 *           BENCH_EVENTS_SECONDS (5): requests/s.
 * one       One endpoint for `*` (feed order: one delivery at a time), BENCH_EVENTS_ONE (1000)
 *           events recorded beforehand through the event log, then the app's delivery worker
 *           started: deliveries/s until the receiver has them all, each once.
 * fifty     50 endpoints for `*`, BENCH_EVENTS_FIFTY (200) events: 50 × 200 deliveries/s.
 * feed      GET /v1/events?limit=100 through app.inject from 20 readers, each paging from the
 *           start over the events recorded so far, for BENCH_EVENTS_SECONDS: reads/s, events/s.
 *
 * After each delivery phase: every event delivered exactly once to every endpoint, in feed
 * order per endpoint (by webhook-id).
 */
import { randomUUID } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { availableParallelism, loadavg } from 'node:os'
import { Agent, request } from 'undici'
import type { App } from '../src/app.ts'
import { openExternalDatabase, type Database } from '../src/database/index.ts'
import { signedHeaders } from '../src/modules/webhooks/signing.ts'
import { createScratchPostgresDatabase } from '../test/support/database.ts'
import { adminCall, ADMIN_KEY, benchApp, benchDatabaseKinds, benchPostgresUrl, printReproduce, scratchEmbeddedDatabase, type BenchDatabaseKind } from './support.ts'

const SECONDS = Number(process.env.BENCH_EVENTS_SECONDS ?? 5)
const CONCURRENCY = Number(process.env.BENCH_EVENTS_CONCURRENCY ?? 32)
const ONE = Number(process.env.BENCH_EVENTS_ONE ?? 1000)
const FIFTY = Number(process.env.BENCH_EVENTS_FIFTY ?? 200)
const postgresUrl = benchPostgresUrl()

/** Per webhook-id endpoint path -> ids in arrival order. */
class Receiver {
  readonly byPath = new Map<string, string[]>()
  count = 0
  private server!: Server
  url = ''

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      req.resume()
      req.on('end', () => {
        this.count++
        const id = String(req.headers['webhook-id'] ?? '')
        const path = req.url ?? '/'
        if (id) this.byPath.set(path, [...(this.byPath.get(path) ?? []), id])
        res.writeHead(200, { 'content-length': '2' }).end('ok')
      })
    })
    this.server.keepAliveTimeout = 60_000
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`
  }

  reset(): void {
    this.byPath.clear()
    this.count = 0
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections()
    await new Promise((resolve) => this.server.close(resolve))
  }
}

async function openDatabase(kind: BenchDatabaseKind): Promise<{ database: Database; cleanup(): Promise<void> }> {
  if (kind === 'pglite') return scratchEmbeddedDatabase('mailgate-bench-events-')
  const scratch = await createScratchPostgresDatabase(postgresUrl!)
  return { database: openExternalDatabase(scratch.url, { maxConnections: 10 }), cleanup: scratch.drop }
}

interface Result {
  kind: BenchDatabaseKind | '–'
  phase: string
  perSecond: number
  detail: string
  ok: boolean | null
}

const sample = (n: number) => {
  const emailId = randomUUID()
  return { type: 'email.duplicate' as const, subjectType: 'inbound_email', subjectId: emailId, payload: { emailId, connectorId: randomUUID(), duplicateOf: randomUUID(), way: 'source', n } }
}

async function recordEvents(app: App, count: number): Promise<string[]> {
  const before = await feedIds(app)
  for (let start = 0; start < count; start += 500) {
    const batch = Array.from({ length: Math.min(500, count - start) }, (_, i) => sample(start + i))
    await app.database.db.transaction((tx) => app.services.events.recordAll(tx, batch))
  }
  return (await feedIds(app)).slice(before.length)
}

async function feedIds(app: App): Promise<string[]> {
  const ids: string[] = []
  let after: string | undefined
  for (;;) {
    const page = await adminCall(app, 'GET', `/v1/events?limit=500${after ? `&after=${after}` : ''}`)
    ids.push(...(page.items as { id: string }[]).map((item) => item.id))
    if (page.items.length === 0) return ids
    after = page.next
  }
}

async function benchReceiver(receiver: Receiver): Promise<Result> {
  const agent = new Agent({ keepAliveTimeout: 30_000, connections: CONCURRENCY })
  const body = JSON.stringify({ id: randomUUID(), type: 'email.duplicate', occurredAt: new Date().toISOString(), subject: { type: 'inbound_email', id: randomUUID() }, data: sample(0).payload })
  const secret = `whsec_${Buffer.alloc(32, 7).toString('base64')}`
  let done = 0
  const until = performance.now() + SECONDS * 1000
  const started = performance.now()
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < until) {
        const id = randomUUID()
        const response = await request(`${receiver.url}/ceiling`, { method: 'POST', headers: { 'content-type': 'application/json', ...signedHeaders(id, new Date(), body, [secret]) }, body, dispatcher: agent })
        await response.body.dump()
        done++
      }
    }),
  )
  await agent.close()
  return { kind: '–', phase: `receiver ceiling (${CONCURRENCY} at once, signing each)`, perSecond: done / ((performance.now() - started) / 1000), detail: `${done} requests`, ok: null }
}

async function benchDeliveries(kind: BenchDatabaseKind, app: App, receiver: Receiver, endpoints: number, events: number): Promise<Result> {
  receiver.reset()
  const paths: string[] = []
  for (let n = 0; n < endpoints; n++) {
    const path = `/hook-${endpoints}-${n}`
    paths.push(path)
    await adminCall(app, 'POST', '/v1/webhooks', { url: `${receiver.url}${path}`, eventTypes: ['*'] })
  }
  const ids = await recordEvents(app, events)
  const expected = endpoints * events
  const started = performance.now()
  app.webhookDelivery.start()
  while (receiver.count < expected && performance.now() - started < 300_000) await new Promise((resolve) => setTimeout(resolve, 20))
  const seconds = (performance.now() - started) / 1000
  // Endpoints of this phase only, then disabled so that the next phase's events are theirs alone.
  const ok = paths.every((path) => JSON.stringify(receiver.byPath.get(path) ?? []) === JSON.stringify(ids))
  const hooks = (await adminCall(app, 'GET', '/v1/webhooks')).items as { id: string }[]
  for (const hook of hooks) await app.inject({ method: 'PATCH', url: `/v1/webhooks/${hook.id}`, headers: { authorization: `Bearer ${ADMIN_KEY}` }, payload: { enabled: false } })
  return {
    kind,
    phase: `${endpoints} endpoint${endpoints > 1 ? 's' : ''} × ${events} events`,
    perSecond: receiver.count / seconds,
    detail: `${receiver.count} of ${expected} deliveries in ${seconds.toFixed(2)} s`,
    ok,
  }
}

async function benchFeed(kind: BenchDatabaseKind, app: App): Promise<Result> {
  let reads = 0
  let events = 0
  const until = performance.now() + SECONDS * 1000
  const started = performance.now()
  await Promise.all(
    Array.from({ length: 20 }, async () => {
      let after: string | undefined
      while (performance.now() < until) {
        const page = await adminCall(app, 'GET', `/v1/events?limit=100${after ? `&after=${after}` : ''}`)
        reads++
        events += page.items.length
        after = page.items.length === 0 ? undefined : page.next
      }
    }),
  )
  const seconds = (performance.now() - started) / 1000
  return { kind, phase: 'feed reads (20 readers, limit 100)', perSecond: reads / seconds, detail: `${(events / seconds).toFixed(0)} events/s`, ok: null }
}

async function main() {
  const parts = process.argv.slice(2).filter((arg) => !arg.startsWith('-'))
  const run = (part: string) => parts.length === 0 || parts.includes(part)
  console.log(`load average ${loadavg().map((n) => n.toFixed(2)).join(' ')}`)
  const receiver = new Receiver()
  await receiver.start()
  const results: Result[] = []
  try {
    if (run('receiver')) results.push(await benchReceiver(receiver))
    for (const kind of benchDatabaseKinds(postgresUrl)) {
      const { database, cleanup } = await openDatabase(kind)
      await database.migrate()
      const app = await benchApp(database, { webhooks: { autostart: false, allowHttp: true, allowedNetworks: ['127.0.0.0/8'] } })
      try {
        if (run('one')) results.push(await benchDeliveries(kind, app, receiver, 1, ONE))
        if (run('fifty')) results.push(await benchDeliveries(kind, app, receiver, 50, FIFTY))
        if (run('feed')) results.push(await benchFeed(kind, app))
      } finally {
        await app.close()
        await cleanup()
      }
      for (const result of results.filter((r) => r.kind === kind)) console.log(`  ${kind} ${result.phase}: ${result.perSecond.toFixed(0)}/s (${result.detail})${result.ok === null ? '' : result.ok ? ' ok' : ' NOT OK'}`)
    }
  } finally {
    await receiver.stop()
  }
  console.log(`\n=== Summary: node ${process.version}, ${availableParallelism()} cores, ${new Date().toISOString().slice(0, 10)}`)
  console.log('| database | phase | per second | detail | every event once, in order |')
  console.log('| --- | --- | --- | --- | --- |')
  for (const r of results) console.log(`| ${r.kind} | ${r.phase} | ${r.perSecond.toFixed(0)} | ${r.detail} | ${r.ok === null ? '–' : r.ok ? 'yes' : 'NO'} |`)
  printReproduce('bench:events', postgresUrl, { BENCH_EVENTS_SECONDS: SECONDS, BENCH_EVENTS_CONCURRENCY: CONCURRENCY, BENCH_EVENTS_ONE: ONE, BENCH_EVENTS_FIFTY: FIFTY })
  if (results.some((r) => r.ok === false)) process.exitCode = 1
}

await main()
