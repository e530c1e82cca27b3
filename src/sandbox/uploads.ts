import { createHash, randomBytes, type Hash } from 'node:crypto'
import { CLOUD_HOSTS, type FakeEntra } from './entra.ts'
import {
  graphError,
  header,
  jsonBody,
  notFound,
  reply,
  safeDecode,
  tooLarge,
  unreadableJson,
  type FakeAnswer,
  type GraphContext,
  type GraphRequestRecord,
  type RequestBody,
  type RequestHeaders,
} from './graph-http.ts'
import { newAttachmentId, newRestId, type FakeStoredAttachment, type FakeStoredMessage, type MailStore } from './mail-store.ts'

/**
 * Attachment upload sessions: createUploadSession on a draft (Graph), and the pre-authenticated
 * upload URLs on the Outlook host it hands out, which take the file in byte ranges.
 */

/** Microsoft's text says upload sessions are for 3 MB and up; the smallest accepted was observed at exactly 2 MiB. */
const MIN_UPLOAD_SESSION_BYTES = 2 * 1024 * 1024
const MAX_UPLOAD_SESSION_BYTES = 150 * 1024 * 1024
const MAX_UPLOAD_CHUNK_BYTES = 4 * 1024 * 1024

interface UploadSession {
  id: string
  authToken: string
  appId: string
  mailbox: string
  /** The immutable id of the draft, which survives moves. */
  messageKey: string
  /** `https://outlook.../Users('...')/Messages('...')`, the base of the upload and attachment URLs. */
  messageUrl: string
  name: string
  contentType: string
  isInline: boolean
  contentId?: string
  size: number
  received: number
  hash: Hash
  expirationDateTime: string
}

/**
 * nock hands reply functions the request body as a string: UTF-8 when the bytes survive a round
 * trip through UTF-8, otherwise hex. The hex form is exactly twice as long as the bytes, which a
 * UTF-8 string of those bytes can never be, so the declared length tells the two apart.
 */
function bodyBytes(body: RequestBody, expectedLength: number): Buffer {
  if (Buffer.isBuffer(body)) return body
  if (typeof body !== 'string') return Buffer.from(JSON.stringify(body))
  if (expectedLength > 0 && body.length === expectedLength * 2) {
    const bytes = Buffer.from(body, 'hex')
    if (bytes.length === expectedLength) return bytes
  }
  return Buffer.from(body, 'utf8')
}

export class UploadSessions {
  private readonly sessions = new Map<string, UploadSession>()
  private readonly store: MailStore
  private readonly entra: FakeEntra

  constructor(store: MailStore, entra: FakeEntra) {
    this.store = store
    this.entra = entra
  }

  /** POST .../messages/{id}/attachments/createUploadSession for the draft `message`, addressed as `requestedId`. */
  create({ host, mailbox, appId, body }: GraphContext, message: FakeStoredMessage, requestedId: string): FakeAnswer {
    const request = jsonBody(body)
    if (!request) return unreadableJson()
    const item = (request.AttachmentItem ?? request.attachmentItem) as
      | { attachmentType?: string; name?: string; size?: unknown; contentType?: string; isInline?: boolean; contentId?: string }
      | undefined
    if (!item) return graphError(400, 'BadRequest', "The parameter 'AttachmentItem' is missing.")
    if (item.attachmentType?.toLowerCase() !== 'file') return graphError(400, 'BadRequest', "The fake supports only attachmentType 'file'.")
    if (!item.name) return graphError(400, 'BadRequest', 'The AttachmentItem has no name.')
    if (typeof item.size !== 'number' || !Number.isSafeInteger(item.size) || item.size < 0) {
      return graphError(400, 'BadRequest', 'The AttachmentItem has no valid size.')
    }
    if (item.size < MIN_UPLOAD_SESSION_BYTES) {
      return graphError(400, 'ErrorAttachmentSizeShouldNotBeLessThanMinimumSize', 'Attachment size should not be less than the minimum size.')
    }
    if (item.size > MAX_UPLOAD_SESSION_BYTES) {
      return graphError(400, 'ErrorAttachmentSizeLimitExceeded', 'The attachment exceeds the maximum size of 150 MB for an upload session.')
    }
    const users = `Users('${mailbox.id}@${mailbox.tenantId}')`
    const outlookHost = CLOUD_HOSTS[this.entra.tenants.get(mailbox.tenantId)?.cloud ?? 'global'].outlook
    const session: UploadSession = {
      id: newRestId(),
      authToken: randomBytes(48).toString('base64url'),
      appId,
      mailbox: mailbox.address,
      messageKey: message.immutableId,
      messageUrl: `https://${outlookHost}/api/v2.0/${users}/Messages('${requestedId}')`,
      name: item.name,
      contentType: item.contentType ?? 'application/octet-stream',
      isInline: item.isInline === true,
      ...(item.contentId ? { contentId: item.contentId } : {}),
      size: item.size,
      received: 0,
      hash: createHash('sha256'),
      expirationDateTime: new Date(Date.now() + 6 * 3_600_000).toISOString(),
    }
    this.sessions.set(session.id, session)
    return reply(201, {
      '@odata.context': `https://${host}/v1.0/$metadata#microsoft.graph.uploadSession`,
      uploadUrl: `${session.messageUrl}/AttachmentSessions('${session.id}')?authtoken=${session.authToken}`,
      expirationDateTime: session.expirationDateTime,
      nextExpectedRanges: ['0-'],
    })
  }

