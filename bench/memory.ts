/**
 * npm run bench:memory — the real server process, started as `npm start` starts it
 * (src/cli/start.ts: compiled dist/ with the production settings), on the embedded database and, when
 * BENCH_DATABASE_URL is set, on PostgreSQL (a scratch database). Each gets 10,000 generated
 * hostile requests (REST from its OpenAPI document and GraphQL from its schema, the same
 * generators as the fuzz tests) plus 5,000 ordinary reads; resident memory and heap are
 * measured after start and after the run, each after a forced garbage collection (through
 * the inspector protocol), and /health/live's answer time is probed while the run goes on.
 *
 * REQUESTS=10000 CONCURRENCY=8 FUZZ_SEED=... to change the run; START=source runs
 * src/server.ts instead; BENCH_DATABASES=pglite or =postgres runs one database only;
 * EXTRA_NODE_FLAGS adds flags (to compare settings).
 */
import { spawn } from 'node:child_process'
import { Agent, request as httpRequest } from 'node:http'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildSchema } from 'graphql'
import { loadSchema } from '../src/plugins/graphql.ts'
import { Random, histogram } from '../test/support/fuzz.ts'
import { graphqlFuzzRequests } from '../test/support/fuzz-graphql-requests.ts'
import { restFuzzRequests, type FuzzIds } from '../test/support/fuzz-rest-requests.ts'
import { createScratchPostgresDatabase } from '../test/support/database.ts'

const root = fileURLToPath(new URL('..', import.meta.url))
const PORT = 39_873
const BASE = `http://127.0.0.1:${PORT}`
const ADMIN_KEY = 'bench-memory-admin-key-0123456789abcdefghij'
const TOTAL = Number(process.env.REQUESTS ?? 10_000)
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 8)
const SEED = Number(process.env.FUZZ_SEED ?? 20261130)

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** A minimal Chrome DevTools Protocol client over the inspector's WebSocket. */
async function inspector(url: string) {
  const socket = new WebSocket(url)
  await new Promise((resolve, reject) => {
    socket.onopen = resolve
    socket.onerror = reject
  })
  let next = 1
  const pending = new Map<number, (result: unknown) => void>()
  socket.onmessage = (event) => {
    const message = JSON.parse(String(event.data)) as { id?: number; result?: unknown }
    if (message.id) pending.get(message.id)?.(message.result)
  }
  const call = (method: string, params: Record<string, unknown> = {}) =>
    new Promise<unknown>((resolve) => {
      const id = next++
      pending.set(id, resolve)
      socket.send(JSON.stringify({ id, method, params }))
    })
  return {
    async memory() {
      await call('HeapProfiler.collectGarbage')
      await sleep(500)
      await call('HeapProfiler.collectGarbage')
      const result = (await call('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true })) as {
        result: { value: string }
      }
      const usage = JSON.parse(result.result.value) as NodeJS.MemoryUsage
      const mib = (bytes: number) => Number((bytes / 1_048_576).toFixed(1))
      return { rss: mib(usage.rss), heapUsed: mib(usage.heapUsed), heapTotal: mib(usage.heapTotal), external: mib(usage.external), arrayBuffers: mib(usage.arrayBuffers) }
    },
    close: () => socket.close(),
  }
}

const agent = new Agent({ keepAlive: true, maxSockets: 64 })

/** node:http rather than fetch: fetch will not send a body with GET, nor some hostile header values. */
function send(method: string, path: string, headers: Record<string, string>, body?: string | Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const outgoing = httpRequest({ host: '127.0.0.1', port: PORT, method, path, headers, agent }, (response) => {
      response.resume()
      response.on('end', () => resolve(response.statusCode ?? 0))
    })
    outgoing.on('error', reject)
    outgoing.end(body)
  })
}

