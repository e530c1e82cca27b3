import { randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { FakeMicrosoft, GraphFault, TokenFault } from './microsoft.ts'

const MAX_BODY = 64 * 1024

async function readJson(request: IncomingMessage): Promise<Record<string, unknown>> {
  let size = 0
  const chunks: Buffer[] = []
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > MAX_BODY) throw new Error('the body is larger than 64 KB')
    chunks.push(chunk)
  }
  const text = Buffer.concat(chunks).toString('utf8')
  const value: unknown = text ? JSON.parse(text) : {}
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('the body must be a JSON object')
  return value as Record<string, unknown>
}

function integer(body: Record<string, unknown>, field: string, min: number, max: number): number | undefined {
  const value = body[field]
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) throw new Error(`${field} must be an integer from ${min} to ${max}`)
  return value
}

/**
 * `POST /faults {service: graph|token, kind, count?, status?, code?, retryAfter?, ms?, method?, path?}`:
 * the next `count` requests (of `method` and a path containing `path`, when given) fail:
 * `status` (an error answer, e.g. 503 or 429 with retryAfter), `network` (a reset), `delay`
 * (`ms`, e.g. past a client's timeout) or, for Graph, `lost-response` (done, answer lost).
 */
function injectFaults(standIn: FakeMicrosoft, body: Record<string, unknown>): { injected: number } {
  const service = text(body, 'service')
  const kind = text(body, 'kind')
  const count = integer(body, 'count', 1, 1000) ?? 1
  const status = integer(body, 'status', 400, 599)
  const retryAfter = integer(body, 'retryAfter', 0, 3600)
  const ms = integer(body, 'ms', 0, 120_000)
  const code = body.code === undefined ? undefined : text(body, 'code')
  if (service === 'token') {
    const fault: TokenFault | undefined =
      kind === 'status' ? { kind, status: status ?? 503 } : kind === 'network' ? { kind } : kind === 'delay' ? { kind, ms: ms ?? 15_000 } : undefined
    if (!fault) throw new Error('kind must be status, network or delay for the token endpoint')
    standIn.failNextTokenRequests(...Array<TokenFault>(count).fill(fault))
    return { injected: count }
  }
  if (service !== 'graph') throw new Error('service must be graph or token')
  let fault: GraphFault
  switch (kind) {
    case 'status':
      fault = { kind, status: status ?? 503, ...(code ? { code } : {}), ...(retryAfter !== undefined ? { retryAfter } : {}) }
      break
    case 'network':
      fault = { kind }
      break
    case 'delay':
      fault = { kind, ms: ms ?? 35_000 }
      break
    case 'lost-response':
      fault = { kind, ...(status ? { status } : {}), ...(retryAfter !== undefined ? { retryAfter } : {}) }
      break
    default:
      throw new Error('kind must be status, network, delay or lost-response')
  }
  const faults = Array<GraphFault>(count).fill(fault)
  const method = body.method === undefined ? undefined : text(body, 'method')
  const path = body.path === undefined ? undefined : text(body, 'path')
  if (method || path) standIn.failGraphRequests({ ...(method ? { method } : {}), ...(path ? { path: new RegExp(path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) } : {}) }, ...faults)
  else standIn.failNextGraphRequests(...faults)
  return { injected: count }
}

/** A bare address (`name@domain.example`), as the stand-in's mailboxes and their correspondents have. */
function address(body: Record<string, unknown>, field: string, fallback?: string): string {
  const value = text(body, field, fallback).trim().toLowerCase()
  if (!/^[a-z0-9._%+-]{1,64}@[a-z0-9-]+(\.[a-z0-9-]+)+$/.test(value) || value.length > 254) throw new Error(`${field} must be an email address like customer@fabrikam.example`)
  return value
}

function text(body: Record<string, unknown>, field: string, fallback?: string): string {
  const value = body[field] ?? fallback
  if (typeof value !== 'string' || value.length === 0 || value.length > 10_000) throw new Error(`${field} must be a string of 1 to 10,000 characters`)
  return value
}

/**
 * The sandbox's control API (plain HTTP on 127.0.0.1): what the outside world does to the
 * stand-in's mailboxes, since no real Internet mail reaches them.
 * - `POST /mail {to, from?, subject, text}`: mail from outside arrives in a hosted mailbox.
 * - `POST /reply {mailbox, text?}`: the newest message in a hosted mailbox's inbox is answered
 *   (In-Reply-To and References set), delivered to its sender's mailbox when that is hosted.
 * - `POST /automatic-reply {mailbox, message}`: out of office (Exchange-style automatic replies
 *   to mail from the stand-in's mailboxes, once per sender); `message: null` turns it off.
 * - `GET /mailboxes/{address}`: what is in a hosted mailbox's inbox.
 * - `POST /faults {...}`: Graph or token requests fail on demand (see injectFaults); `GET /faults`
 *   counts those not yet taken, `DELETE /faults` forgets them.
 * - `POST /access-policy {mailbox, allowedApps}`: an application access policy (null: none).
 * Mail sent to an address of a hosted domain that no mailbox has comes back as an Exchange NDR.
 * Only requests to the control API's own 127.0.0.1 / localhost host, and none that a browser
 * sends from a web page (with an Origin header), are taken: a page cannot drive it.
 */