  /** The mailbox (lowercase address) an Outlook-host request is for; '' when none is known. */
  mailboxKey(url: URL): string {
    const session = this.sessionFor(url)
    if (session) return session.mailbox
    const mailboxId = /Users\('([^'@]+)@/i.exec(safeDecode(url.pathname))?.[1]
    return (mailboxId && this.store.lookupMailbox(mailboxId)?.address) || ''
  }

  /** The pre-authenticated upload URLs on the Outlook host: PUT a byte range, or DELETE to cancel. */
  serve(host: string, method: string, url: URL, body: RequestBody, headers: RequestHeaders, record: GraphRequestRecord): FakeAnswer {
    const session = this.sessionFor(url)
    if (session) record.appId = session.appId
    // The URL carries its own token; a Graph bearer token sent along is rejected for its audience.
    if (record.hadAuthorization) {
      const audience = this.entra.verifyToken((header(headers, 'authorization') ?? '').replace(/^Bearer /, ''))?.aud ?? 'https://graph.microsoft.com'
      return graphError(
        401,
        'InvalidAudienceForResource',
        `The audience claim value is invalid for current resource. Audience claim is '${audience}/', request url is 'https://${host}' and resource type is 'Exchange'.`,
      )
    }
    if (!session) return notFound()
    if (url.searchParams.get('authtoken') !== session.authToken) {
      return graphError(401, 'InvalidAuthenticationToken', 'The authtoken of the upload URL is missing or not valid.')
    }
    if (method === 'DELETE') {
      this.sessions.delete(session.id)
      return reply(204)
    }
    const message = this.store.messages.get(session.messageKey)
    if (!message) {
      this.sessions.delete(session.id)
      return notFound()
    }

    const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(header(headers, 'content-range') ?? '')
    if (!range) return graphError(400, 'InvalidContentRange', 'The Content-Range header must be of the form bytes {start}-{end}/{total}.')
    const [start, end, total] = range.slice(1).map(Number) as [number, number, number]
    if (total !== session.size) {
      return graphError(400, 'InvalidContentRange', `The Content-Range total ${total} differs from the size ${session.size} the upload session was created with.`)
    }
    if (end < start || end >= total) return graphError(400, 'InvalidContentRange', `The Content-Range ${start}-${end} is not within 0-${total - 1}.`)
    const length = end - start + 1
    if (length > MAX_UPLOAD_CHUNK_BYTES) return tooLarge('A byte range of an upload session must not exceed 4 MB.')
    if (start !== session.received) {
      return reply(416, {
        error: { code: 'InvalidRange', message: `The upload must continue at byte ${session.received}; ranges must be sent in order.` },
        nextExpectedRanges: [String(session.received)],
      })
    }
    const bytes = bodyBytes(body, length)
    if (bytes.length !== length) {
      return graphError(400, 'InvalidContentRange', `The body has ${bytes.length} bytes but the Content-Range announces ${length}.`)
    }
    session.hash.update(bytes)
    session.received = end + 1
    if (session.received < session.size) {
      // Shaped like Microsoft's documented answer: PascalCase expiry, a bare offset as the next range.
      return reply(200, {
        '@odata.context': `https://${host}/api/v2.0/$metadata#${session.messageUrl.split('/api/v2.0/')[1]}/AttachmentSessions/$entity`,
        ExpirationDateTime: session.expirationDateTime,
        nextExpectedRanges: [String(session.received)],
      })
    }
    this.sessions.delete(session.id)
    const attachment: FakeStoredAttachment = {
      id: newAttachmentId(),
      name: session.name,
      contentType: session.contentType,
      size: session.size,
      sha256: session.hash.digest('hex'),
      isInline: session.isInline,
      ...(session.contentId ? { contentId: session.contentId } : {}),
    }
    message.attachments.push(attachment)
    this.store.touch(message)
    return reply(201, '', { location: `${session.messageUrl}/Attachments('${attachment.id}')` })
  }

  private sessionFor(url: URL): UploadSession | undefined {
    const id = /AttachmentSessions\('([^']+)'\)/i.exec(safeDecode(url.pathname))?.[1]
    return id ? this.sessions.get(id) : undefined
  }
}