async function admin(method: string, path: string, body?: unknown) {
  const response = await fetch(`${BASE}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  })
  return response.json() as Promise<{ id: string }>
}

const postgresUrl = process.env.BENCH_DATABASE_URL || undefined
/** `npm start`'s process (src/cli/start.ts, which becomes the compiled server), or src/server.ts. */
const production = process.env.START !== 'source'
const extraFlags = process.env.EXTRA_NODE_FLAGS?.split(/\s+/).filter(Boolean) ?? []
const command = production ? ['src/cli/start.ts', ...extraFlags] : [...extraFlags, 'src/server.ts']

/** Starts the server on `env`, waits until it is ready, and lets it settle 5 s. */
async function startServer(env: Record<string, string>) {
  const [script, ...rest] = command
  const server = spawn(process.execPath, production ? [script!, '--inspect=127.0.0.1:0', ...rest] : ['--inspect=127.0.0.1:0', ...command], {
    cwd: root,
    env: { ...process.env, ...env, PORT: String(PORT), HOST: '127.0.0.1', LOG_LEVEL: 'warn', ADMIN_API_KEY: ADMIN_KEY, DISPATCHER_ENABLED: 'false' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  server.stdout!.on('data', (chunk) => (output += chunk))
  let exited = false
  server.on('exit', () => (exited = true))
  const inspectorUrl = await new Promise<string>((resolve) => {
    server.stderr!.on('data', (chunk) => {
      output += chunk
      const match = /Debugger listening on (ws:\/\/\S+)/.exec(output)
      if (match) resolve(match[1]!)
    })
  })
  for (;;) {
    if (exited) throw new Error(`the server exited before it was ready:\n${output}`)
    const ready = await fetch(`${BASE}/health/ready`).then((r) => r.status === 200, () => false)
    if (ready) break
    await sleep(50)
  }
  const devtools = await inspector(inspectorUrl)
  await sleep(5_000)
  return {
    server,
    devtools,
    async stop() {
      devtools.close()
      server.kill('SIGTERM')
      await new Promise((resolve) => server.on('exit', resolve))
    },
  }
}

async function measure(kind: 'pglite' | 'postgres') {
  const dataDir = await mkdtemp(join(tmpdir(), 'mailgate-memory-'))
  const scratch = kind === 'postgres' ? await createScratchPostgresDatabase(postgresUrl!) : undefined
  const env: Record<string, string> = scratch ? { DATABASE_URL: scratch.url, SECRETS_KEY: Buffer.alloc(32, 7).toString('base64'), MIGRATE_ON_START: 'true' } : { DATA_DIR: dataDir }
  // The first start creates the database (PGlite's initdb; migrations either way); the measured one is a restart.
  const first = await startServer(env)
  const firstStart = await first.devtools.memory()
  await first.stop()
  const { devtools, stop } = await startServer(env)
  try {
    const idle = await devtools.memory()

    const integration = await admin('POST', '/v1/integrations', {
      name: 'bench',
      tenant: 'contoso.onmicrosoft.com',
      clientId: '11111111-2222-3333-4444-555555555555',
      authMethod: 'clientSecret',
      clientSecret: 'bench-secret',
    })
    const connector = await admin('POST', '/v1/connectors', { integrationId: integration.id, name: 'out', direction: 'outgoing', primaryAddress: 'support@contoso.com' })
    const ids: FuzzIds = { integration: [integration.id], connector: [connector.id], route: [], message: [], apiKey: [], inbound: [], blockedAddress: [] }

    const random = new Random(SEED)
    const document = (await (await fetch(`${BASE}/docs/json`)).json()) as Parameters<typeof restFuzzRequests>[0]
    const schema = buildSchema(await loadSchema())
    const rest = restFuzzRequests(document, { adminKey: ADMIN_KEY, ids, random, perOperation: 150 })
    const graphql = graphqlFuzzRequests(schema, { adminKey: ADMIN_KEY, integrationId: integration.id, random, perField: 40 })
    const requests: (() => Promise<number>)[] = []
    for (let i = 0; requests.length < TOTAL; i++) {
      if (i % 10 < 7) {
        const request = rest[i % rest.length]!
        requests.push(() =>
          send(request.operation.method, request.url, { ...request.headers, ...(request.contentType ? { 'content-type': request.contentType } : {}) }, request.payload),
        )
      } else {
        const request = graphql[i % graphql.length]!
        requests.push(() =>
          send(
            'POST',
            '/graphql',
            { 'content-type': 'application/json', ...(request.key ? { authorization: `Bearer ${request.key}` } : {}) },
            JSON.stringify({ query: request.query, variables: request.variables }),
          ),
        )
      }
    }

    // Ordinary traffic too: the reads a UI and services make all day.
    for (let i = 0; i < 5_000; i++) {
      const path = i % 2 === 0 ? `/v1/connectors/${connector.id}` : '/v1/connectors?limit=50'
      requests.splice(i * 3, 0, () => send('GET', path, { authorization: `Bearer ${ADMIN_KEY}` }))
    }

    const statuses: number[] = []
    let clientErrors = 0
    let probing = true
    const healthMs: number[] = []
    const prober = (async () => {
      while (probing) {
        const started = performance.now()
        await fetch(`${BASE}/health/live`).then((r) => r.arrayBuffer())
        healthMs.push(performance.now() - started)
        await sleep(100)
      }
    })()
    const started = performance.now()
    let cursor = 0
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (cursor < requests.length) {
          const send = requests[cursor++]!
          // A request node:http itself refuses to send (a header value it will not encode) is not the server's answer.
          await send().then((status) => statuses.push(status), () => clientErrors++)
        }
      }),
    )
    const seconds = (performance.now() - started) / 1000
    probing = false
    await prober
    const after = await devtools.memory()
    await sleep(15_000)
    const settled = await devtools.memory()

    const sorted = [...healthMs].sort((a, b) => a - b)
    console.log(`\n${kind}: node ${process.version} ${command.join(' ')}, seed ${SEED}, concurrency ${CONCURRENCY}`)
    console.log(`requests: ${statuses.length} answered (${clientErrors} not sendable by node:http) in ${seconds.toFixed(1)} s`)
    console.log(`statuses: ${JSON.stringify(histogram(statuses))}`)
    console.log(`/health/live during the run: median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(1)} ms, max ${sorted.at(-1)!.toFixed(1)} ms (${sorted.length} probes)`)
    console.log('memory (MiB, each after a forced GC):')
    console.log(`  idle after first start:  ${JSON.stringify(firstStart)}`)
    console.log(`  idle after a restart:    ${JSON.stringify(idle)}`)
    console.log(`  right after the run:     ${JSON.stringify(after)}`)
    console.log(`  15 s after the run:      ${JSON.stringify(settled)}`)
    if (statuses.some((status) => status >= 500)) {
      console.log('FAILED: the server answered 5xx')
      process.exitCode = 1
    }
  } finally {
    await stop()
    await rm(dataDir, { recursive: true, force: true })
    await scratch?.drop()
  }
}

const kinds = (postgresUrl ? (['pglite', 'postgres'] as const) : (['pglite'] as const)).filter(
  (kind) => !process.env.BENCH_DATABASES || process.env.BENCH_DATABASES.split(',').includes(kind),
)
for (const kind of kinds) await measure(kind)
