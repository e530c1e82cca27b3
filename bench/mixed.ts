/**
 * npm run bench:mixed
 *
 * Sustained send + receive through real Mailgate server processes and the Microsoft 365
 * stand-in over HTTPS (the same Rig as `npm run test:e2e`), with faults injected all along:
 * every BENCH_MIXED_FAULT_EVERY_S (5) seconds Graph answers a burst of 503s, 429s with
 * Retry-After, connection resets and a send whose answer is lost, and the token endpoint
 * fails twice. Graph requests take BENCH_MIXED_LATENCY_MS (100) each; Graph's limits stand
 * (4 requests at once, 10,000 per 10 minutes, per app and mailbox).
 *
 * Runs: embedded PGlite with one instance; with BENCH_DATABASE_URL (or TEST_DATABASE_URL),
 * PostgreSQL with one instance and with three (a scratch database each, dropped afterwards).
 * BENCH_DATABASES=pglite,postgres,postgres3 narrows it.
 *
 * Load: BENCH_MIXED_RATE (8) messages a second asked to be sent (POST /v1/messages from
 * the alias and the mailbox to 10 customer mailboxes, each with an Idempotency-Key, retried
 * until answered) and as many customer mails a second arriving in the support mailbox, for
 * BENCH_MIXED_SECONDS (60); a reader also polls GET /v1/messages?limit=20 and GET
 * /v1/events?limit=100 twice a second. Then it waits until everything settled.
 *
 * Reports, per run: throughput (messages sent and mails processed per second while the load
 * ran, and as a ratio of the offered rate, the baseline of the same run), how long after the
 * load the last ones finished (work a fault sent into retry backoff), API p50/p99 for the
 * POST and the reads, end to end p50/p99 (accepted to sent; arrival in the mailbox to stored
 * outcome), errors (API answers other than expected, requests given up), and lost / doubled
 * messages, mails and events (target: zero of both).
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { MixedLoad, percentile, type Totals } from '../src/sandbox/load.ts'
import { Rig } from '../src/sandbox/rig.ts'
import { createScratchPostgresDatabase } from '../test/support/database.ts'
import { benchPostgresUrl, printReproduce } from './support.ts'

const RATE = Number(process.env.BENCH_MIXED_RATE ?? 8)
const SECONDS = Number(process.env.BENCH_MIXED_SECONDS ?? 60)
const LATENCY_MS = Number(process.env.BENCH_MIXED_LATENCY_MS ?? 100)
const FAULT_EVERY_S = Number(process.env.BENCH_MIXED_FAULT_EVERY_S ?? 5)

type RunKind = 'pglite' | 'postgres' | 'postgres3'

interface Result {
  run: string
  /** Sent, and processed, while the load ran: per second, and as a share of what was offered meanwhile. */
  sentPerSecond: number
  processedPerSecond: number
  /** Seconds after the load ended until the last message was sent / the last mail processed (the retries of faulted work). */
  sendDrainS: number
  receiveDrainS: number
  postP50: number
  postP99: number
  readP50: number
  readP99: number
  sendP50: number
  sendP99: number
  receiveP50: number
  receiveP99: number
  errors: number
  faults: number
  totals: Totals
}

/** Faults of every kind, a burst at a time, until `stopped`. */
async function injectFaults(rig: Rig, stopped: () => boolean): Promise<number> {
  let injected = 0
  while (!stopped()) {
    await sleep(FAULT_EVERY_S * 1000)
    if (stopped()) break
    rig.standIn.failNextGraphRequests(
      { kind: 'status', status: 503, code: 'ServiceUnavailable' },
      { kind: 'status', status: 429, code: 'ApplicationThrottled', retryAfter: 1 },
      { kind: 'network' },
      { kind: 'status', status: 503, code: 'ServiceUnavailable' },
    )
    rig.standIn.failGraphRequests({ method: 'POST', path: /\/send$/ }, { kind: 'lost-response', status: 504 })
    rig.standIn.failNextTokenRequests({ kind: 'status', status: 503 }, { kind: 'network' })
    injected += 7
  }
  return injected
}

/** Reads of the API a dashboard would make, twice a second, timed. */
async function readApi(rig: Rig, stopped: () => boolean): Promise<{ latencies: number[]; errors: number }> {
  const latencies: number[] = []
  let errors = 0
  for (let turn = 0; !stopped(); turn++) {
    const path = turn % 2 === 0 ? '/v1/messages?limit=20' : '/v1/events?limit=100'
    const started = performance.now()
    const answer = await rig.api('GET', path).catch(() => ({ status: 0 }))
    latencies.push(performance.now() - started)
    if (answer.status !== 200) errors++
    await sleep(500)
  }
  return { latencies, errors }
}

