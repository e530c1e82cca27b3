import { simpleParser } from 'mailparser'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TokenProvider, type AppRegistration } from '../src/graph/token-provider.ts'
import { FakeMicrosoft, type FakeMailbox } from './support/fake-microsoft.ts'
import { rawMail } from './support/raw-mail.ts'

/**
 * The fake Graph's receiving side, exercised over plain HTTP the way a mailbox-sync consumer
 * talks to Graph: per-folder delta with next/delta links, ids, $value, mark read, move, delete.
 */

const fake = new FakeMicrosoft()
const tenant = fake.addTenant()
const app = fake.registerApp(tenant, { secrets: [{ value: 's', expiresAt: new Date(Date.now() + 86_400_000) }] })
const registration: AppRegistration = {
  integrationId: 'receiving',
  configHash: 'h',
  tenant: tenant.id,
  clientId: app.clientId,
  cloud: 'global',
  credential: { kind: 'clientSecret', clientSecret: 's' },
}
const tokens = new TokenProvider({ timeoutMs: 2_000 })
let token = ''
let mailboxes = 0

beforeAll(async () => {
  fake.start()
  token = (await tokens.acquire(registration)).accessToken
})
afterAll(() => fake.stop())

const GRAPH = 'https://graph.microsoft.com/v1.0'
const IMMUTABLE = 'IdType="ImmutableId"'

/** A fresh mailbox per test, so rounds and counts do not mix. */
function newMailbox(): FakeMailbox {
  mailboxes += 1
  return fake.addMailbox(tenant, `shared${mailboxes}@contoso.com`)
}

interface Answer {
  status: number
  headers: Headers
  text: string
  json: any
}

