/**
 * The load client of bench/ingest.ts, run as a child process so that it does not share the
 * server's event loop: `connections` keep-alive connections each POST one distinct raw mail
 * (bench/ingest-mail.ts, numbered per request) after another as message/rfc822, for `warmup` seconds unrecorded
 * and then `seconds` recorded (answers arriving in that window count, as autocannon counts). Prints one line of JSON: rate, latency percentiles, statuses.
 *
 *   node bench/ingest-client.ts <url> <bearer key or -> <connections> <warmup s> <seconds> <tag>
 */
import { Agent, request } from 'node:http'
import { benchMail } from './ingest-mail.ts'

const [url, key, connections, warmup, seconds, tag] = process.argv.slice(2)
if (!url || !key || !connections || !warmup || !seconds || !tag) throw new Error('usage: ingest-client.ts <url> <key|-> <connections> <warmup s> <seconds> <tag>')

const agent = new Agent({ keepAlive: true, maxSockets: Number(connections) })
const target = new URL(url)

function post(body: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { 'content-type': 'message/rfc822', 'content-length': body.length }
    if (key !== '-') headers['authorization'] = `Bearer ${key}`
    const req = request({ agent, host: target.hostname, port: target.port, path: target.pathname + target.search, method: 'POST', headers }, (res) => {
      res.on('data', () => {})
      res.on('end', () => resolve(res.statusCode ?? 0))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

/**
 * A pool of mails with a placeholder where each names itself; request k sends pool[k % POOL]
 * with k written over the placeholder (POOL is a multiple of the mix's cycle of ten).
 */
const POOL = 1000
const PLACEHOLDER = '#'.repeat(10)
const pool = Array.from({ length: POOL }, (_, n) => {
  const template = benchMail(tag, n, PLACEHOLDER)
  const offsets: number[] = []
  for (let at = template.indexOf(PLACEHOLDER); at >= 0; at = template.indexOf(PLACEHOLDER, at + 1)) offsets.push(at)
  return { template, offsets }
})

function mail(k: number): Buffer {
  const { template, offsets } = pool[k % POOL]!
  const body = Buffer.from(template)
  const digits = String(k).padStart(PLACEHOLDER.length, '0')
  for (const at of offsets) body.write(digits, at, 'latin1')
  return body
}

let next = 0
const latencies: number[] = []
const statuses: Record<string, number> = {}
let errors = 0
const warmupEnds = performance.now() + Number(warmup) * 1000
const ends = warmupEnds + Number(seconds) * 1000

async function connection() {
  while (performance.now() < ends) {
    const body = mail(next++)
    const started = performance.now()
    const status = await post(body).catch(() => 0)
    const done = performance.now()
    statuses[status] = (statuses[status] ?? 0) + 1
    if (status === 0) errors++
    if (done >= warmupEnds && done <= ends) latencies.push(done - started)
  }
}

await Promise.all(Array.from({ length: Number(connections) }, connection))
agent.destroy()
latencies.sort((a, b) => a - b)
const percentile = (p: number) => latencies[Math.min(latencies.length - 1, Math.ceil((p / 100) * latencies.length) - 1)] ?? 0
console.log(
  JSON.stringify({
    /** Answers received in the measured seconds (after the warm-up). */
    requests: latencies.length,
    perSecond: latencies.length / Number(seconds),
    latency: { p50: percentile(50), p99: percentile(99), max: latencies.at(-1) ?? 0 },
    /** Every answer, warm-up included, by status (0: no answer). */
    statuses,
    sent: next,
    errors,
  }),
)
