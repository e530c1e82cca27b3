/**
 * A whole world for end-to-end runs (test/e2e, bench/mixed.ts): the Microsoft 365 stand-in
 * over HTTPS, a webhook receiver that counts what it gets, and one or more real Mailgate
 * server processes wired to both through Mailgate's own API, on embedded PGlite (one
 * instance) or on one PostgreSQL database (any number).
 */
import { randomBytes, randomUUID } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { createServer as createNetServer } from 'node:net'
import { join } from 'node:path'
import { makeCertificate, makeServerCertificate } from './certificates.ts'
import { MailgateProcess } from './mailgate-process.ts'
import { FakeMicrosoft } from './microsoft.ts'
import { wireUp } from './setup.ts'
import { buildTenant, DEMO, type SandboxState } from './world.ts'

export interface RigOptions {
  /** Scratch directory: logs, the CA, each instance's DATA_DIR. */
  dir: string
  /** Server processes; more than one needs `databaseUrl`. */
  instances?: number
  /** A PostgreSQL database (empty or migrated) shared by every instance; unset: embedded PGlite. */
  databaseUrl?: string
  /** Customer mailboxes in the other organisation besides DEMO.customer: customer1@..customerN@. */
  customers?: number
  /** Further server settings (SYNC_INTERVAL, SEND_RATE_PER_MINUTE, ...). */
  env?: Record<string, string>
}

export interface ReceivedEvent {
  id: string
  type: string
  data: Record<string, unknown>
}

/** A webhook receiver on 127.0.0.1 that answers 204 at once and remembers every delivery. */
export class CountingReceiver {
  /** Every event by id, and how many times it came (at-least-once delivery may repeat one). */
  readonly events = new Map<string, { event: ReceivedEvent; times: number }>()
  private server: Server | undefined

  async listen(): Promise<string> {
    this.server = createServer((request, response) => {
      const chunks: Buffer[] = []
      request.on('data', (chunk: Buffer) => chunks.push(chunk))
      request.on('end', () => {
        response.writeHead(204).end()
        try {
          const event = JSON.parse(Buffer.concat(chunks).toString('utf8')) as ReceivedEvent
          const seen = this.events.get(event.id)
          if (seen) seen.times++
          else this.events.set(event.id, { event, times: 1 })
        } catch {
          // Not an event: nothing to count.
        }
      })
    })
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve))
    return `http://127.0.0.1:${(this.server.address() as { port: number }).port}/events`
  }

  close(): Promise<void> {
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()))
  }
}