export function controlServer(standIn: FakeMicrosoft): Server {
  return createServer((request, response) => {
    const answer = (status: number, body: unknown) => response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body, null, 2) + '\n')
    const handle = async () => {
      const host = request.headers.host ?? ''
      if (!/^(127\.0\.0\.1|localhost)(:\d+)?$/.test(host) || request.headers.origin !== undefined) {
        return answer(403, { error: 'The control API answers only requests to 127.0.0.1 or localhost, and none from a web page' })
      }
      const url = new URL(request.url ?? '/', 'http://sandbox')
      if (url.pathname === '/faults' && request.method === 'GET') return answer(200, { pending: standIn.pendingFaults() })
      if (url.pathname === '/faults' && request.method === 'DELETE') {
        standIn.clearFaults()
        return answer(200, { pending: standIn.pendingFaults() })
      }
      if (request.method === 'GET' && url.pathname.startsWith('/mailboxes/')) {
        const address = decodeURIComponent(url.pathname.slice('/mailboxes/'.length)).toLowerCase()
        const owner = standIn.findMailbox(address)
        if (!owner) return answer(404, { error: `${address} is not a mailbox (or alias) of the sandbox` })
        return answer(
          200,
          standIn.folderMessages(owner, 'inbox').map((message) => ({ subject: message.subject, from: message.from, internetMessageId: message.internetMessageId, receivedAt: message.receivedDateTime })),
        )
      }
      if (request.method !== 'POST' || !['/mail', '/reply', '/automatic-reply', '/faults', '/access-policy'].includes(url.pathname)) {
        return answer(404, { error: 'POST /mail, /reply, /automatic-reply, /faults, /access-policy; GET /mailboxes/{address}, /faults; DELETE /faults' })
      }
      const body = await readJson(request)
      if (url.pathname === '/faults') return answer(200, injectFaults(standIn, body))
      if (url.pathname === '/access-policy') {
        const owner = standIn.findMailbox(text(body, 'mailbox'))
        if (!owner) return answer(422, { error: 'mailbox: not a mailbox of the sandbox' })
        const apps = body.allowedApps
        if (apps !== null && (!Array.isArray(apps) || !apps.every((app) => typeof app === 'string'))) throw new Error('allowedApps must be a list of app (client) ids, or null for no policy')
        owner.allowedApps = apps === null ? undefined : new Set(apps as string[])
        return answer(200, { mailbox: owner.address, allowedApps: apps })
      }
      if (url.pathname === '/automatic-reply') {
        const owner = standIn.findMailbox(text(body, 'mailbox'))
        if (!owner) return answer(422, { error: 'mailbox: not a mailbox of the sandbox' })
        owner.automaticReply = body.message === null ? undefined : { message: text(body, 'message', 'I am out of the office.'), repliedTo: new Set() }
        return answer(200, { mailbox: owner.address, automaticReply: owner.automaticReply?.message ?? null })
      }
      if (url.pathname === '/mail') {
        const to = address(body, 'to')
        const owner = standIn.findMailbox(to)
        if (!owner) return answer(422, { error: `to: ${to} is not a mailbox (or alias) of the sandbox (${[...standIn.mailboxes.keys()].join(', ')})` })
        const stored = await standIn.deliver(owner, {
          from: address(body, 'from', 'customer@fabrikam.example'),
          to: [to],
          subject: text(body, 'subject'),
          body: text(body, 'text', 'Hello.'),
          internetMessageId: `<${randomBytes(12).toString('hex')}@fabrikam.example>`,
        })
        return answer(201, { delivered: owner.address, internetMessageId: stored.internetMessageId })
      }
      const replier = standIn.findMailbox(text(body, 'mailbox'))
      if (!replier) return answer(422, { error: 'mailbox: not a mailbox of the sandbox' })
      const mailbox = replier.address
      const original = standIn.folderMessages(replier, 'inbox').at(-1)
      if (!original?.from) return answer(409, { error: `${mailbox} has no message to answer yet` })
      // Mail to an alias lands in the mailbox that owns it.
      const sender = original.from.toLowerCase()
      const recipient = standIn.findMailbox(sender)?.address
      if (!recipient) return answer(422, { error: `the newest message came from ${sender}, which is not a mailbox (or alias) of the sandbox` })
      const references = original.internetMessageHeaders.find((header) => header.name.toLowerCase() === 'references')?.value
      const stored = await standIn.deliver(recipient, {
        from: mailbox,
        to: [sender],
        subject: /^re:/i.test(original.subject) ? original.subject : `Re: ${original.subject}`,
        body: text(body, 'text', 'Thanks, that helped.'),
        internetMessageId: `<${randomBytes(12).toString('hex')}@${mailbox.split('@')[1]}>`,
        headers: [
          { name: 'In-Reply-To', value: original.internetMessageId },
          { name: 'References', value: [references, original.internetMessageId].filter(Boolean).join(' ') },
        ],
      })
      return answer(201, { delivered: recipient, inReplyTo: original.internetMessageId, internetMessageId: stored.internetMessageId })
    }
    // Whatever the request, an answer: a malformed one is 400 and never takes the sandbox down.
    handle().catch((error: unknown) => {
      if (!response.headersSent) answer(400, { error: error instanceof Error ? error.message : String(error) })
    })
  })
}
