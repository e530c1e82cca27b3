import { createHash, randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import { sql } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { rowsOf } from '../src/database/index.ts'
import { STORAGE_CHUNK_BYTES } from '../src/modules/attachments/store.ts'
import { bearer, buildTestApp, type TestApp } from './support/app.ts'
import { FakeMicrosoft, type FakeTenant } from './support/fake-microsoft.ts'
import { mailSetup } from './support/mail.ts'

const MiB = 1024 * 1024
const SIZE_LIMIT = 8 * MiB
const BOUNDARY = 'mailgate-test-7f3a9c'

const fake = new FakeMicrosoft()
let t: TestApp
let tenant: FakeTenant
let sender: string
let reader: string
const sendOnlyFrom = 'notify@contoso.com'

beforeAll(async () => {
  fake.start()
  tenant = fake.addTenant()
  const app = fake.registerApp(tenant, { secrets: [{ value: 'mp-secret', expiresAt: new Date(Date.now() + 86_400_000) }] })
  const sendOnlyApp = fake.registerApp(tenant, { roles: ['Mail.Send'], secrets: [{ value: 'send-only', expiresAt: new Date(Date.now() + 86_400_000) }] })
  fake.addMailbox(tenant, 'support@contoso.com')
  fake.addMailbox(tenant, sendOnlyFrom)
  t = await buildTestApp({ messageSizeLimit: SIZE_LIMIT })
  sender = await t.keyWith('mail:send')
  reader = await t.keyWith('mail:read')
  const setup = mailSetup(t)
  await setup.outgoing(await setup.integration(tenant.id, app.clientId, 'mp-secret'), 'support@contoso.com')
  await setup.outgoing(await setup.integration(tenant.id, sendOnlyApp.clientId, 'send-only'), sendOnlyFrom)
})
afterAll(async () => {
  await t.close()
  fake.stop()
})

const message = (overrides: Record<string, unknown> = {}) => ({
  from: 'support@contoso.com',
  to: ['customer@example.com'],
  subject: 'Your files',
  body: { contentType: 'html', content: '<p>See attached</p>' },
  ...overrides,
})

/** Content made on demand, in pieces that never line up with storage chunks. */
interface GeneratedContent {
  size: number
  seed: number
}

interface Part {
  name: string
  filename?: string
  contentType?: string
  content: string | Buffer | GeneratedContent
  /** The whole Content-Disposition value, for hostile forms the fields above cannot express. */
  disposition?: string
}

const messagePart = (value: unknown): Part => ({ name: 'message', content: typeof value === 'string' ? value : JSON.stringify(value) })
const filePart = (filename: string, content: Buffer | GeneratedContent, contentType = 'application/octet-stream', name = 'attachment'): Part => ({
  name,
  filename,
  contentType,
  content,
})

function* generated({ size, seed }: GeneratedContent): Generator<Buffer> {
  const block = createHash('sha512').update(String(seed)).digest()
  const piece = Buffer.alloc(65_537)
  for (let i = 0; i < piece.length; i++) piece[i] = block[i % block.length]! ^ (i >> 6)
  for (let offset = 0, n = 0; offset < size; offset += piece.length, n++) {
    const slice = Buffer.from(piece.subarray(0, Math.min(piece.length, size - offset)))
    slice[0] = n & 0xff
    yield slice
  }
}

function sha256Of(content: Buffer | GeneratedContent): string {
  const hash = createHash('sha256')
  if (Buffer.isBuffer(content)) return hash.update(content).digest('hex')
  for (const piece of generated(content)) hash.update(piece)
  return hash.digest('hex')
}

/** A multipart body produced as it is read; `pulled` counts the bytes the server took so far. */
function multipart(parts: Part[]) {
  const progress = { pulled: 0 }
  async function* body(): AsyncGenerator<Buffer> {
    for (const part of parts) {
      const disposition = part.disposition ?? `form-data; name="${part.name}"${part.filename !== undefined ? `; filename="${part.filename}"` : ''}`
      const type = part.contentType ? `Content-Type: ${part.contentType}\r\n` : ''
      yield Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: ${disposition}\r\n${type}\r\n`)
      const pieces = typeof part.content === 'string' || Buffer.isBuffer(part.content) ? [Buffer.from(part.content)] : generated(part.content)
      for (const piece of pieces) {
        progress.pulled += piece.length
        yield piece
      }
      yield Buffer.from('\r\n')
    }
    yield Buffer.from(`--${BOUNDARY}--\r\n`)
  }
  return { stream: Readable.from(body(), { objectMode: false }), progress }
}

async function sendMultipart(parts: Part[], options: { key?: string; idempotencyKey?: string } = {}) {
  const { stream, progress } = multipart(parts)
  const response = await t.app.inject({
    method: 'POST',
    url: '/v1/messages',
    headers: {
      ...bearer(options.key ?? sender),
      'content-type': `multipart/form-data; boundary=${BOUNDARY}`,
      ...(options.idempotencyKey ? { 'idempotency-key': options.idempotencyKey } : {}),
    },
    payload: stream,
  })
  return Object.assign(response, { pulled: progress.pulled })
}

async function count(table: 'outbound_messages' | 'attachment_blobs'): Promise<number> {
  const [row] = rowsOf<{ n: number }>(await t.db.database.db.execute(sql`select count(*)::int as n from ${sql.identifier(table)}`))
  return row!.n
}

/** Staged blobs no message took: a refused or replayed upload must leave none. */
async function unreferencedBlobs(): Promise<number> {
  const [row] = rowsOf<{ n: number }>(
    await t.db.database.db.execute(
      sql`select count(*)::int as n from attachment_blobs b where not exists (select 1 from outbound_attachments a where a.blob_id = b.id)`,
    ),
  )
  return row!.n
}

async function storedAttachments(messageId: string) {
  const rows = rowsOf<{ position: number; name: string; content_type: string; is_inline: boolean; content_id: string | null; size: number; blob_id: string }>(
    await t.db.database.db.execute(sql`select * from outbound_attachments where message_id = ${messageId} order by position`),
  )
  const result = []
  for (const row of rows) {
    const chunks = rowsOf<{ data: Buffer | Uint8Array }>(
      await t.db.database.db.execute(sql`select data from attachment_chunks where blob_id = ${row.blob_id} order by seq`),
    )
    const hash = createHash('sha256')
    for (const chunk of chunks) hash.update(chunk.data)
    result.push({ ...row, sha256: hash.digest('hex'), chunkSizes: chunks.map((chunk) => chunk.data.length) })
  }
  return result
}

/** Nothing of a refused request may remain: no message, no staged file. */
async function expectNothingStored(before: { messages: number; blobs: number }) {
  expect(await count('outbound_messages')).toBe(before.messages)
  expect(await count('attachment_blobs')).toBe(before.blobs)
}

async function snapshot() {
  return { messages: await count('outbound_messages'), blobs: await count('attachment_blobs') }
}

describe('multipart submit', () => {
  it.each([
    ['a NUL in an encoded filename', { disposition: `form-data; name="attachment"; filename*=utf-8''a%00b.txt` }, 'attachments.1.name'],
    ['a right-to-left override in a filename (invoice\u202Efdp.exe shows as invoiceexe.pdf)', { disposition: `form-data; name="attachment"; filename*=utf-8''invoice%E2%80%AEfdp.exe` }, 'attachments.1.name'],
    ['an escape sequence in a filename', { filename: 'a\u001b[31m.txt' }, 'attachments.1.name'],
    ['a NUL in an inline content id', { disposition: `form-data; name*=utf-8''inline%3Aa%00b; filename="a.png"` }, 'attachments.1.contentId'],
    ['a control character in a part content type', { filename: 'a.txt', contentType: 'text/pl\u0001ain' }, 'attachments.1.contentType'],
  ])('refuses %s with 400 naming the field, and keeps nothing', async (_case, part, field) => {
    const messagesBefore = await count('outbound_messages')
    const response = await sendMultipart([
      messagePart(message({ attachments: [{ name: 'a.txt', contentType: 'text/plain', contentBytes: 'YQ==' }] })),
      { name: 'attachment', content: Buffer.from('file'), ...part },
    ])
    expect(response.statusCode, response.body).toBe(400)
    expect(response.json().errors.map((error: { field: string }) => error.field)).toEqual([field])
    expect(await count('outbound_messages')).toBe(messagesBefore)
    expect(await unreferencedBlobs()).toBe(0)
  })

  it('stores the message with its base64 and streamed files, byte for byte, across chunk boundaries', async () => {
    const notes = Buffer.from('plain notes\n')
    const scan: GeneratedContent = { size: 2 * STORAGE_CHUNK_BYTES + 12_345, seed: 1 }
    const small = Buffer.from('%PDF-1.7 small')
    const response = await sendMultipart([
      messagePart(message({ attachments: [{ name: 'small.pdf', contentType: 'application/pdf', contentBytes: small.toString('base64') }] })),
      filePart('notes.txt', notes, 'text/plain'),
      filePart('scan.tif', scan, 'image/tiff'),
    ])
    expect(response.statusCode).toBe(202)
    const accepted = response.json()
    expect(accepted).toMatchObject({ id: expect.any(String), status: 'queued' })
    expect(response.headers.location).toBe(`/v1/messages/${accepted.id}`)

    const fetched = (await t.app.inject({ method: 'GET', url: `/v1/messages/${accepted.id}`, headers: bearer(reader) })).json()
    expect(fetched.attachments).toEqual([
      { name: 'small.pdf', contentType: 'application/pdf', size: small.length, isInline: false },
      { name: 'notes.txt', contentType: 'text/plain', size: notes.length, isInline: false },
      { name: 'scan.tif', contentType: 'image/tiff', size: scan.size, isInline: false },
    ])
    const textBytes = Buffer.byteLength('Your files') + Buffer.byteLength('<p>See attached</p>')
    expect(fetched.totalBytes).toBe(textBytes + small.length + notes.length + scan.size)

    const stored = await storedAttachments(accepted.id)
    expect(stored.map((row) => row.sha256)).toEqual([sha256Of(small), sha256Of(notes), sha256Of(scan)])
    expect(stored[2]!.chunkSizes).toEqual([STORAGE_CHUNK_BYTES, STORAGE_CHUNK_BYTES, 12_345])
    expect(await unreferencedBlobs()).toBe(0)
  })

  it('takes a message part sent as a JSON blob with a filename, as browsers and fetch send it', async () => {
    const response = await sendMultipart([
      { name: 'message', filename: 'blob', contentType: 'application/json', content: JSON.stringify(message()) },
      filePart('a.txt', Buffer.from('a')),
    ])
    expect(response.statusCode).toBe(202)
  })

  it('inline:<contentId> parts become inline attachments with that content id', async () => {
    const logo = randomBytes(2048)
    const response = await sendMultipart([
      messagePart(message({ body: { contentType: 'html', content: '<img src="cid:logo@mailgate">' } })),
      filePart('logo.png', logo, 'image/png', 'inline:logo@mailgate'),
    ])
    expect(response.statusCode).toBe(202)
    const [stored] = await storedAttachments(response.json().id)
    expect(stored).toMatchObject({ name: 'logo.png', content_type: 'image/png', is_inline: true, content_id: 'logo@mailgate', sha256: sha256Of(logo) })

    const before = await snapshot()
    const tooBig = await sendMultipart([messagePart(message()), filePart('banner.png', { size: 3 * MiB + 1, seed: 2 }, 'image/png', 'inline:banner')])
    expect(tooBig.statusCode).toBe(422)
    expect(tooBig.json()).toMatchObject({ code: 'ATTACHMENT_NOT_SENDABLE', field: 'attachments.0', detail: expect.stringContaining('Inline attachments must be under 3 MB') })
    await expectNothingStored(before)
  })
})

describe('refusals store nothing', () => {
  it('413 as soon as subject, body and files together cross MESSAGE_SIZE_LIMIT, removing files already staged', async () => {
    const before = await snapshot()
    const response = await sendMultipart([
      messagePart(message()),
      filePart('first.bin', { size: 5 * MiB, seed: 3 }),
      filePart('second.bin', { size: 40 * MiB, seed: 4 }),
    ])
    expect(response.statusCode).toBe(413)
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
    expect(response.json()).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', detail: expect.stringContaining('MESSAGE_SIZE_LIMIT') })
    expect(response.pulled).toBeLessThan(SIZE_LIMIT + 4 * MiB)
    await expectNothingStored(before)
  })

  it('413 for subject and body alone over the limit, in either format', async () => {
    const before = await snapshot()
    const long = message({ body: { contentType: 'text', content: 'x'.repeat(SIZE_LIMIT) } })
    const json = await t.app.inject({ method: 'POST', url: '/v1/messages', headers: bearer(sender), payload: long })
    expect(json.statusCode).toBe(413)
    expect(json.json().code).toBe('PAYLOAD_TOO_LARGE')
    const form = await sendMultipart([messagePart(long), filePart('a.txt', Buffer.from('a'))])
    expect(form.statusCode).toBe(413)
    // Over what a JSON body may be, base64 attachments included: refused while it is read.
    const huge = await sendMultipart([messagePart(message({ body: { contentType: 'text', content: 'x'.repeat(2 * SIZE_LIMIT) } }))])
    expect(huge.statusCode).toBe(413)
    expect(huge.json()).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', field: 'message' })
    await expectNothingStored(before)
  })

  it('400 for a message part that is not JSON, has an unknown field, or an invalid value, named as in the JSON body', async () => {
    const before = await snapshot()
    const file = filePart('a.bin', { size: 4 * MiB, seed: 5 })

    const notJson = await sendMultipart([messagePart('{"from": "support@contoso.com",'), file])
    expect(notJson.statusCode).toBe(400)
    expect(notJson.json()).toMatchObject({ code: 'MALFORMED_BODY', field: 'message' })

    const unknown = await sendMultipart([messagePart({ ...message(), sbuject: 'typo' }), file])
    expect(unknown.statusCode).toBe(400)
    expect(unknown.json().errors).toEqual([{ field: 'sbuject', message: expect.stringMatching(/not a known field/) }])

    const badAddress = await sendMultipart([messagePart(message({ to: ['not-an-address'] })), file])
    expect(badAddress.json()).toMatchObject({ code: 'VALIDATION_FAILED', errors: [{ field: 'to.0' }] })

    const noRecipient = await sendMultipart([messagePart(message({ to: [] })), file])
    expect(noRecipient.statusCode).toBe(400)
    expect(noRecipient.json()).toMatchObject({ code: 'VALIDATION_FAILED', errors: [{ field: 'to' }] })

    for (const response of [notJson, unknown, badAddress, noRecipient]) expect(response.pulled).toBeLessThan(3 * MiB)
    await expectNothingStored(before)
  })

  it('400 when the message is not the first part, or missing, or a part is unknown', async () => {
    const before = await snapshot()
    const late = await sendMultipart([filePart('a.txt', Buffer.from('a')), messagePart(message())])
    expect(late.statusCode).toBe(400)
    expect(late.json()).toMatchObject({ code: 'VALIDATION_FAILED', errors: [{ field: 'message', message: expect.stringContaining('must be the first part') }] })

    const missing = await sendMultipart([])
    expect(missing.json()).toMatchObject({ code: 'VALIDATION_FAILED', errors: [{ field: 'message', message: expect.stringContaining('is required') }] })

    const unknown = await sendMultipart([messagePart(message()), filePart('a.txt', Buffer.from('a'), 'text/plain', 'file')])
    expect(unknown.json()).toMatchObject({ code: 'VALIDATION_FAILED', errors: [{ field: 'file' }] })

    const twice = await sendMultipart([messagePart(message()), messagePart(message())])
    expect(twice.json()).toMatchObject({ code: 'VALIDATION_FAILED', errors: [{ field: 'message', message: expect.stringContaining('once') }] })

    const nameless = await sendMultipart([messagePart(message()), { name: 'attachment', contentType: 'text/plain', content: 'x' }])
    expect(nameless.json()).toMatchObject({ code: 'VALIDATION_FAILED', errors: [{ field: 'attachments.0.name' }] })

    const broken = await t.app.inject({
      method: 'POST',
      url: '/v1/messages',
      headers: { ...bearer(sender), 'content-type': `multipart/form-data; boundary=${BOUNDARY}` },
      payload: `--${BOUNDARY}\r\nContent-Disposition: form-data; name="message"\r\n\r\n{}`,
    })
    expect(broken.statusCode).toBe(400)
    expect(broken.json().code).toBe('MALFORMED_BODY')
    await expectNothingStored(before)
  })

  it('422 for a sender Mailgate may not use, before any file is read', async () => {
    const before = await snapshot()
    const response = await sendMultipart([messagePart(message({ from: 'stranger@contoso.com' })), filePart('big.bin', { size: 50 * MiB, seed: 6 })])
    expect(response.statusCode).toBe(422)
    expect(response.json()).toMatchObject({ code: 'SENDER_NOT_ALLOWED', field: 'from' })
    expect(response.pulled).toBeLessThan(3 * MiB)
    await expectNothingStored(before)
  })

  it('422 when a Mail.Send-only integration would need a draft: a file over 3 MB, or over 3 MB of files in all', async () => {
    const before = await snapshot()
    const large = await sendMultipart([messagePart(message({ from: sendOnlyFrom })), filePart('scan.tif', { size: 4 * MiB, seed: 7 })])
    expect(large.statusCode).toBe(422)
    expect(large.json()).toMatchObject({ code: 'ATTACHMENT_NOT_SENDABLE', field: 'attachments.0', detail: expect.stringContaining('Mail.ReadWrite') })

    const together = await sendMultipart([
      messagePart(message({ from: sendOnlyFrom })),
      filePart('one.bin', { size: 2 * MiB, seed: 8 }),
      filePart('two.bin', { size: 2 * MiB, seed: 9 }),
    ])
    expect(together.statusCode).toBe(422)
    expect(together.json()).toMatchObject({ code: 'ATTACHMENT_NOT_SENDABLE', field: 'attachments.1', detail: expect.stringContaining('sendMail') })
    await expectNothingStored(before)

    const fits = await sendMultipart([messagePart(message({ from: sendOnlyFrom })), filePart('one.bin', { size: 2 * MiB, seed: 8 }), filePart('two.bin', { size: MiB - 1, seed: 9 })])
    expect(fits.statusCode).toBe(202)
  })

  it('the JSON body has the same 3 MB rule for Mail.Send-only integrations', async () => {
    const before = await snapshot()
    const twoMiB = Buffer.alloc(2 * MiB, 7).toString('base64')
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/messages',
      headers: bearer(sender),
      payload: message({ from: sendOnlyFrom, attachments: [{ name: 'one.bin', contentBytes: twoMiB }, { name: 'two.bin', contentBytes: twoMiB }] }),
    })
    expect(response.statusCode).toBe(422)
    expect(response.json()).toMatchObject({
      code: 'ATTACHMENT_NOT_SENDABLE',
      field: 'attachments.1',
      detail: expect.stringMatching(/together are larger than 3 MB.*Grant Mail\.ReadWrite and test the integration again.*or send smaller files/),
    })
    await expectNothingStored(before)
  })

  it('415 problem+json for a body that is neither JSON nor multipart, unread', async () => {
    for (const type of ['text/plain', 'text/csv', 'application/x-www-form-urlencoded']) {
      const response = await t.app.inject({ method: 'POST', url: '/v1/messages', headers: { ...bearer(sender), 'content-type': type }, payload: 'from=x' })
      expect(response.statusCode, type).toBe(415)
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
      expect(response.json()).toMatchObject({ code: 'UNSUPPORTED_MEDIA_TYPE', detail: expect.stringContaining('multipart/form-data') })
    }
    const empty = await t.app.inject({ method: 'POST', url: '/v1/messages', headers: bearer(sender) })
    expect(empty.statusCode).toBe(400)
  })
})

describe('idempotency', () => {
  it('the same key, message and files replay the first answer without storing twice; another file is 409', async () => {
    const file = filePart('report.pdf', { size: STORAGE_CHUNK_BYTES + 1, seed: 10 }, 'application/pdf')
    const first = await sendMultipart([messagePart(message()), file], { idempotencyKey: 'upload-1' })
    expect(first.statusCode).toBe(202)
    expect(first.headers['idempotent-replayed']).toBeUndefined()
    const before = await snapshot()

    const again = await sendMultipart([messagePart(message()), file], { idempotencyKey: 'upload-1' })
    expect(again.statusCode).toBe(202)
    expect(again.headers['idempotent-replayed']).toBe('true')
    expect(again.json()).toEqual(first.json())
    await expectNothingStored(before)

    const otherContent = await sendMultipart([messagePart(message()), filePart('report.pdf', { size: STORAGE_CHUNK_BYTES + 1, seed: 11 }, 'application/pdf')], {
      idempotencyKey: 'upload-1',
    })
    expect(otherContent.statusCode).toBe(409)
    expect(otherContent.json().code).toBe('IDEMPOTENCY_KEY_REUSED')
    const otherName = await sendMultipart([messagePart(message()), { ...file, filename: 'renamed.pdf' }], { idempotencyKey: 'upload-1' })
    expect(otherName.statusCode).toBe(409)
    await expectNothingStored(before)
  })

  it('a multipart request without files means the same as its JSON body', async () => {
    const json = await t.app.inject({ method: 'POST', url: '/v1/messages', headers: { ...bearer(sender), 'idempotency-key': 'same-either-way' }, payload: message() })
    const form = await sendMultipart([messagePart(message())], { idempotencyKey: 'same-either-way' })
    expect(form.headers['idempotent-replayed']).toBe('true')
    expect(form.json().id).toBe(json.json().id)
  })
})

describe('over a real connection', () => {
  let base: string
  beforeAll(async () => {
    const address = await t.app.listen({ port: 0, host: '127.0.0.1' })
    base = address
  })

  /** A fetch body; `giveUpWhen` is asked before each piece and ends the upload with an error once it holds. */
  function streamedBody(parts: Part[], options: { giveUpWhen?: () => Promise<boolean> } = {}) {
    const pieces = multipart(parts).stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (await options.giveUpWhen?.()) return controller.error(new Error('client gave up'))
        const { value, done } = await pieces.next()
        if (done) return controller.close()
        controller.enqueue(value)
      },
    })
  }

  it('streams a large file from a client that sends it in pieces', async () => {
    const big: GeneratedContent = { size: 7 * MiB + 3, seed: 12 }
    const response = await fetch(`${base}/v1/messages`, {
      method: 'POST',
      headers: { ...bearer(sender), 'content-type': `multipart/form-data; boundary=${BOUNDARY}` },
      body: streamedBody([messagePart(message()), filePart('big.bin', big)]),
      duplex: 'half',
    } as RequestInit)
    expect(response.status).toBe(202)
    const [stored] = await storedAttachments(((await response.json()) as { id: string }).id)
    expect(stored!.sha256).toBe(sha256Of(big))
    expect(stored!.chunkSizes.slice(0, -1).every((size) => size === STORAGE_CHUNK_BYTES)).toBe(true)
  })

  it('a refusal mid-upload reaches the client, and the connection is closed rather than read to the end', async () => {
    const response = await fetch(`${base}/v1/messages`, {
      method: 'POST',
      headers: { ...bearer(sender), 'content-type': `multipart/form-data; boundary=${BOUNDARY}` },
      body: streamedBody([messagePart(message()), filePart('huge.bin', { size: 60 * MiB, seed: 13 })]),
      duplex: 'half',
    } as RequestInit)
    expect(response.status).toBe(413)
    expect(response.headers.get('connection')).toBe('close')
    expect(((await response.json()) as { code: string }).code).toBe('PAYLOAD_TOO_LARGE')
  })

  it('a client that disconnects mid-upload leaves no staged file behind', async () => {
    const before = await snapshot()
    await expect(
      fetch(`${base}/v1/messages`, {
        method: 'POST',
        headers: { ...bearer(sender), 'content-type': `multipart/form-data; boundary=${BOUNDARY}` },
        // Once the server has begun to store the file.
        body: streamedBody([messagePart(message()), filePart('cut.bin', { size: 20 * MiB, seed: 14 })], { giveUpWhen: async () => (await unreferencedBlobs()) > 0 }),
        duplex: 'half',
      } as RequestInit),
    ).rejects.toThrow()
    for (let i = 0; i < 50 && (await count('attachment_blobs')) !== before.blobs; i++) await new Promise((resolve) => setTimeout(resolve, 100))
    await expectNothingStored(before)
  })
})