export async function freePort(): Promise<number> {
  const server = createNetServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

export class Rig {
  readonly standIn = new FakeMicrosoft()
  readonly receiver = new CountingReceiver()
  readonly instances: MailgateProcess[] = []
  readonly state: SandboxState
  readonly customers: string[]
  wired!: Awaited<ReturnType<typeof wireUp>>
  /** Set by stop(): nothing is started or restarted after it. */
  stopped = false
  /** Exits nobody asked for (a crash), as `port: code/signal`. */
  readonly unexpectedExits: string[] = []
  private readonly stopping = new Set<MailgateProcess>()
  private closeStandIn: (() => Promise<void>) | undefined
  /** The SECRETS_KEY every instance on the shared database is given. */
  private readonly secretsKey = randomBytes(32).toString('base64')

  private readonly options: RigOptions

  constructor(options: RigOptions) {
    this.options = options
    const tls = makeServerCertificate(['127.0.0.1', 'localhost'])
    this.state = {
      tenantId: randomUUID(),
      clientId: randomUUID(),
      appCertificate: makeCertificate({ subject: 'Mailgate e2e app' }),
      tls,
      adminKey: `mgk_e2e_${randomBytes(24).toString('base64url')}`,
    }
    this.customers = [DEMO.customer, ...Array.from({ length: options.customers ?? 0 }, (_, index) => `customer${index + 1}@fabrikam.example`)]
    if ((options.instances ?? 1) > 1 && !options.databaseUrl) throw new Error('More than one instance needs a PostgreSQL database (databaseUrl)')
  }

  /** Starts the stand-in, the receiver and every instance, and wires the demo up. */
  async start(): Promise<this> {
    const { dir } = this.options
    mkdirSync(dir, { recursive: true })
    const fabrikam = buildTenant(this.standIn, this.state)
    for (const address of this.customers.slice(1)) this.standIn.addMailbox(fabrikam, address, { stableIds: true })
    const listening = await this.standIn.listen('global', { certificate: this.state.tls })
    this.closeStandIn = listening.close
    const caPath = join(dir, 'ca.pem')
    writeFileSync(caPath, this.state.tls.caPem)
    // Graph only calls https URLs: what it sends there reaches a running instance, as through a TLS-terminating proxy.
    this.standIn.setNotificationTransport(async ({ url, headers, body }) => {
      const target = new URL(url)
      const response = await fetch(`${this.live().url}${target.pathname}${target.search}`, { method: 'POST', headers, body, signal: AbortSignal.timeout(10_000) })
      return { status: response.status, contentType: response.headers.get('content-type') ?? undefined, body: await response.text() }
    })
    const webhookUrl = await this.receiver.listen()

    const count = this.options.instances ?? 1
    for (let index = 0; index < count; index++) {
      const dataDir = join(dir, `instance-${index}`)
      mkdirSync(dataDir, { recursive: true })
      this.instances.push(
        new MailgateProcess({
          port: await freePort(),
          logPath: join(dir, `instance-${index}.log`),
          env: {
            PATH: process.env.PATH ?? '',
            DATA_DIR: dataDir,
            ADMIN_API_KEY: this.state.adminKey,
            AUTHORITY_HOST: listening.host,
            GRAPH_HOST: listening.host,
            NODE_EXTRA_CA_CERTS: caPath,
            PUBLIC_BASE_URL: 'https://mailgate.e2e.example',
            WEBHOOK_ALLOW_HTTP: 'true',
            WEBHOOK_ALLOWED_NETWORKS: '127.0.0.1/32',
            SYNC_INTERVAL: '5',
            LOG_LEVEL: 'info',
            ...(this.options.databaseUrl
              ? { DATABASE_URL: this.options.databaseUrl, MIGRATE_ON_START: 'true', SECRETS_KEY: this.secretsKey }
              : {}),
            ...this.options.env,
          },
        }),
      )
    }
    // The first one migrates an empty database alone; the rest start together.
    await this.startInstance(this.instances[0]!)
    await Promise.all(this.instances.slice(1).map((instance) => this.startInstance(instance)))
    this.wired = await wireUp(this.instances[0]!.url, this.state, webhookUrl)
    return this
  }

  async startInstance(instance: MailgateProcess): Promise<void> {
    if (this.stopped) throw new Error('The rig is stopped')
    this.stopping.delete(instance)
    instance.start((code, signal) => {
      if (!this.stopping.has(instance)) this.unexpectedExits.push(`${instance.url}: ${signal ?? `exit ${code}`}`)
    })
    await instance.ready()
  }

  /** kill -9, then started again on the same database. */
  async crashAndRestart(instance: MailgateProcess): Promise<void> {
    this.stopping.add(instance)
    await instance.kill()
    if (!this.stopped) await this.startInstance(instance)
  }

  /** A running instance, chosen at random (for spreading requests over instances). */
  live(): MailgateProcess {
    const running = this.instances.filter((instance) => instance.running)
    if (running.length === 0) throw new Error('No Mailgate instance is running')
    return running[Math.floor(Math.random() * running.length)]!
  }

  /** A request to Mailgate's API as the admin, through a running instance. */
  async api<T = unknown>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: T; headers: Headers }> {
    const response = await fetch(`${this.live().url}${path}`, {
      method,
      headers: { authorization: `Bearer ${this.state.adminKey}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(30_000),
    })
    const text = await response.text()
    return { status: response.status, body: (text ? JSON.parse(text) : undefined) as T, headers: response.headers }
  }

  async stop(): Promise<void> {
    this.stopped = true
    for (const instance of this.instances) this.stopping.add(instance)
    await Promise.all(this.instances.map((instance) => instance.stop()))
    await this.receiver.close()
    this.standIn.stop()
    await this.closeStandIn?.()
  }
}
