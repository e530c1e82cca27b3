/**
 * npm run bench:events [-- receiver|one|fifty|parallel|feed|longpoll ...]   (default: all six)
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
 * parallel  The same with 50 parallel endpoints (side by side, at most 16 in flight each):
 *           every event once per endpoint, in any order.
 * feed      GET /v1/events?limit=100 through app.inject from 20 readers, each paging from the
 *           start over the events recorded so far, for BENCH_EVENTS_SECONDS: reads/s, events/s.
 * longpoll  BENCH_EVENTS_WAITERS (200) readers, each long-polling GET /v1/events?after=…&wait=30s
 *           in a loop from the end of the feed, through app.inject. First 3 s with no event:
 *           statements/s the waiting costs (one shared watch per process looks every 250 ms;
 *           counted at the driver, the number in the table) and CPU cores. Then one event recorded
 *           through the event log every 100 ms for BENCH_EVENTS_SECONDS: p50 / p95 / max from an
 *           event's commit to each reader having it, events per reader, CPU cores meanwhile.
 *           (After one/fifty, their delivery worker still polls, about once a second: counted.)
 *
 * After each delivery phase: every event delivered exactly once to every endpoint, in feed
 * order per endpoint (by webhook-id); after longpoll, every event read exactly once by every
 * reader, in the order recorded.
 */
import { randomUUID } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { availableParallelism, loadavg } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request } from 'undici'
import type { App } from '../src/app.ts'
import { openExternalDatabase, type Database } from '../src/database/index.ts'
import { signedHeaders } from '../src/modules/webhooks/signing.ts'
import { createScratchPostgresDatabase } from '../test/support/database.ts'
import { adminCall, ADMIN_KEY, benchApp, benchDatabaseKinds, benchPostgresUrl, cpuMeter, printReproduce, scratchEmbeddedDatabase, type BenchDatabaseKind } from './support.ts'

const SECONDS = Number(process.env.BENCH_EVENTS_SECONDS ?? 5)
const CONCURRENCY = Number(process.env.BENCH_EVENTS_CONCURRENCY ?? 32)
const ONE = Number(process.env.BENCH_EVENTS_ONE ?? 1000)
const FIFTY = Number(process.env.BENCH_EVENTS_FIFTY ?? 200)
const WAITERS = Number(process.env.BENCH_EVENTS_WAITERS ?? 200)
/** longpoll: the readers wait this long with no event while their statements are counted. */
const IDLE_SECONDS = 3
/** longpoll: one event recorded every this many ms. */
const EVENT_GAP_MS = 100
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

