import { createHash, randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { eq } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { schema } from '../src/database/index.ts'
import { TokenProvider } from '../src/graph/token-provider.ts'
import { createMailboxSync } from '../src/modules/mailbox-sync/index.ts'
import { bearer, buildTestApp, graphql, type TestApp } from './support/app.ts'
import { FakeMicrosoft, type FakeMailbox, type FakeTenant } from './support/fake-microsoft.ts'
import { mailSetup } from './support/mail.ts'

const fake = new FakeMicrosoft()
let t: TestApp
let tenant: FakeTenant
let integrationId: string
const settings = { pageSize: 5, intervalMs: 60_000, retryMs: 60_000, leaseMs: 30_000 }
const tokens = new TokenProvider({ timeoutMs: 2_000 })
/** Small enough that a test can send a message the sync must pass over. */
const MESSAGE_SIZE_LIMIT = 256 * 1024

beforeAll(async () => {
  fake.start()
  tenant = fake.addTenant()
  const entraApp = fake.registerApp(tenant, { secrets: [{ value: 'sync-secret', expiresAt: new Date(Date.now() + 86_400_000) }] })
  t = await buildTestApp({ connectorFailureThreshold: 2, tokenProvider: tokens, messageSizeLimit: MESSAGE_SIZE_LIMIT, sync: { autostart: false, settings } })
  integrationId = await mailSetup(t).integration(tenant.id, entraApp.clientId, 'sync-secret')
})
afterAll(async () => {
  await t.close()
  fake.stop()
})

async function admin(method: 'GET' | 'POST' | 'PATCH', url: string, payload?: unknown) {
  const response = await t.app.inject({ method, url, headers: bearer(t.adminKey), payload: payload as object })
  return { status: response.statusCode, body: response.json() }
}

/** A mailbox in the fake and an incoming connector on it, tested; enabled with `enable` (default {}). */
async function connectorFor(options: { folders?: string[]; moveTo?: string; afterProcessing?: string; enable?: Record<string, unknown> | false; before?: (mailbox: FakeMailbox) => Promise<void> } = {}) {
  const address = `sync-${randomUUID().slice(0, 8)}@contoso.example`
  const mailbox = fake.addMailbox(tenant, address)
  for (const folder of [...(options.folders ?? []), ...(options.moveTo ? [options.moveTo] : [])]) if (folder.includes('/')) fake.addFolder(mailbox, folder)
  const created = await admin('POST', '/v1/connectors', {
    integrationId,
    name: address,
    direction: 'incoming',
    primaryAddress: address,
    folderPaths: options.folders ?? ['Inbox'],
    ...(options.afterProcessing ? { afterProcessing: options.afterProcessing } : {}),
    fallbackRoute: { workItemType: 'ticket', processId: 'support' },
  })
  expect(created.status, JSON.stringify(created.body)).toBe(201)
  const connectorId = created.body.id as string
  expect((await admin('POST', `/v1/connectors/${connectorId}/test`)).body.ok).toBe(true)
  await options.before?.(mailbox)
  if (options.enable !== false) {
    const enabled = await admin('POST', `/v1/connectors/${connectorId}/enable`, options.enable ?? {})
    expect(enabled.status, JSON.stringify(enabled.body)).toBe(200)
  }
  return { connectorId, mailbox, address }
}

async function emailsOf(connectorId: string) {
  return t.app.database.db
    .select({ id: schema.inboundEmails.id, subject: schema.inboundEmails.subject, outcome: schema.inboundEmails.outcome, graphMessageId: schema.inboundEmails.graphMessageId, afterAction: schema.inboundEmails.afterAction })
    .from(schema.inboundEmails)
    .where(eq(schema.inboundEmails.connectorId, connectorId))
    .orderBy(schema.inboundEmails.id)
}

async function syncState(connectorId: string) {
  return (await admin('GET', `/v1/connectors/${connectorId}/sync`)).body as {
    enabled: boolean
    folders: { folderPath: string; lastError: { code: string } | null; hasDeltaLink: boolean; messagesTaken: number; messagesSkipped: number; lastSkipped: { graphMessageId: string; reason: string } | null; pending: boolean }[]
  }
}

/** Runs the sync until no folder is due now (a round that pages on stays due). */
async function syncUntilQuiet(runs = 10) {
  for (let run = 0; run < runs; run++) {
    if ((await t.app.mailboxSync.runOnce()) === 0) return
  }
}

const mail = (subject: string, extra: Record<string, unknown> = {}) => ({ subject, body: `Hello, ${subject}.`, from: 'Alice Customer <alice@fabrikam.example>', ...extra })

describe('mailbox sync', () => {
  it('new mail arrives, is routed, and the after-processing action is done; mail there before the enable is not imported', async () => {
    const { connectorId, mailbox, address } = await connectorFor({
      afterProcessing: 'markRead',
      before: async (box) => {
        await fake.deliver(box, { ...mail('already there'), to: [box.address] }, { receivedAt: new Date(Date.now() - 60_000) })
      },
    })
    const message = await fake.deliver(mailbox, { ...mail('printer jammed'), to: [address] })
    await syncUntilQuiet()
    const emails = await emailsOf(connectorId)
    expect(emails.map((email) => email.subject)).toEqual(['printer jammed'])
    expect(emails[0]).toMatchObject({ outcome: 'requested', graphMessageId: message.immutableId, afterAction: { action: 'markRead', state: 'done', attempts: 1 } })
    expect(fake.findMessage(message.immutableId)!.isRead).toBe(true)
    // Marking it read changed it, so Graph reports it again: it is not taken twice. Nor is the
    // old mail when someone reads it and Graph reports it as changed.
    const old = fake.folderMessages(mailbox, 'Inbox').find((stored) => stored.subject === 'already there')!
    fake.updateMessage(old, { isRead: true })
    await t.app.services.mailboxSync.syncNow(connectorId)
    await syncUntilQuiet()
    expect(await emailsOf(connectorId)).toHaveLength(1)
    const state = await syncState(connectorId)
    // Without PUBLIC_BASE_URL there is no subscription: the folder is polled.
    expect(state.folders).toMatchObject([{ folderPath: 'Inbox', hasDeltaLink: true, messagesTaken: 1, lastError: null, subscriptionExpiresAt: null }])
  })

  it('fetches the MIME when the JSON is not enough: attachments, delivery reports, S/MIME', async () => {
    const { connectorId, mailbox, address } = await connectorFor()
    const pdf = Buffer.from('%PDF-1.4 invoice 4711')
    await fake.deliver(mailbox, { ...mail('with a pdf'), to: [address], attachments: [{ name: 'invoice.pdf', contentType: 'application/pdf', content: pdf }] })
    const fixture = (name: string) => readFileSync(new URL(`./fixtures/inbound/${name}`, import.meta.url))
    const bounce = fixture('25-bounce-rfc3464-rfc822.eml')
    await fake.deliver(mailbox, { mime: bounce })
    await fake.deliver(mailbox, { mime: fixture('46-thunderbird-smime-signed.eml') })
    await fake.deliver(mailbox, { ...mail('plain json'), to: [address] })
    await syncUntilQuiet()
    const rows = await t.app.database.db
      .select({ subject: schema.inboundEmails.subject, format: schema.inboundEmails.sourceFormat, attachments: schema.inboundEmails.attachments, automated: schema.inboundEmails.automated, id: schema.inboundEmails.id })
      .from(schema.inboundEmails)
      .where(eq(schema.inboundEmails.connectorId, connectorId))
      .orderBy(schema.inboundEmails.id)
    expect(rows.map((row) => row.format)).toEqual(['mime', 'mime', 'mime', 'graph'])
    expect(rows[0]!.attachments).toMatchObject([{ name: 'invoice.pdf', size: pdf.length, sha256: createHash('sha256').update(pdf).digest('hex') }])
    expect(rows[1]!.automated).toMatchObject({ kind: 'bounce' })
    // The MIME as Graph gave it is what is kept.
    const raw = await t.app.inject({ method: 'GET', url: `/v1/inbound/${rows[1]!.id}/raw`, headers: bearer(t.adminKey) })
    expect(raw.rawPayload.equals(bounce)).toBe(true)
  })

  it('pages through many messages, taking each once', async () => {
    const { connectorId, mailbox, address } = await connectorFor()
    for (let n = 0; n < 23; n++) await fake.deliver(mailbox, { ...mail(`page mail ${n}`), to: [address] })
    await syncUntilQuiet()
    const emails = await emailsOf(connectorId)
    expect(emails).toHaveLength(23)
    expect(new Set(emails.map((email) => email.subject)).size).toBe(23)
    expect(emails.every((email) => email.outcome === 'requested')).toBe(true)
  })

  it('imports existing mail received since a date when the enable asks for it', async () => {
    const { connectorId } = await connectorFor({
      enable: { importExisting: true, importSince: new Date(Date.now() - 3_600_000).toISOString() },
      before: async (box) => {
        await fake.deliver(box, { ...mail('last week'), to: [box.address] }, { receivedAt: new Date(Date.now() - 7 * 86_400_000) })
        await fake.deliver(box, { ...mail('this morning'), to: [box.address] }, { receivedAt: new Date(Date.now() - 600_000) })
      },
    })
    await syncUntilQuiet()
    expect((await emailsOf(connectorId)).map((email) => email.subject)).toEqual(['this morning'])
  })

  it('a delta link Graph forgot (410) reads the folder again without doubling anything', async () => {
    const { connectorId, mailbox, address } = await connectorFor()
    for (let n = 0; n < 7; n++) await fake.deliver(mailbox, { ...mail(`before expiry ${n}`), to: [address] })
    await syncUntilQuiet()
    expect(await emailsOf(connectorId)).toHaveLength(7)
    fake.expireDeltaTokens(mailbox)
    await fake.deliver(mailbox, { ...mail('after expiry'), to: [address] })
    await t.app.services.mailboxSync.syncNow(connectorId)
    await syncUntilQuiet()
    const emails = await emailsOf(connectorId)
    expect(emails).toHaveLength(8)
    expect(emails.filter((email) => email.outcome === 'duplicate')).toHaveLength(0)
    expect((await syncState(connectorId)).folders[0]).toMatchObject({ hasDeltaLink: true, lastError: null })
  })

  it('moves processed mail to another folder, and does not take it in again from there', async () => {
    const { connectorId, mailbox, address } = await connectorFor({ moveTo: 'Inbox/Done', afterProcessing: 'move:Inbox/Done' })
    const message = await fake.deliver(mailbox, { ...mail('move me'), to: [address] })
    // Mail filed in the move target by people or rules is not read: only folderPaths are.
    await fake.deliver(mailbox, { ...mail('filed by a rule'), to: [address] }, { folder: 'Inbox/Done' })
    await syncUntilQuiet()
    await t.app.services.mailboxSync.syncNow(connectorId)
    await syncUntilQuiet()
    expect(fake.folderMessages(mailbox, 'Inbox/Done').map((moved) => moved.immutableId)).toContain(message.immutableId)
    expect(fake.folderMessages(mailbox, 'Inbox')).toHaveLength(0)
    const emails = await emailsOf(connectorId)
    expect(emails).toHaveLength(1)
    expect(emails[0]!.afterAction).toMatchObject({ action: 'move:Inbox/Done', state: 'done' })
  })

  it('a copy of a message in a second synced folder is a duplicate with its own row, and its action is done too', async () => {
    const { connectorId, mailbox } = await connectorFor({ folders: ['Inbox', 'Inbox/Copies'], afterProcessing: 'markRead' })
    const raw = `From: Alice <alice@fabrikam.example>\r\nTo: ${mailbox.address}\r\nSubject: copied by a rule\r\nMessage-ID: <copy-${randomUUID()}@fabrikam.example>\r\nDate: ${new Date().toUTCString()}\r\n\r\nSame bytes twice.\r\n`
    const first = await fake.deliver(mailbox, { mime: raw })
    const copy = await fake.deliver(mailbox, { mime: raw }, { folder: 'Inbox/Copies' })
    expect(copy.immutableId).not.toBe(first.immutableId)
    await syncUntilQuiet()
    const emails = await emailsOf(connectorId)
    expect(emails.map((email) => email.graphMessageId).sort()).toEqual([first.immutableId, copy.immutableId].sort())
    expect(emails.map((email) => email.outcome).sort()).toEqual(['duplicate', 'requested'])
    expect(emails.map((email) => email.afterAction?.state)).toEqual(['done', 'done'])
    expect([fake.findMessage(first.immutableId)!.isRead, fake.findMessage(copy.immutableId)!.isRead]).toEqual([true, true])
    // Known to the sync now: reading the folders again takes neither in again.
    fake.updateMessage(fake.findMessage(copy.immutableId)!, { isRead: false })
    await t.app.services.mailboxSync.syncNow(connectorId)
    await syncUntilQuiet()
    expect(await emailsOf(connectorId)).toHaveLength(2)
  })

  it('two and three instances syncing at once never take a message twice', async () => {
    const { connectorId, mailbox, address } = await connectorFor({ folders: ['Inbox', 'Inbox/Second'] })
    for (let n = 0; n < 12; n++) await fake.deliver(mailbox, { ...mail(`race ${n}`), to: [address] }, { folder: n % 2 === 0 ? 'inbox' : 'Inbox/Second' })
    const others = [createMailboxSync(t.app, { owner: 'second', settings }), createMailboxSync(t.app, { owner: 'third', settings })]
    for (let run = 0; run < 5; run++) await Promise.all([t.app.mailboxSync.runOnce(), ...others.map((other) => other.runOnce())])
    const emails = await emailsOf(connectorId)
    expect(emails).toHaveLength(12)
    expect(new Set(emails.map((email) => email.graphMessageId)).size).toBe(12)
  })

  for (const step of ['page-fetched', 'message-taken', 'page-saved', 'action-performed', 'action-done'] as const) {
    it(`a sync frozen at ${step} is taken over when its lease runs out; every message ends taken once, and the frozen one changes nothing when it wakes`, async () => {
      const { connectorId, mailbox, address } = await connectorFor({ afterProcessing: 'markRead' })
      for (let n = 0; n < 7; n++) await fake.deliver(mailbox, { ...mail(`frozen at ${step} ${n}`), to: [address] })
      let thaw!: () => void
      const thawed = new Promise<void>((resolve) => (thaw = resolve))
      let frozen = false
      const frozenSync = createMailboxSync(t.app, {
        owner: `frozen-${step}`,
        settings: { ...settings, leaseMs: 300 },
        // A frozen process renews nothing: its renewals (timers here) land in the past.
        clock: () => (frozen ? new Date(Date.now() - 60_000) : new Date()),
        onStep: async (at) => {
          if (at === step && !frozen) {
            frozen = true
            await thawed
          }
        },
      })
      const stuck = frozenSync.runOnce()
      while (!frozen) await new Promise((resolve) => setTimeout(resolve, 10))
      await new Promise((resolve) => setTimeout(resolve, 400))
      const other = createMailboxSync(t.app, { owner: `rescuer-${step}`, settings })
      for (let run = 0; run < 5; run++) await other.runOnce()
      // Taken over: everything is in before the frozen one wakes.
      expect(await emailsOf(connectorId)).toHaveLength(7)
      thaw()
      await stuck
      await other.runOnce()
      const emails = await emailsOf(connectorId)
      expect(emails).toHaveLength(7)
      expect(new Set(emails.map((email) => email.graphMessageId)).size).toBe(7)
      expect(emails.every((email) => email.afterAction?.state === 'done')).toBe(true)
      expect((await syncState(connectorId)).folders[0]).toMatchObject({ hasDeltaLink: true, roundInProgress: false })
    })
  }

  it('a throttled mailbox waits for Retry-After and then goes on', async () => {
    const { connectorId, mailbox, address } = await connectorFor()
    await fake.deliver(mailbox, { ...mail('throttled'), to: [address] })
    fake.failGraphRequests({ path: new RegExp(`${address.split('@')[0]}.*/messages/delta`) }, { kind: 'status', status: 429, code: 'ApplicationThrottled', message: 'Application is over its MailboxConcurrency limit.', retryAfter: 1 })
    await syncUntilQuiet()
    const [folder] = (await syncState(connectorId)).folders
    expect(folder).toMatchObject({ lastError: { code: 'THROTTLED' }, pending: false })
    expect(await emailsOf(connectorId)).toHaveLength(0)
    // Asking for a sync now does not break Graph's Retry-After.
    expect((await admin('POST', `/v1/connectors/${connectorId}/sync`)).body.folders[0]).toMatchObject({ pending: false })
    await new Promise((resolve) => setTimeout(resolve, 1_100))
    await syncUntilQuiet()
    expect((await emailsOf(connectorId)).map((email) => email.subject)).toEqual(['throttled'])
  })

  it('a connector whose mailbox disappears is disabled automatically', async () => {
    const { connectorId, address } = await connectorFor()
    const gone = { kind: 'status' as const, status: 404, code: 'ErrorInvalidUser', message: `The requested user '${address}' is invalid.` }
    fake.failGraphRequests({ path: new RegExp(address.split('@')[0]!) }, gone, gone, gone, gone)
    for (let attempt = 0; attempt < 2; attempt++) {
      await t.app.services.mailboxSync.syncNow(connectorId)
      await syncUntilQuiet()
    }
    const connector = (await admin('GET', `/v1/connectors/${connectorId}`)).body
    expect(connector).toMatchObject({ enabled: false })
    expect(connector.disabledReason).toContain('MAILBOX_NOT_FOUND')
    expect((await admin('POST', `/v1/connectors/${connectorId}/sync`)).body).toMatchObject({ code: 'CONNECTOR_NOT_SYNCED', state: 'disabled' })
    // The state is still there to read, with why it stopped.
    expect(await syncState(connectorId)).toMatchObject({ enabled: false, folders: [{ folderPath: 'Inbox', lastError: { code: 'MAILBOX_NOT_FOUND' } }] })
  })

  it('a synced folder that was deleted counts toward the automatic disable, naming the folder', async () => {
    const { connectorId, address } = await connectorFor({ folders: ['Inbox/Orders'] })
    await syncUntilQuiet()
    const gone = { kind: 'status' as const, status: 404, code: 'ErrorItemNotFound', message: 'The specified object was not found in the store.' }
    fake.failGraphRequests({ path: new RegExp(`${address.split('@')[0]}.*/messages/delta`) }, gone, gone)
    for (let attempt = 0; attempt < 2; attempt++) {
      await t.app.services.mailboxSync.syncNow(connectorId)
      await syncUntilQuiet()
    }
    const connector = (await admin('GET', `/v1/connectors/${connectorId}`)).body
    expect(connector.enabled).toBe(false)
    expect(connector.disabledReason).toContain('FOLDER_NOT_FOUND')
    expect(connector.disabledReason).toContain('Inbox/Orders')
  })

  it('a gone folder disables its connector even while a sibling folder reads fine; a failure between successes does not', async () => {
    const { connectorId, address } = await connectorFor({ folders: ['Inbox', 'Inbox/Archive'] })
    await syncUntilQuiet()
    const local = address.split('@')[0]!
    const denied = { kind: 'status' as const, status: 401, code: 'InvalidAuthenticationToken', message: 'Access token validation failure.' }
    // One failure, then a success (which resets), then one failure: never two in a row.
    for (const fault of [denied, undefined, denied]) {
      if (fault) fake.failGraphRequests({ path: new RegExp(`${local}.*/messages/delta`) }, fault)
      await t.app.services.mailboxSync.syncNow(connectorId)
      await syncUntilQuiet()
    }
    expect((await admin('GET', `/v1/connectors/${connectorId}`)).body).toMatchObject({ enabled: true })
    // A clean round resets what the last failure left.
    await t.app.services.mailboxSync.syncNow(connectorId)
    await syncUntilQuiet()
    // Inbox/Archive deleted; Inbox still reads fine in every round.
    const archive = fake.folder(address, 'Inbox/Archive')!
    const gone = { kind: 'status' as const, status: 404, code: 'ErrorItemNotFound', message: 'The specified object was not found in the store.' }
    const archiveId = [archive.id, encodeURIComponent(archive.id)].map((id) => id.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')
    fake.failGraphRequests({ path: new RegExp(`${local}.*(${archiveId}).*/messages/delta`) }, gone, gone)
    for (let round = 0; round < 2; round++) {
      expect((await admin('GET', `/v1/connectors/${connectorId}`)).body).toMatchObject({ enabled: true })
      await t.app.services.mailboxSync.syncNow(connectorId)
      await syncUntilQuiet()
    }
    const connector = (await admin('GET', `/v1/connectors/${connectorId}`)).body
    expect(connector.enabled).toBe(false)
    expect(connector.disabledReason).toContain('Inbox/Archive')
    expect((await syncState(connectorId)).folders.map((folder) => [folder.folderPath, folder.lastError?.code ?? null, folder.pending])).toEqual([
      ['Inbox', null, false],
      ['Inbox/Archive', 'FOLDER_NOT_FOUND', false],
    ])
  })

  it('a folder woken while it is being synced is synced again at once, with the loop running; after a Retry-After, a wake during the turn counts', async () => {
    const { connectorId, mailbox, address } = await connectorFor()
    await syncUntilQuiet()
    const local = address.split('@')[0]!
    t.app.mailboxSync.start()
    try {
      // The turn's delta request takes 600 ms; mail arrives and a sync is asked for meanwhile.
      fake.failGraphRequests({ path: new RegExp(`${local}.*/messages/delta`) }, { kind: 'delay', ms: 600 })
      await t.app.services.mailboxSync.syncNow(connectorId)
      await new Promise((resolve) => setTimeout(resolve, 200))
      await fake.deliver(mailbox, { ...mail('during the turn'), to: [address] })
      await t.app.services.mailboxSync.syncNow(connectorId)
      const started = Date.now()
      while ((await emailsOf(connectorId)).length === 0 && Date.now() - started < 10_000) await new Promise((resolve) => setTimeout(resolve, 50))
      // Not at the next poll (60 s): within a few seconds.
      expect((await emailsOf(connectorId)).map((email) => email.subject)).toEqual(['during the turn'])
    } finally {
      await t.app.mailboxSync.stop()
    }
    // A folder whose Retry-After is over and whose turn is running (held) is woken; one still waiting is not.
    const folders = t.app.database.db.update(schema.mailboxFolderSyncs)
    const throttled = { code: 'THROTTLED', message: 'Retry-After', at: new Date().toISOString() }
    await folders.set({ lastError: throttled, dueAt: new Date(Date.now() + 60_000), leaseOwner: 'elsewhere/sync', leaseExpiresAt: new Date(Date.now() + 60_000) }).where(eq(schema.mailboxFolderSyncs.connectorId, connectorId))
    expect((await admin('POST', `/v1/connectors/${connectorId}/sync`)).body.folders[0].pending).toBe(true)
    await folders.set({ dueAt: new Date(Date.now() + 60_000), leaseOwner: null, leaseExpiresAt: null }).where(eq(schema.mailboxFolderSyncs.connectorId, connectorId))
    expect((await admin('POST', `/v1/connectors/${connectorId}/sync`)).body.folders[0].pending).toBe(false)
  })

  it('Entra being down does not count toward the automatic disable, however many folders fail', async () => {
    const { connectorId, mailbox, address } = await connectorFor({ folders: ['Inbox', 'Inbox/Second'] })
    await syncUntilQuiet()
    tokens.forget(integrationId)
    fake.failNextTokenRequests(...Array.from({ length: 12 }, () => ({ kind: 'status' as const, status: 503 })))
    for (let attempt = 0; attempt < 3; attempt++) {
      await t.app.services.mailboxSync.syncNow(connectorId)
      await syncUntilQuiet()
    }
    const state = await syncState(connectorId)
    expect(state.enabled).toBe(true)
    expect(state.folders.map((folder) => folder.lastError?.code)).toEqual(['AUTHENTICATION_FAILED', 'AUTHENTICATION_FAILED'])
    expect((await admin('GET', `/v1/connectors/${connectorId}`)).body).toMatchObject({ enabled: true })
    // Entra back (and MSAL's own 60 s hold-off after a 5xx, which a new client does not have): the mail is read.
    fake.clearFaults()
    tokens.forget(integrationId)
    await fake.deliver(mailbox, { ...mail('after the outage'), to: [address] })
    await t.app.services.mailboxSync.syncNow(connectorId)
    await syncUntilQuiet()
    expect((await emailsOf(connectorId)).map((email) => email.subject)).toEqual(['after the outage'])
  })

  it('HTML showing inline images is read as MIME (Graph leaves inline parts out of hasAttachments and its JSON)', async () => {
    const { connectorId, mailbox, address } = await connectorFor()
    const png = Buffer.from('89504e470d0a1a0a0000000d4948445200000001000000010806000000', 'hex')
    const delivered = await fake.deliver(mailbox, {
      subject: 'inline logo',
      to: [address],
      from: 'Alice Customer <alice@fabrikam.example>',
      body: { contentType: 'html', content: '<p>Our logo: <img src="CID:logo@fabrikam.example"></p>' },
      attachments: [{ name: 'logo.png', contentType: 'image/png', content: png, isInline: true, contentId: 'logo@fabrikam.example' }],
    })
    expect(fake.findMessage(delivered.immutableId)!.attachments.every((attachment) => attachment.isInline)).toBe(true)
    await syncUntilQuiet()
    const [email] = await t.app.database.db
      .select({ sourceFormat: schema.inboundEmails.sourceFormat, attachments: schema.inboundEmails.attachments })
      .from(schema.inboundEmails)
      .where(eq(schema.inboundEmails.connectorId, connectorId))
    expect(email!.sourceFormat).toBe('mime')
    expect(email!.attachments).toMatchObject([{ name: 'logo.png', contentType: 'image/png', size: png.length, contentId: 'logo@fabrikam.example', inline: true }])
  })

  it('a message too large to take in is passed over, counted on its folder, and the next one is taken', async () => {
    const { connectorId, mailbox, address } = await connectorFor()
    const big = await fake.deliver(mailbox, {
      ...mail('too large'),
      to: [address],
      attachments: [{ name: 'scan.pdf', contentType: 'application/pdf', content: Buffer.alloc(MESSAGE_SIZE_LIMIT + 1024, 7) }],
    })
    await fake.deliver(mailbox, { ...mail('fits'), to: [address] })
    await syncUntilQuiet()
    expect((await emailsOf(connectorId)).map((email) => email.subject)).toEqual(['fits'])
    const [folder] = (await syncState(connectorId)).folders
    expect(folder).toMatchObject({ messagesTaken: 1, messagesSkipped: 1, lastSkipped: { graphMessageId: big.immutableId }, hasDeltaLink: true })
    expect(folder!.lastSkipped!.reason).toMatch(/large|limit/i)
  })

  it('manual sync wakes the folders and answers with their state, in REST and GraphQL', async () => {
    const { connectorId } = await connectorFor()
    await syncUntilQuiet()
    const woken = await admin('POST', `/v1/connectors/${connectorId}/sync`)
    expect(woken.status).toBe(202)
    expect(woken.body.folders).toMatchObject([{ folderPath: 'Inbox', pending: true }])
    const { body } = await graphql(t.app, t.adminKey, `query ($id: ID!) { connectorSync(id: $id) { connectorId folders { folderPath pending hasDeltaLink } } }`, { id: connectorId })
    expect(body.data.connectorSync).toEqual({ connectorId, folders: [{ folderPath: 'Inbox', pending: true, hasDeltaLink: true }] })
    const reader = await t.keyWith('mail:read')
    expect((await t.app.inject({ method: 'POST', url: `/v1/connectors/${connectorId}/sync`, headers: bearer(reader) })).statusCode).toBe(403)
    expect((await admin('GET', `/v1/connectors/${randomUUID()}/sync`)).status).toBe(404)
  })

  it('an enable with importSince but not importExisting, or on an outgoing connector, is refused naming the field', async () => {
    const { connectorId } = await connectorFor({ enable: false })
    const refused = await admin('POST', `/v1/connectors/${connectorId}/enable`, { importSince: new Date().toISOString() })
    expect(refused.status).toBe(400)
    expect(JSON.stringify(refused.body)).toContain('importSince')
    expect((await admin('GET', `/v1/connectors/${connectorId}`)).body.enabled).toBe(false)
  })
})
