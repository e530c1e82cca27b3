import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { freePort } from '../../src/sandbox/rig.ts'
import { externalTestUrl } from './support.ts'

// The sandbox always runs Mailgate on its own embedded database: the PGlite pass covers it.
if (externalTestUrl) console.warn('test/e2e/sandbox.test.ts: `npm run sandbox` always uses its own embedded database, so it runs in the PGlite pass only. Skipped.')

const sandboxEntry = fileURLToPath(new URL('../../src/cli/sandbox.ts', import.meta.url))

let child: ChildProcess | undefined
let dataDir: string | undefined
afterAll(async () => {
  // Stopped the way it stops itself (Mailgate with it), then by force; then its files go.
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child!.once('exit', resolve))
    child.kill('SIGTERM')
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 20_000))])
    child.kill('SIGKILL')
  }
  if (dataDir) await rm(dataDir, { recursive: true, force: true })
})

describe.skipIf(externalTestUrl)('npm run sandbox', () => {
  it('starts the stand-in and Mailgate as its own process, wires the demo up, and the printed steps work (a request, an answer, a reply threaded to it); an out-of-office reply makes no work and an NDR marks the message bounced, each seen by the webhook', async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'mailgate-sandbox-'))
    const [port, microsoftPort, webhookPort, controlPort] = [await freePort(), await freePort(), await freePort(), await freePort()]
    let output = ''
    child = spawn(process.execPath, [sandboxEntry], {
      env: { ...process.env, DATA_DIR: dataDir, PORT: String(port), SANDBOX_MICROSOFT_PORT: String(microsoftPort), SANDBOX_WEBHOOK_PORT: String(webhookPort), SANDBOX_CONTROL_PORT: String(controlPort), SYNC_INTERVAL: '5' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')))
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')))
    const printed = async (text: string, ms = 90_000) => {
      const deadline = Date.now() + ms
      while (!output.includes(text)) {
        if (Date.now() > deadline || child!.exitCode !== null) throw new Error(`"${text}" was not printed; the sandbox printed:\n${output}`)
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    }
    await printed('Wired up:')
    const key = /Admin API key\s+(\S+)/.exec(output)![1]!
    expect(output).toContain(`curl -s http://127.0.0.1:${controlPort}/mail`)

    const control = (path: string, body: unknown) => fetch(`http://127.0.0.1:${controlPort}${path}`, { method: 'POST', body: JSON.stringify(body) })
    expect((await control('/mail', { from: 'customer@fabrikam.example', to: 'support@contoso.example', subject: 'My printer is on fire', text: 'Help.' })).status).toBe(201)
    await printed('webhook <- work_item.requested subject="My printer is on fire"')

    const send = (to: string, subject: string, workItemRef: string) =>
      fetch(`http://127.0.0.1:${port}/v1/messages`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ from: 'hello@contoso.example', to: [to], subject, workItemRef, body: { contentType: 'text', content: 'On the way.' } }),
      })
    expect((await send('customer@fabrikam.example', 'Re: My printer is on fire', 'WI-1')).status).toBe(202)
    await printed('webhook <- message.sent from="hello@contoso.example" workItemRef="WI-1"')
    const inbox = (await (await fetch(`http://127.0.0.1:${controlPort}/mailboxes/customer@fabrikam.example`)).json()) as { subject: string }[]
    expect(inbox.map((message) => message.subject)).toEqual(['Re: My printer is on fire'])

    expect((await control('/reply', { mailbox: 'customer@fabrikam.example', text: 'Thanks!' })).status).toBe(201)
    await printed('webhook <- work_item.message_appended subject="Re: My printer is on fire" from="customer@fabrikam.example" workItemRef="WI-1"')

    // Out of office: the Exchange-style automatic reply threads to its work item, flagged, and makes no new work.
    expect((await control('/automatic-reply', { mailbox: 'customer@fabrikam.example', message: 'Back on Monday.' })).status).toBe(200)
    expect((await send('customer@fabrikam.example', 'Your invoice', 'WI-2')).status).toBe(202)
    await printed('webhook <- work_item.message_appended subject="Automatic reply: Your invoice" from="customer@fabrikam.example" workItemRef="WI-2" automated=true')
    expect(output).not.toContain('work_item.requested subject="Automatic reply')

    // An address the organisation does not have: Exchange's NDR comes back and marks the message bounced.
    expect((await send('nobody@contoso.example', 'Hello?', 'WI-3')).status).toBe(202)
    await printed('webhook <- message.bounced workItemRef="WI-3" recipient="nobody@contoso.example" status="5.1.10"')

    // The control API answers anything malformed with 400 and stays up.
    const raw = await fetch(`http://127.0.0.1:${controlPort}/mail`, { method: 'POST', body: '{"to": ' })
    expect(raw.status).toBe(400)
    expect((await control('/mail', { to: 'hello@contoso.example', subject: 'To the alias', text: 'Hi' })).status).toBe(201)

    // Faults on demand: a send that Graph refuses once with 503 is retried and goes out.
    expect((await control('/faults', { service: 'graph', kind: 'nonsense' })).status).toBe(400)
    expect((await control('/faults', { service: 'graph', kind: 'status', status: 503, method: 'POST', path: '/send' })).status).toBe(200)
    expect((await send('customer@fabrikam.example', 'Retried', 'WI-4')).status).toBe(202)
    await printed('webhook <- message.sent from="hello@contoso.example" workItemRef="WI-4"')
    const attempts = (await (await fetch(`http://127.0.0.1:${port}/v1/messages?limit=1`, { headers: { authorization: `Bearer ${key}` } })).json()) as { items: { attempts: number }[] }
    expect(attempts.items[0]!.attempts).toBe(2)
    const pending = async () => ((await (await fetch(`http://127.0.0.1:${controlPort}/faults`)).json()) as { pending: { graph: number } }).pending.graph
    expect(await pending()).toBe(0)
    expect((await control('/faults', { service: 'graph', kind: 'network', count: 3, path: '/never-requested' })).status).toBe(200)
    expect(await pending()).toBe(3)
    expect((await fetch(`http://127.0.0.1:${controlPort}/faults`, { method: 'DELETE' })).status).toBe(200)
    expect(await pending()).toBe(0)

    // Not a web page's to drive (an Origin header), and a sender must be an address.
    const fromPage = await fetch(`http://127.0.0.1:${controlPort}/mail`, { method: 'POST', headers: { origin: 'https://evil.example' }, body: JSON.stringify({ to: 'support@contoso.example', subject: 'x' }) })
    expect(fromPage.status).toBe(403)
    expect((await control('/mail', { from: 'not an address', to: 'support@contoso.example', subject: 'x' })).status).toBe(400)

    // Ctrl-C stops everything: the sandbox, and Mailgate with it.
    child.kill('SIGINT')
    await new Promise((resolve) => child!.once('exit', resolve))
    expect(await fetch(`http://127.0.0.1:${port}/health/live`).then(() => 'answered', () => 'closed')).toBe('closed')
  }, 180_000)
})
