/**
 * `npm run sandbox`: Mailgate against a local Microsoft 365 stand-in, wired up, in one command.
 *
 * The stand-in (src/sandbox/microsoft.ts) serves Entra sign-in and Graph mail over HTTPS on
 * 127.0.0.1 with a certificate from a private CA made at first start (kept in
 * DATA_DIR/sandbox). Mailgate runs as its own process on its own embedded database, with
 * AUTHORITY_HOST / GRAPH_HOST pointed at the stand-in and the CA trusted through
 * NODE_EXTRA_CA_CERTS (TLS checks stay on). The demo is wired through Mailgate's API; a
 * local receiver prints what its webhook gets. Ctrl-C stops everything.
 */
import { writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { createServer as createNetServer } from 'node:net'
import { join } from 'node:path'
import { controlServer } from '../sandbox/control.ts'
import { MailgateProcess } from '../sandbox/mailgate-process.ts'
import { FakeMicrosoft } from '../sandbox/microsoft.ts'
import { wireUp } from '../sandbox/setup.ts'
import { buildTenant, DEMO, loadOrCreateState } from '../sandbox/world.ts'

const dir = join(process.env.DATA_DIR ?? './data', 'sandbox')
const port = Number(process.env.PORT ?? 3000)
const microsoftPort = Number(process.env.SANDBOX_MICROSOFT_PORT ?? 3443)
const receiverPort = Number(process.env.SANDBOX_WEBHOOK_PORT ?? 3001)
const controlPort = Number(process.env.SANDBOX_CONTROL_PORT ?? 3002)
const mailgateUrl = `http://127.0.0.1:${port}`
/** Graph only calls https URLs: the stand-in hands what it sends there to Mailgate on 127.0.0.1, as a TLS-terminating proxy would. */
const publicBaseUrl = 'https://mailgate.sandbox.example'

const { state, created, caPath } = loadOrCreateState(dir)
const standIn = new FakeMicrosoft()
buildTenant(standIn, state)
const { host } = await standIn.listen('global', { port: microsoftPort, certificate: state.tls })
standIn.setNotificationTransport(async ({ url, headers, body }) => {
  const target = new URL(url)
  const response = await fetch(`${mailgateUrl}${target.pathname}${target.search}`, { method: 'POST', headers, body, signal: AbortSignal.timeout(10_000) })
  return { status: response.status, contentType: response.headers.get('content-type') ?? undefined, body: await response.text() }
})

const receiver = createServer((request, response) => {
  const chunks: Buffer[] = []
  request.on('data', (chunk: Buffer) => chunks.push(chunk))
  request.on('end', () => {
    response.end()
    try {
      const event = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { type: string; data: Record<string, unknown> }
      const about = ['subject', 'from', 'processId', 'workItemRef', 'automated', 'recipient', 'status', 'reason'].flatMap((key) => (event.data[key] ? [`${key}=${JSON.stringify(event.data[key])}`] : []))
      console.log(`webhook <- ${event.type} ${about.join(' ')}`)
    } catch {
      console.log('webhook <- a body that is not JSON')
    }
  })
})
await new Promise<void>((resolve, reject) => receiver.once('error', reject).listen(receiverPort, '127.0.0.1', resolve))

const control = controlServer(standIn)
await new Promise<void>((resolve, reject) => control.once('error', reject).listen(controlPort, '127.0.0.1', resolve))

// Mailgate's port must be free: a Mailgate left from an earlier run would answer in its place.
await new Promise<void>((resolve, reject) => {
  const probe = createNetServer().once('error', () => reject(new Error(`Port ${port} is in use (a Mailgate still running?): stop it, or choose another with PORT`)))
  probe.listen(port, '127.0.0.1', () => probe.close(() => resolve()))
})

const logPath = join(dir, 'mailgate.log')
writeFileSync(logPath, '')
// Only what a process needs from this shell: none of the operator's own Mailgate settings
// (DATABASE_URL, SECRETS_KEY, DISPATCHER_ENABLED, NODE_TLS_REJECT_UNAUTHORIZED, ...) leak in.
const passed = Object.fromEntries(['PATH', 'HOME', 'TMPDIR', 'LANG', 'TZ', 'LOG_LEVEL', 'SYNC_INTERVAL'].flatMap((name) => (process.env[name] ? [[name, process.env[name]!]] : [])))
// Its own process group, so that a Ctrl-C in the terminal reaches only the sandbox, which then stops Mailgate once, gracefully.
const server = new MailgateProcess({
  port,
  logPath,
  detached: true,
  env: {
    ...passed,
    DATA_DIR: join(dir, 'mailgate'),
    ADMIN_API_KEY: state.adminKey,
    AUTHORITY_HOST: host,
    GRAPH_HOST: host,
    NODE_EXTRA_CA_CERTS: caPath,
    PUBLIC_BASE_URL: publicBaseUrl,
    WEBHOOK_ALLOW_HTTP: 'true',
    WEBHOOK_ALLOWED_NETWORKS: '127.0.0.1/32',
    SYNC_INTERVAL: process.env.SYNC_INTERVAL ?? '10',
  },
})
let stopping = false
// However the sandbox ends, Mailgate does not outlive it (MailgateProcess kills it on exit).
server.start((code, signal) => {
  if (stopping) return
  console.error(`Mailgate stopped (${signal ?? `exit ${code}`}); its log: ${logPath}`)
  process.exit(1)
})

async function stop(): Promise<void> {
  stopping = true
  await server.stop(15_000)
  standIn.stop()
  receiver.close()
  control.close()
}
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(signal, () => void stop().then(() => process.exit(0)))
process.on('uncaughtException', (error) => {
  console.error(error)
  void stop().then(() => process.exit(1))
})

await server.ready(120_000).catch(async (error: unknown) => {
  console.error(`${error instanceof Error ? error.message : String(error)}\nIts log: ${logPath}`)
  await stop()
  process.exit(1)
})
const wired = await wireUp(mailgateUrl, state, `http://127.0.0.1:${receiverPort}/events`).catch(async (error: unknown) => {
  console.error(`Wiring the demo up failed: ${error instanceof Error ? error.message : String(error)}\nMailgate's log: ${logPath}`)
  await stop()
  process.exit(1)
})

const key = state.adminKey
const controlUrl = `http://127.0.0.1:${controlPort}`
console.log(`
Mailgate sandbox${created ? ' (first start: certificates and ids made in ' + dir + ')' : ''}
  Mailgate          ${mailgateUrl}   (log: ${logPath})
  Microsoft 365     https://${host}   (a stand-in; its CA: ${caPath})
  Webhook receiver  http://127.0.0.1:${receiverPort}/events   (prints what it gets, below)
  Control API       ${controlUrl}   (the outside world: POST /mail, /reply, /automatic-reply, /faults, /access-policy; GET /mailboxes/{address}, /faults; DELETE /faults)
  Admin API key     ${key}

Wired up: integration ${wired.integrationId} (certificate), incoming ${DEMO.incoming} (${wired.incomingId}),
outgoing ${DEMO.outgoing} with the alias ${DEMO.alias} (${wired.outgoingId}), webhook ${wired.webhookId}.

1. A customer writes to support (the control API plays the outside world): Mailgate syncs
   the mail, routes it to the "support" process, and the receiver prints work_item.requested:

  curl -s ${controlUrl}/mail -d '{"from":"${DEMO.customer}","to":"${DEMO.incoming}","subject":"My printer is on fire","text":"Please send help."}'

2. Answer from the alias for work item WI-1 (the receiver prints message.sent; the customer has it):

  curl -s ${mailgateUrl}/v1/messages -H 'authorization: Bearer ${key}' -H 'content-type: application/json' \\
    -d '{"from":"${DEMO.alias}","to":["${DEMO.customer}"],"subject":"Re: My printer is on fire","workItemRef":"WI-1","body":{"contentType":"text","content":"An engineer is on the way."}}'
  curl -s ${controlUrl}/mailboxes/${DEMO.customer}

3. The customer replies: it threads to WI-1, and the receiver prints work_item.message_appended:

  curl -s ${controlUrl}/reply -d '{"mailbox":"${DEMO.customer}","text":"Thank you!"}'

Watch the event feed (waits up to 30 s for the next event):

  curl -s '${mailgateUrl}/v1/events?wait=30s' -H 'authorization: Bearer ${key}'

API docs ${mailgateUrl}/docs  ·  GraphiQL ${mailgateUrl}/graphiql  ·  Ctrl-C stops everything.
`)