async function benchDeliveries(kind: BenchDatabaseKind, app: App, receiver: Receiver, endpoints: number, events: number, parallel = false): Promise<Result> {
  receiver.reset()
  const paths: string[] = []
  for (let n = 0; n < endpoints; n++) {
    const path = `/hook-${endpoints}-${parallel ? 'parallel-' : ''}${n}`
    paths.push(path)
    await adminCall(app, 'POST', '/v1/webhooks', { url: `${receiver.url}${path}`, eventTypes: ['*'], parallel })
  }
  const ids = await recordEvents(app, events)
  const expected = endpoints * events
  const started = performance.now()
  app.webhookDelivery.start()
  while (receiver.count < expected && performance.now() - started < 300_000) await new Promise((resolve) => setTimeout(resolve, 20))
  const seconds = (performance.now() - started) / 1000
  // Endpoints of this phase only, then disabled so that the next phase's events are theirs alone.
  const inOrder = (got: string[]) => (parallel ? [...got].sort() : got)
  const ok = paths.every((path) => JSON.stringify(inOrder(receiver.byPath.get(path) ?? [])) === JSON.stringify(inOrder(ids)))
  const hooks = (await adminCall(app, 'GET', '/v1/webhooks')).items as { id: string }[]
  for (const hook of hooks) await app.inject({ method: 'PATCH', url: `/v1/webhooks/${hook.id}`, headers: { authorization: `Bearer ${ADMIN_KEY}` }, payload: { enabled: false } })
  return {
    kind,
    phase: `${endpoints}${parallel ? ' parallel' : ''} endpoint${endpoints > 1 ? 's' : ''} × ${events} events`,
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

/**
 * Counts the statements `database` sends from now on, at the driver: postgres.js calls its
 * `debug` option (read on every query) for each statement; on PGlite, Drizzle calls the
 * client's `query` for every statement outside a transaction (those inside one are not
 * counted: the idle wait has none). A counter, cheap enough to leave on.
 */
function countStatements(database: Database): { count: number } {
  const counter = { count: 0 }
  const client = (database.db as unknown as { $client: Record<string, unknown> }).$client
  if (database.kind === 'external') {
    ;(client.options as { debug?: unknown }).debug = () => counter.count++
  } else {
    // $client is a Proxy over the PGlite instance (src/database withInstanceParsers) that calls
    // the instance's own `query`: shadow it on the instance, calling PGlite's.
    const query = (Object.getPrototypeOf(client) as { query: (...args: unknown[]) => Promise<unknown> }).query
    client.query = function (this: unknown, ...args: unknown[]) {
      counter.count++
      return query.apply(this, args)
    }
  }
  return counter
}

/** The `next` of the feed's end: plain GETs (no wait) page through until one comes back empty. */
async function feedEnd(app: App): Promise<string> {
  let after: string | undefined
  for (;;) {
    const page = await adminCall(app, 'GET', `/v1/events?limit=500${after ? `&after=${after}` : ''}`)
    if (page.items.length === 0) return page.next as string
    after = page.next
  }
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN
const cores = (n: number | null) => (n === null ? '–' : n.toFixed(2))

/**
 * Long polls through app.inject, not a listener: inject runs every request concurrently in the
 * app (it is not a queue), and the long poll's cost is what the route does while it waits (a
 * feed read every 250 ms per waiter), which a socket does not change; 200 keep-alive connections
 * would add this process's HTTP parsing of ~WAITERS × 10 re-polls a second as the client too.
 */
async function benchLongPoll(kind: BenchDatabaseKind, app: App): Promise<Result> {
  const total = Math.round((SECONDS * 1000) / EVENT_GAP_MS)
  const statements = countStatements(app.database)
  const start = await feedEnd(app)
  /** Event number (payload n) -> when its transaction had committed. */
  const committedAt = new Map<number, number>()
  /** Per reader: [event number, when the reader had it]. */
  const received: [number, number][][] = Array.from({ length: WAITERS }, () => [])
  let giveUpAt = Infinity // a reader missing an event stops after its last wait (up to 30 s) once this has passed
  const readers = Promise.all(
    received.map(async (got) => {
      let after = start
      while (got.length < total && performance.now() < giveUpAt) {
        const page = await adminCall(app, 'GET', `/v1/events?after=${after}&wait=30s`)
        const at = performance.now()
        for (const item of page.items as { data: { n: number } }[]) got.push([item.data.n, at])
        after = page.next
      }
    }),
  )

  await sleep(500) // every reader in its first wait
  const idleCpu = await cpuMeter(kind, app.database.db)
  statements.count = 0
  const idleStarted = performance.now()
  await sleep(IDLE_SECONDS * 1000)
  const idleStatements = statements.count / ((performance.now() - idleStarted) / 1000)
  const idle = await idleCpu()

  const recordingCpu = await cpuMeter(kind, app.database.db)
  const started = performance.now()
  for (let n = 0; n < total; n++) {
    const wait = started + n * EVENT_GAP_MS - performance.now()
    if (wait > 1) await sleep(wait)
    await app.database.db.transaction((tx) => app.services.events.record(tx, sample(n)))
    committedAt.set(n, performance.now())
  }
  giveUpAt = performance.now() + 5_000
  await readers
  const recording = await recordingCpu()

  const latencies = received.flatMap((got) => got.map(([n, at]) => at - (committedAt.get(n) ?? NaN))).sort((a, b) => a - b)
  const counts = received.map((got) => got.length)
  const [fewest, most] = [Math.min(...counts), Math.max(...counts)]
  const ok = received.every((got) => got.length === total && got.every(([n], i) => n === i))
  const ms = (p: number) => percentile(latencies, p).toFixed(0)
  return {
    kind,
    phase: `long poll wait=30s (${WAITERS} waiters, an event every ${EVENT_GAP_MS} ms for ${SECONDS} s)`,
    perSecond: idleStatements,
    detail:
      `statements/s while waiting (CPU cores: this process ${cores(idle.node)}, PostgreSQL ${cores(idle.postgres)}); ` +
      `commit → reader p50 ${ms(50)} ms, p95 ${ms(95)} ms, max ${ms(100)} ms; ` +
      `each reader got ${fewest === most ? fewest : `${fewest}–${most}`} of ${total} events; ` +
      `while recording CPU cores: this process ${cores(recording.node)}, PostgreSQL ${cores(recording.postgres)}`,
    ok,
  }
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
        if (run('parallel')) results.push(await benchDeliveries(kind, app, receiver, 50, FIFTY, true))
        if (run('feed')) results.push(await benchFeed(kind, app))
        if (run('longpoll')) results.push(await benchLongPoll(kind, app))
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
  printReproduce('bench:events', postgresUrl, { BENCH_EVENTS_SECONDS: SECONDS, BENCH_EVENTS_CONCURRENCY: CONCURRENCY, BENCH_EVENTS_ONE: ONE, BENCH_EVENTS_FIFTY: FIFTY, BENCH_EVENTS_WAITERS: WAITERS })
  if (results.some((r) => r.ok === false)) process.exitCode = 1
}

await main()