async function run(kind: RunKind, postgresUrl: string | undefined): Promise<Result> {
  const dir = await mkdtemp(join(tmpdir(), 'mailgate-bench-mixed-'))
  const database = kind === 'pglite' ? undefined : await createScratchPostgresDatabase(postgresUrl!)
  const rig = new Rig({ dir, instances: kind === 'postgres3' ? 3 : 1, databaseUrl: database?.url, customers: 9, env: { SEND_RATE_PER_MINUTE: '6000', LOG_LEVEL: 'warn' } })
  try {
    await rig.start()
    rig.standIn.latencyMs = LATENCY_MS
    const count = RATE * SECONDS
    const load = new MixedLoad(rig, { sends: count, arrivals: count, perSecond: RATE, concurrency: 16 })
    let done = false
    const started = Date.now()
    let ended = 0
    const [faults, reads] = await Promise.all([
      injectFaults(rig, () => done),
      readApi(rig, () => done),
      load.run().finally(() => {
        done = true
        ended = Date.now()
      }),
    ])
    await load.settle(600_000)
    const loadS = (ended - started) / 1000
    const totals = await load.totals()
    const timings = await load.timings()
    const within = (times: number[]) => times.filter((at) => at <= ended).length
    const label = kind === 'pglite' ? 'PGlite, 1 instance' : kind === 'postgres' ? 'PostgreSQL, 1 instance' : 'PostgreSQL, 3 instances'
    return {
      run: label,
      sentPerSecond: within(timings.sentAt) / loadS,
      processedPerSecond: within(timings.processedAt) / loadS,
      sendDrainS: Math.max(0, (Math.max(...timings.sentAt) - ended) / 1000),
      receiveDrainS: Math.max(0, (Math.max(...timings.processedAt) - ended) / 1000),
      postP50: percentile(load.latencies, 50),
      postP99: percentile(load.latencies, 99),
      readP50: percentile(reads.latencies, 50),
      readP99: percentile(reads.latencies, 99),
      sendP50: percentile(timings.sendDelays, 50),
      sendP99: percentile(timings.sendDelays, 99),
      receiveP50: percentile(timings.receiveDelays, 50),
      receiveP99: percentile(timings.receiveDelays, 99),
      errors: load.errors.length + load.notAccepted.length + reads.errors,
      faults,
      totals,
    }
  } finally {
    await rig.stop()
    await database?.drop()
    await rm(dir, { recursive: true, force: true })
  }
}

const postgresUrl = benchPostgresUrl()
if (!postgresUrl) console.log('PostgreSQL runs skipped: set BENCH_DATABASE_URL (or TEST_DATABASE_URL) to a server to include them.')
const kinds = (['pglite', 'postgres', 'postgres3'] as const).filter(
  (kind) => (kind === 'pglite' || postgresUrl) && (!process.env.BENCH_DATABASES || process.env.BENCH_DATABASES.split(',').includes(kind)),
)
console.log(`bench:mixed — ${RATE} sends/s + ${RATE} arrivals/s for ${SECONDS} s, Graph latency ${LATENCY_MS} ms, a fault burst every ${FAULT_EVERY_S} s (run ${randomBytes(3).toString('hex')})`)
const results: Result[] = []
for (const kind of kinds) {
  const result = await run(kind, postgresUrl)
  results.push(result)
  console.log(`${result.run}: ${JSON.stringify(result.totals)}`)
}
const ms = (value: number) => `${value.toFixed(0)} ms`
console.log('\n| run | sent/s during the load (of offered) | processed/s (of offered) | drain after the load: send / receive | POST p50 / p99 | reads p50 / p99 | accepted→sent p50 / p99 | arrival→outcome p50 / p99 | errors | faults | lost | doubled |')
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
for (const r of results) {
  const lost = r.totals.send.lost + r.totals.receive.lost + r.totals.events.missingFromFeed + r.totals.events.missingAtWebhook
  const doubled = r.totals.send.doubled + r.totals.send.extraRecords + r.totals.receive.doubled + r.totals.receive.duplicateWorkItemRequests + r.totals.events.duplicatedInFeed
  console.log(
    `| ${r.run} | ${r.sentPerSecond.toFixed(1)} (${(r.sentPerSecond / RATE).toFixed(2)}) | ${r.processedPerSecond.toFixed(1)} (${(r.processedPerSecond / RATE).toFixed(2)}) | ${r.sendDrainS.toFixed(0)} s / ${r.receiveDrainS.toFixed(0)} s | ${ms(r.postP50)} / ${ms(r.postP99)} | ${ms(r.readP50)} / ${ms(r.readP99)} | ${ms(r.sendP50)} / ${ms(r.sendP99)} | ${ms(r.receiveP50)} / ${ms(r.receiveP99)} | ${r.errors} | ${r.faults} | ${lost} | ${doubled} |`,
  )
}
printReproduce('bench:mixed', postgresUrl, { BENCH_MIXED_RATE: RATE, BENCH_MIXED_SECONDS: SECONDS, BENCH_MIXED_LATENCY_MS: LATENCY_MS, BENCH_MIXED_FAULT_EVERY_S: FAULT_EVERY_S })
const bad = results.filter((r) => r.totals.send.lost + r.totals.send.doubled + r.totals.receive.lost + r.totals.receive.doubled + r.totals.receive.duplicateWorkItemRequests > 0)
if (bad.length > 0) {
  console.error(`lost or doubled work in: ${bad.map((r) => r.run).join(', ')}`)
  process.exitCode = 1
}