async function graph(method: string, pathOrUrl: string, options: { prefer?: string; body?: unknown } = {}): Promise<Answer> {
  const response = await fetch(pathOrUrl.startsWith('https://') ? pathOrUrl : `${GRAPH}${pathOrUrl}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(options.prefer ? { prefer: options.prefer } : {}),
      ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
  })
  const text = await response.text()
  const json = (response.headers.get('content-type') ?? '').startsWith('application/json') && text ? JSON.parse(text) : undefined
  return { status: response.status, headers: response.headers, text, json }
}

const deltaUrl = (mailbox: FakeMailbox, folder: string, query = '') => `${GRAPH}/users/${mailbox.address}/mailFolders/${folder}/messages/delta${query}`

/** Follows nextLinks to the deltaLink, as a consumer does; every page must be 200. */
async function deltaRound(start: string, prefer?: string) {
  const pages: Answer[] = []
  let url: string | undefined = start
  while (url) {
    const page = await graph('GET', url, { prefer })
    expect(page.status, page.text).toBe(200)
    pages.push(page)
    url = page.json['@odata.nextLink']
    if (!url) expect(page.json['@odata.deltaLink']).toMatch(/\$deltatoken=/)
  }
  const entries: any[] = pages.flatMap((page) => page.json.value)
  return {
    pages,
    items: entries.filter((entry) => !('@removed' in entry)),
    removed: entries.filter((entry) => '@removed' in entry),
    deltaLink: pages.at(-1)!.json['@odata.deltaLink'] as string,
  }
}

describe('fake Graph: receiving mail', () => {
  it('pages a first delta round by odata.maxpagesize, keeping $select in the links it hands out', async () => {
    const mailbox = newMailbox()
    for (let i = 1; i <= 25; i++) await fake.deliver(mailbox, { subject: `message ${i}`, body: `body ${i}` })

    const round = await deltaRound(deltaUrl(mailbox, 'inbox', '?$select=subject,isRead'), `${IMMUTABLE}, odata.maxpagesize=10`)
    expect(round.pages.map((page) => page.json.value.length)).toEqual([10, 10, 5])
    for (const page of round.pages) expect(page.headers.get('preference-applied')).toBe('odata.maxpagesize=10')
    const [first, second] = round.pages
    // Opaque links on the same host; the later requests carry no $select, yet stay selected.
    expect(new URL(first!.json['@odata.nextLink']).host).toBe('graph.microsoft.com')
    expect(first!.json['@odata.nextLink']).toMatch(/\/messages\/delta\?\$skiptoken=[\w-]+$/)
    expect(second!.json['@odata.nextLink']).not.toContain('$select')
    for (const item of round.items) {
      expect(Object.keys(item).filter((key) => !key.startsWith('@odata.')).sort()).toEqual(['id', 'isRead', 'subject'])
    }
    expect(new Set(round.items.map((item) => item.id)).size).toBe(25)
    expect(round.items.map((item) => item.subject).sort()).toEqual(fake.folderMessages(mailbox, 'inbox').map((m) => m.subject).sort())
    expect(round.items.every((item) => item.isRead === false)).toBe(true)

    // Without the Prefer header Graph's page size is 10 and no preference is applied.
    const plain = await graph('GET', deltaUrl(mailbox, 'inbox'))
    expect(plain.json.value).toHaveLength(10)
    expect(plain.headers.get('preference-applied')).toBeNull()
    // Every property without $select, but internetMessageHeaders only when selected.
    expect(plain.json.value[0]).toMatchObject({ subject: expect.any(String), receivedDateTime: expect.any(String), parentFolderId: mailbox.folders[0]!.id, hasAttachments: false })
    expect(plain.json.value[0]).not.toHaveProperty('internetMessageHeaders')
    const withHeaders = await graph('GET', deltaUrl(mailbox, 'inbox', '?$select=internetMessageHeaders'), { prefer: 'odata.maxpagesize=1' })
    expect(withHeaders.json.value[0].internetMessageHeaders).toEqual(expect.arrayContaining([{ name: 'Subject', value: expect.stringMatching(/^message \d+$/) }]))
    expect((await graph('GET', deltaUrl(mailbox, 'inbox', '?$select=subject,nonsense'))).json.error.code).toBe('RequestBroker--ParseUri')
  })

  it('a round from the deltaLink brings new mail and moves: @removed in the old folder, an item in the new', async () => {
    const mailbox = newMailbox()
    const sender = newMailbox()
    const processed = fake.addFolder(mailbox, 'Inbox/Processed')
    const [a, b] = [await fake.deliver(mailbox, { subject: 'a' }), await fake.deliver(mailbox, { subject: 'b' })]
    const inbox = await deltaRound(deltaUrl(mailbox, 'inbox'), IMMUTABLE)
    const target = await deltaRound(deltaUrl(mailbox, processed.id), IMMUTABLE)
    expect(inbox.items.map((item) => item.id).sort()).toEqual([a.immutableId, b.immutableId].sort())
    expect(target.items).toEqual([])

    // New mail: delivered by the test API, and sent by another hosted mailbox through Graph.
    const c = await fake.deliver(mailbox, { subject: 'c' }, { folder: 'Inbox' })
    const sent = await graph('POST', `/users/${sender.address}/sendMail`, {
      body: { message: { subject: 'from a colleague', body: { contentType: 'text', content: 'hi' }, toRecipients: [{ emailAddress: { address: mailbox.address } }] } },
    })
    expect(sent.status).toBe(202)
    const oldRestId = a.restId
    const moved = await graph('POST', `/users/${mailbox.address}/messages/${encodeURIComponent(a.immutableId)}/move`, { body: { destinationId: processed.id } })
    expect(moved.status).toBe(201)
    expect(moved.json).toMatchObject({ parentFolderId: processed.id, subject: 'a' })
    expect(moved.json.id).not.toBe(oldRestId) // a new REST id ...
    expect(fake.findMessage(moved.json.id)?.immutableId).toBe(a.immutableId) // ... for the same message

    const next = await deltaRound(inbox.deltaLink, IMMUTABLE)
    expect(next.items.map((item) => item.subject).sort()).toEqual(['c', 'from a colleague'])
    expect(next.items.find((item) => item.subject === 'c').id).toBe(c.immutableId)
    expect(next.removed).toEqual([{ '@odata.type': '#microsoft.graph.message', id: a.immutableId, '@removed': { reason: 'deleted' } }])
    const into = await deltaRound(target.deltaLink, IMMUTABLE)
    expect(into.items).toMatchObject([{ id: a.immutableId, subject: 'a', parentFolderId: processed.id }])
    expect(into.removed).toEqual([])
    expect(fake.folderMessages(mailbox, 'Inbox/Processed').map((m) => m.subject)).toEqual(['a'])
    expect(fake.folderMessages(mailbox, 'inbox').map((m) => m.folder)).toEqual(['inbox', 'inbox', 'inbox'])
    expect(fake.findMessage(a.immutableId)?.folder).toBe('Inbox/Processed')

    // Nothing changed since: an empty round that still ends in a deltaLink.
    const quiet = await deltaRound(next.deltaLink, IMMUTABLE)
    expect(quiet.pages).toHaveLength(1)
    expect(quiet.items.concat(quiet.removed)).toEqual([])
  })

  it('answers REST ids unless Prefer: IdType="ImmutableId"; a REST id dies with a move, the immutable id does not', async () => {
    const mailbox = newMailbox()
    const message = await fake.deliver(mailbox, { subject: 'ids' })
    const rest = await deltaRound(deltaUrl(mailbox, 'inbox'))
    const immutable = await deltaRound(deltaUrl(mailbox, 'inbox'), IMMUTABLE)
    expect(rest.items[0].id).toBe(message.restId)
    expect(immutable.items[0].id).toBe(message.immutableId)
    expect(message.restId).not.toBe(message.immutableId)

    const oldRestId = message.restId
    const moved = await graph('POST', `/users/${mailbox.address}/messages/${encodeURIComponent(oldRestId)}/move`, { body: { destinationId: 'archive' }, prefer: IMMUTABLE })
    expect(moved.json.id).toBe(message.immutableId)
    expect(message.restId).not.toBe(oldRestId)
    expect((await graph('GET', `/users/${mailbox.address}/messages/${encodeURIComponent(oldRestId)}`)).status).toBe(404)
    expect((await graph('GET', `/users/${mailbox.address}/messages/${encodeURIComponent(message.immutableId)}`)).json.parentFolderId).toBe(fake.folder(mailbox, 'archive')!.id)

    // Each side hears of the removal by the id it knows the message by.
    expect((await deltaRound(rest.deltaLink)).removed.map((entry) => entry.id)).toEqual([oldRestId])
    expect((await deltaRound(immutable.deltaLink, IMMUTABLE)).removed.map((entry) => entry.id)).toEqual([message.immutableId])
    const archive = await deltaRound(deltaUrl(mailbox, 'archive'))
    expect(archive.items.map((item) => item.id)).toEqual([message.restId])
  })

  it('answers 410 SyncStateNotFound for every earlier link after expireDeltaTokens; a new round starts afresh', async () => {
    const mailbox = newMailbox()
    for (let i = 0; i < 3; i++) await fake.deliver(mailbox, { subject: `m${i}` })
    const first = await graph('GET', deltaUrl(mailbox, 'inbox'), { prefer: 'odata.maxpagesize=2' })
    const nextLink = first.json['@odata.nextLink'] as string
    const round = await deltaRound(nextLink, 'odata.maxpagesize=2')
    fake.expireDeltaTokens(mailbox)
    for (const link of [nextLink, round.deltaLink]) {
      const gone = await graph('GET', link)
      expect(gone.status).toBe(410)
      expect(gone.json.error).toMatchObject({ code: 'SyncStateNotFound', message: expect.any(String) })
    }
    const again = await deltaRound(deltaUrl(mailbox, 'inbox'))
    expect(again.items).toHaveLength(3)
    expect((await graph('GET', `${deltaUrl(mailbox, 'inbox')}?$deltatoken=never-handed-out`)).status).toBe(410)
  })

  it('replays the previous page when told to, so a consumer must be idempotent', async () => {
    const mailbox = newMailbox()
    await fake.deliver(mailbox, { subject: 'old' })
    const round = await deltaRound(deltaUrl(mailbox, 'inbox'), IMMUTABLE)
    await fake.deliver(mailbox, { subject: 'new' })
    fake.replayNextDeltaPage(mailbox)
    const next = await deltaRound(round.deltaLink, IMMUTABLE)
    expect(next.items.map((item) => item.subject)).toEqual(['old', 'new'])
    const after = await deltaRound(next.deltaLink, IMMUTABLE)
    expect(after.items).toEqual([])
  })

  it('$value answers the MIME: verbatim for mail delivered as MIME, written from the fields otherwise', async () => {
    const mailbox = newMailbox()
    const raw = [
      'Received: from mx.fabrikam.example by mx.contoso.example; Mon, 30 Nov 2026 09:00:00 +0000',
      'From: "Bob Example" <bob@fabrikam.example>',
      `To: ${mailbox.address}`,
      'Cc: Carol <carol@fabrikam.example>',
      'Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=',
      'Date: Mon, 30 Nov 2026 09:00:00 +0000',
      'Message-ID: <mime-1@fabrikam.example>',
      'Importance: high',
      'X-Custom: yes',
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="b1"',
      '',
      '--b1',
      'Content-Type: text/plain; charset=utf-8',
      '',
      'Hello from the MIME side',
      '--b1',
      'Content-Type: application/pdf; name="invoice.pdf"',
      'Content-Disposition: attachment; filename="invoice.pdf"',
      'Content-Transfer-Encoding: base64',
      '',
      Buffer.from('%PDF-1.4 fake').toString('base64'),
      '--b1--',
      '',
    ].join('\r\n')
    const fromMime = await fake.deliver(mailbox, { mime: Buffer.from(raw) }, { receivedAt: new Date('2026-11-30T09:00:05Z') })
    const json = (await graph('GET', `/users/${mailbox.address}/messages/${encodeURIComponent(fromMime.immutableId)}?$select=subject,from,ccRecipients,internetMessageId,importance,hasAttachments,receivedDateTime,sentDateTime,body,internetMessageHeaders`)).json
    expect(json).toMatchObject({
      subject: 'Grüße aus Köln',
      from: { emailAddress: { name: 'Bob Example', address: 'bob@fabrikam.example' } },
      ccRecipients: [{ emailAddress: { name: 'Carol', address: 'carol@fabrikam.example' } }],
      internetMessageId: '<mime-1@fabrikam.example>',
      importance: 'high',
      hasAttachments: true,
      receivedDateTime: '2026-11-30T09:00:05.000Z',
      sentDateTime: '2026-11-30T09:00:00.000Z',
      body: { contentType: 'text', content: expect.stringContaining('Hello from the MIME side') },
    })
    expect(json.internetMessageHeaders).toEqual(expect.arrayContaining([{ name: 'X-Custom', value: 'yes' }, { name: 'Received', value: expect.stringContaining('mx.fabrikam.example') }]))
    const verbatim = await graph('GET', `/users/${mailbox.address}/messages/${encodeURIComponent(fromMime.restId)}/$value`)
    expect(verbatim.status).toBe(200)
    expect(verbatim.headers.get('content-type')).toBe('text/plain')
    expect(verbatim.text).toBe(raw)

    const structured = await fake.deliver(mailbox, {
      subject: 'Invoice 42 – überfällig',
      from: 'Dana Müller <dana@fabrikam.example>',
      cc: ['erin@fabrikam.example'],
      body: { contentType: 'html', content: '<p>Please see <img src="cid:logo@fabrikam"> the attachment.</p>' },
      importance: 'low',
      headers: [{ name: 'X-Ticket', value: '42' }],
      sentAt: new Date('2026-12-01T08:00:00Z'),
      attachments: [
        { name: 'invoice.pdf', contentType: 'application/pdf', content: Buffer.from('%PDF-1.4 invoice 42') },
        { name: 'logo.png', contentType: 'image/png', content: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1, 2, 255]), isInline: true, contentId: 'logo@fabrikam' },
      ],
    })
    const written = await graph('GET', `/users/${mailbox.address}/mailFolders/inbox/messages/${encodeURIComponent(structured.immutableId)}/$value`)
    expect(written.headers.get('content-type')).toBe('text/plain')
    const parsed = await simpleParser(Buffer.from(written.text), { keepCidLinks: true })
    expect(parsed.subject).toBe('Invoice 42 – überfällig')
    expect(parsed.from?.value).toEqual([{ address: 'dana@fabrikam.example', name: 'Dana Müller' }])
    expect(parsed.to).toMatchObject({ value: [{ address: mailbox.address }] })
    expect(parsed.cc).toMatchObject({ value: [{ address: 'erin@fabrikam.example' }] })
    expect(parsed.messageId).toBe(structured.internetMessageId)
    expect(parsed.date?.toISOString()).toBe('2026-12-01T08:00:00.000Z')
    expect(parsed.headers.get('x-ticket')).toBe('42')
    expect(parsed.headers.get('priority')).toBe('low')
    expect(parsed.html).toContain('<img src="cid:logo@fabrikam">')
    expect(parsed.headers.get('content-type')).toMatchObject({ value: 'multipart/mixed' })
    expect(parsed.attachments.map((a) => [a.filename, a.contentType, a.content.toString('hex'), a.related === true])).toEqual([
      ['logo.png', 'image/png', '89504e47000102ff', true],
      ['invoice.pdf', 'application/pdf', Buffer.from('%PDF-1.4 invoice 42').toString('hex'), false],
    ])
    // The same bytes every time, and for a plain text message without attachments a single part.
    expect((await graph('GET', `/users/${mailbox.address}/messages/${encodeURIComponent(structured.immutableId)}/$value`)).text).toBe(written.text)
    const plain = await fake.deliver(mailbox, { mime: rawMail({ subject: 'plain one', to: [mailbox.address] }) })
    expect((await simpleParser((await graph('GET', `/users/${mailbox.address}/messages/${encodeURIComponent(plain.immutableId)}/$value`)).text)).subject).toBe('plain one')
  })

  it('PATCH isRead marks a message read, and delta brings it again as an update', async () => {
    const mailbox = newMailbox()
    const message = await fake.deliver(mailbox, { subject: 'unread' })
    const round = await deltaRound(deltaUrl(mailbox, 'inbox', '?$select=isRead'), IMMUTABLE)
    expect(round.items).toMatchObject([{ id: message.immutableId, isRead: false }])
    const patched = await graph('PATCH', `/users/${mailbox.address}/messages/${encodeURIComponent(message.immutableId)}`, { body: { isRead: true }, prefer: IMMUTABLE })
    expect(patched.status).toBe(200)
    expect(patched.json).toMatchObject({ id: message.immutableId, isRead: true })
    expect(message.isRead).toBe(true)
    const next = await deltaRound(round.deltaLink, IMMUTABLE)
    expect(next.items).toEqual([expect.objectContaining({ id: message.immutableId, isRead: true })])
    expect(Object.keys(next.items[0]).filter((key) => !key.startsWith('@odata.'))).toEqual(['id', 'isRead'])

    // Through the folder as well; a wrong type is refused.
    const inboxId = fake.folder(mailbox, 'inbox')!.id
    expect((await graph('PATCH', `/users/${mailbox.address}/mailFolders/${inboxId}/messages/${encodeURIComponent(message.restId)}`, { body: { isRead: false } })).json.isRead).toBe(false)
    expect((await graph('PATCH', `/users/${mailbox.address}/messages/${encodeURIComponent(message.restId)}`, { body: { isRead: 'yes' } })).status).toBe(400)
  })

  it('DELETE removes the message (not to Deleted Items): @removed in the next round', async () => {
    const mailbox = newMailbox()
    const keep = await fake.deliver(mailbox, { subject: 'keep' })
    const gone = await fake.deliver(mailbox, { subject: 'gone' })
    const round = await deltaRound(deltaUrl(mailbox, 'inbox'), IMMUTABLE)
    const deleted = await graph('DELETE', `/users/${mailbox.address}/messages/${encodeURIComponent(gone.immutableId)}`)
    expect(deleted.status).toBe(204)
    expect(fake.folderMessages(mailbox, 'deleteditems')).toEqual([])
    expect(fake.folderMessages(mailbox, 'inbox').map((m) => m.subject)).toEqual(['keep'])
    const next = await deltaRound(round.deltaLink, IMMUTABLE)
    expect(next.removed.map((entry) => entry.id)).toEqual([gone.immutableId])
    expect(next.items).toEqual([])
    expect(keep.folder).toBe('inbox')
  })

  it('answers 404 ErrorItemNotFound for unknown message ids and folders', async () => {
    const mailbox = newMailbox()
    const unknown = encodeURIComponent('AAMkAGnonexistent=')
    const base = `/users/${mailbox.address}/messages/${unknown}`
    const answers = [
      await graph('GET', base),
      await graph('GET', `${base}/$value`),
      await graph('PATCH', base, { body: { isRead: true } }),
      await graph('POST', `${base}/move`, { body: { destinationId: 'archive' } }),
      await graph('DELETE', base),
      await graph('GET', `/users/${mailbox.address}/mailFolders/AAMknofolder/messages/delta`),
    ]
    for (const answer of answers) expect([answer.status, answer.json.error.code]).toEqual([404, 'ErrorItemNotFound'])
    const message = await fake.deliver(mailbox, { subject: 'x' })
    const badDestination = await graph('POST', `/users/${mailbox.address}/messages/${encodeURIComponent(message.restId)}/move`, { body: { destinationId: 'AAMknofolder' } })
    expect(badDestination.status).toBe(404)
  })

  it('throttles delta requests like any other: 429 with Retry-After, the link still good afterwards; concurrency is tracked', async () => {
    const mailbox = newMailbox()
    for (let i = 0; i < 4; i++) await fake.deliver(mailbox, { subject: `t${i}` })
    const first = await graph('GET', deltaUrl(mailbox, 'inbox'), { prefer: 'odata.maxpagesize=2' })
    const nextLink = first.json['@odata.nextLink'] as string
    fake.failGraphRequests({ method: 'GET', path: /\/messages\/delta$/ }, { kind: 'status', status: 429, retryAfter: 3 })
    const throttled = await graph('GET', nextLink, { prefer: 'odata.maxpagesize=2' })
    expect(throttled.status).toBe(429)
    expect(throttled.headers.get('retry-after')).toBe('3')
    expect(throttled.json.error.code).toBe('ApplicationThrottled')
    const retried = await graph('GET', nextLink, { prefer: 'odata.maxpagesize=2' })
    expect(retried.status).toBe(200)
    expect(retried.json.value.map((item: { subject: string }) => item.subject)).toEqual(['t2', 't3'])

    const log = fake.graphRequests.filter((request) => request.path.includes(`/users/${mailbox.address}/`))
    expect(log.map((request) => [request.method, request.status, request.fault])).toEqual([
      ['GET', 200, undefined],
      ['GET', 429, 'status'],
      ['GET', 200, undefined],
    ])
    expect(log[1]).toMatchObject({ path: expect.stringMatching(/mailFolders\('AAMk\w+'\)\/messages\/delta$/), query: expect.stringMatching(/^\?\$skiptoken=/), prefer: 'odata.maxpagesize=2' })

    fake.latencyMs = 50
    try {
      await Promise.all([1, 2, 3].map(() => graph('GET', deltaUrl(mailbox, 'inbox'))))
    } finally {
      fake.latencyMs = 0
    }
    expect(fake.maxConcurrentPerMailbox.get(mailbox.address)).toBe(3)
  })
})

describe('request budget', () => {
  it('refuses an app over its requests per mailbox in 10 minutes with 429 and a Retry-After, other mailboxes unaffected', async () => {
    const busy = newMailbox()
    const quiet = newMailbox()
    fake.requestsPer10Minutes = 3
    try {
      for (let n = 0; n < 3; n++) expect((await graph('GET', `/users/${busy.address}/mailFolders/inbox`)).status).toBe(200)
      const refused = await graph('GET', `/users/${busy.address}/mailFolders/inbox`)
      expect(refused.status).toBe(429)
      expect(refused.json.error.code).toBe('ApplicationThrottled')
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(590)
      expect((await graph('GET', `/users/${quiet.address}/mailFolders/inbox`)).status).toBe(200)
    } finally {
      fake.requestsPer10Minutes = 10_000
    }
  })
})
