import { constants, createHash, createHmac, randomBytes, randomUUID, verify, X509Certificate, type Hash } from 'node:crypto'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { makeServerCertificate } from './certificates.ts'
import { exchangeAutomaticReply, exchangeNdr, type AnsweredMessage } from './exchange-mail.ts'
import { buildMime, mimeHeaders, parseMime, type MimeAddress, type MimeSource } from './mime.ts'
import {
  FakeSubscriptions,
  type FakeSubscription,
  type LifecycleDelivery,
  type LifecycleEvent,
  type NotificationAnswer,
  type NotificationDelivery,
  type NotificationRequest,
  type NotificationTransport,
  type TransportAnswer,
  type ValidationRecord,
} from './subscriptions.ts'

export type {
  FakeSubscription,
  LifecycleDelivery,
  LifecycleEvent,
  NotificationAnswer,
  NotificationDelivery,
  NotificationRequest,
  NotificationTransport,
  TransportAnswer,
  ValidationRecord,
}

/** A request body as it arrives: text (UTF-8, or latin1 for bytes), raw bytes, or JSON a test harness already parsed. */
export type RequestBody = string | Buffer | Record<string, unknown>

/**
 * A stateful stand-in for Microsoft's cloud: tenants with app registrations (secrets,
 * certificates, granted application permissions) behind the Entra token endpoint of every
 * national cloud, and shared mailboxes behind the Graph mail endpoints (folders, sendMail,
 * drafts with attachments and upload sessions, draft send; receiving: mail in any folder,
 * per-folder delta with next/delta links, $value MIME, mark read, move, delete; change-notification
 * subscriptions with the webhook validation handshake, see subscriptions.ts). `listen` serves
 * it as a real local HTTPS server (npm run sandbox); the tests also reach it through nock
 * (test/support/fake-microsoft.ts), so no traffic leaves the machine.
 */

export const AUTHORITY_HOSTS = ['login.microsoftonline.com', 'login.microsoftonline.us', 'login.chinacloudapi.cn']
export const GRAPH_HOSTS = ['graph.microsoft.com', 'graph.microsoft.us', 'dod-graph.microsoft.us', 'microsoftgraph.chinacloudapi.cn']
/** Hosts of the pre-authenticated attachment upload URLs that createUploadSession hands out. */
export const OUTLOOK_HOSTS = ['outlook.office.com', 'outlook.office365.us', 'outlook-dod.office365.us', 'partner.outlook.cn']

/** Graph refuses request bodies over 4 MB with 413. */
const MAX_REQUEST_BYTES = 4 * 1024 * 1024
/** A file attached in the request itself (sendMail, POST messages, POST attachments) must stay under 3 MB. */
const MAX_INLINE_ATTACHMENT_BYTES = 3 * 1024 * 1024
/** Microsoft's text says upload sessions are for 3 MB and up; the smallest accepted was observed at exactly 2 MiB. */
const MIN_UPLOAD_SESSION_BYTES = 2 * 1024 * 1024
const MAX_UPLOAD_SESSION_BYTES = 150 * 1024 * 1024
const MAX_UPLOAD_CHUNK_BYTES = 4 * 1024 * 1024

export interface FakeFolder {
  id: string
  displayName: string
  wellKnownName?: string
  children: FakeFolder[]
}

export interface FakeAttachmentSummary {
  name: string
  contentType: string
  /** Bytes of the file (Graph's own `size` adds some MIME overhead; the fake reports the plain count). */
  size: number
  /** Hex SHA-256 of the file bytes; the bytes themselves are not kept. */
  sha256: string
  isInline: boolean
  contentId?: string
}

export interface FakeStoredAttachment extends FakeAttachmentSummary {
  id: string
  /**
   * The bytes, for attachments that came in a request body or with `deliver` (kept so $value
   * can write them). Upload-session attachments (up to 150 MB) keep only their hash.
   */
  content?: Buffer
}

export interface FakeSentMessage {
  from: string
  sender: string
  to: string[]
  subject: string
  headers: { name: string; value: string }[]
  savedToSentItems: boolean
  cc: string[]
  bcc: string[]
  replyTo: string[]
  importance: FakeImportance
  bodyType: 'text' | 'html'
  body: string
  attachments: FakeAttachmentSummary[]
  via: 'sendMail' | 'draft'
  /** Draft sends only: the id the draft was sent by (its immutable id when created with Prefer: IdType="ImmutableId"). */
  messageId?: string
  internetMessageId: string
}

export type FakeImportance = 'low' | 'normal' | 'high'
/**
 * Where a message is: the well-known name of its folder ('inbox', 'sentitems', 'drafts',
 * 'deleteditems', 'junkemail', 'archive', ...) or, for other folders, their path from the top
 * (e.g. 'Project 1/Invoices').
 */
export type FakeMessageFolder = 'drafts' | 'sentitems' | 'inbox' | 'deleteditems' | 'junkemail' | 'archive' | (string & {})

export interface FakeStoredMessage {
  /**
   * The id its creator holds: the immutable id when the message was created with
   * Prefer: IdType="ImmutableId", otherwise the REST id (which changes when the message moves).
   */
  id: string
  /** The current REST id. Like Exchange's, it changes whenever the message moves to another folder. */
  restId: string
  /** Never changes. Graph answers with it instead of the REST id to requests carrying Prefer: IdType="ImmutableId". */
  immutableId: string
  /** Lowercase address of the mailbox holding the message. */
  mailbox: string
  isDraft: boolean
  /** The folder's well-known name or path; kept in step with `parentFolderId` by every move. */
  folder: FakeMessageFolder
  /** The id of the FakeFolder holding the message. */
  parentFolderId: string
  isRead: boolean
  subject: string
  body: { contentType: 'text' | 'html'; content: string }
  from?: string
  to: string[]
  cc: string[]
  bcc: string[]
  replyTo: string[]
  importance: FakeImportance
  internetMessageHeaders: { name: string; value: string }[]
  internetMessageId: string
  createdDateTime: string
  receivedDateTime: string
  lastModifiedDateTime: string
  sentDateTime?: string
  attachments: FakeStoredAttachment[]
  /** The Sender address when it differs from `from` (Graph's `sender`); `from` otherwise. */
  sender?: string
  /** Display names of the addresses above, by lowercase address; the address stands in for a missing name. */
  displayNames?: Record<string, string>
  /** For mail delivered as MIME: the raw RFC 5322 bytes, which $value answers verbatim. */
  mime?: Buffer
}

/** A structured message for `deliver`. Addresses are `a@b.example` or `Name <a@b.example>`. */
export interface FakeDeliveryInput {
  subject?: string
  /** Default `Alice Customer <alice@fabrikam.example>`. */
  from?: string | MimeAddress
  sender?: string | MimeAddress
  /** Default: the mailbox itself. */
  to?: (string | MimeAddress)[]
  cc?: (string | MimeAddress)[]
  bcc?: (string | MimeAddress)[]
  replyTo?: (string | MimeAddress)[]
  /** A string is a plain-text body. */
  body?: string | { contentType?: 'text' | 'html'; content: string }
  importance?: FakeImportance
  internetMessageId?: string
  /** Further internet headers, e.g. `{ name: 'Auto-Submitted', value: 'auto-replied' }`. */
  headers?: { name: string; value: string }[]
  /** The Date header; default: when it is received. */
  sentAt?: Date
  /** Default false, except for mail put into sentitems or drafts. */
  isRead?: boolean
  isDraft?: boolean
  attachments?: { name: string; contentType?: string; content: Buffer | string; isInline?: boolean; contentId?: string }[]
}

export interface FakeDeliveryOptions {
  /** A folder path ('Inbox/Invoices'), well-known name ('junkemail') or folder id. Default 'inbox'. */
  folder?: string
  /** Default: now. */
  receivedAt?: Date
}

export interface FakeMailbox {
  id: string
  address: string
  tenantId: string
  displayName: string
  folders: FakeFolder[]
  /** Aliases the mailbox may send as (Send As rights). */
  sendAs: Set<string>
  /** When set, an application access policy lets only these app ids in. */
  allowedApps?: Set<string>
  /** Messages sent from this mailbox, and messages delivered to it. */
  sent: FakeSentMessage[]
  received: FakeSentMessage[]
  /** Out of office: mail from a mailbox of the stand-in gets this automatic reply, once per sender. */
  automaticReply?: { message: string; repliedTo: Set<string> }
}

export type GraphFault =
  /** Answered before the request is processed: nothing changes (a throttled send does not send). */
  | { kind: 'status'; status: number; code?: string; message?: string; retryAfter?: number }
  /** Connection reset before the request is processed. */
  | { kind: 'network' }
  | { kind: 'delay'; ms: number }
  /**
   * The request is processed (a send does send), then its answer is lost: the client sees a
   * connection reset or, with `status`, that error (e.g. 504) instead of the real answer.
   */
  | { kind: 'lost-response'; status?: number; code?: string; message?: string; retryAfter?: number }

export interface GraphFaultMatch {
  /** HTTP method, e.g. 'POST'. Any method when left out. */
  method?: string
  /** Tested against the URL pathname, e.g. /\/send$/. Any path when left out. */
  path?: RegExp
}

export interface GraphRequestRecord {
  host: string
  method: string
  path: string
  /** When it arrived (epoch ms). */
  at: number
  appId: string | undefined
  /** What the client got; -1 for a connection reset. */
  status: number
  /** The Prefer request header, when sent. */
  prefer?: string
  /** The query string (with its '?'), when there was one. */
  query?: string
  /** Outlook-host requests (upload URLs) only: whether an Authorization header came along. */
  hadAuthorization?: boolean
  /** The fault this request took, if any. */
  fault?: GraphFault['kind']
  /** lost-response faults: the status the request was really processed with. */
  processedStatus?: number
}

export interface FakeSecret {
  value: string
  expiresAt: Date
}

export interface FakeApp {
  clientId: string
  displayName: string
  secrets: FakeSecret[]
  /** PEM certificates registered under Certificates & secrets. */
  certificates: string[]
  /** Granted application permissions, e.g. Mail.ReadWrite, Mail.Send. */
  roles: string[]
}

/** Which national cloud a tenant lives in decides its sign-in, Graph and Outlook hosts. */
export type FakeCloud = 'global' | 'usgov' | 'usgovdod' | 'china'
const CLOUD_HOSTS: Record<FakeCloud, { authority: string; graph: string; outlook: string }> = {
  global: { authority: 'login.microsoftonline.com', graph: 'graph.microsoft.com', outlook: 'outlook.office.com' },
  usgov: { authority: 'login.microsoftonline.us', graph: 'graph.microsoft.us', outlook: 'outlook.office365.us' },
  usgovdod: { authority: 'login.microsoftonline.us', graph: 'dod-graph.microsoft.us', outlook: 'outlook-dod.office365.us' },
  china: { authority: 'login.chinacloudapi.cn', graph: 'microsoftgraph.chinacloudapi.cn', outlook: 'partner.outlook.cn' },
}

export interface FakeTenant {
  id: string
  cloud: FakeCloud
  domains: string[]
  apps: Map<string, FakeApp>
}

export type TokenFault =
  | { kind: 'status'; status: number; body?: unknown; contentType?: string }
  | { kind: 'network' }
  | { kind: 'delay'; ms: number }

export interface TokenRequestRecord {
  host: string
  tenant: string
  clientId: string | undefined
  grant: string | undefined
  method: 'secret' | 'assertion' | 'none'
  outcome: string
}

const TOKEN_SIGNING_KEY = 'fake-microsoft-token-signing-key'

function base64urlJson(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url')
}

function entraError(status: number, error: string, code: number, description: string) {
  const trace = randomUUID()
  return {
    status,
    body: {
      error,
      error_description: `AADSTS${code}: ${description}\r\nTrace ID: ${trace}\r\nCorrelation ID: ${randomUUID()}\r\nTimestamp: ${new Date().toISOString()}`,
      error_codes: [code],
      timestamp: new Date().toISOString(),
      trace_id: trace,
      correlation_id: randomUUID(),
      error_uri: `https://login.microsoftonline.com/error?code=${code}`,
    },
  }
}

interface TokenClaims {
  tid: string
  appid: string
  roles: string[]
  aud: string
  exp: number
}

interface FakeAnswer {
  status: number
  body?: unknown
  headers?: Record<string, string>
}

type RequestHeaders = Record<string, string | string[] | undefined>

function reply(status: number, body: unknown = '', extra?: Record<string, string>): FakeAnswer {
  // Like Graph: an empty answer (202 from sendMail and send, 204) has no content type.
  return { status, body, headers: body === '' ? { ...extra } : { 'content-type': 'application/json', ...extra } }
}

function graphError(status: number, code: string, message: string, extra?: Record<string, string>): FakeAnswer {
  return reply(status, { error: { code, message, innerError: { 'request-id': randomUUID(), date: new Date().toISOString() } } }, extra)
}

function faultAnswer(fault: { status: number; code?: string; message?: string; retryAfter?: number }): FakeAnswer {
  const [code, message] =
    fault.status === 429
      ? ['ApplicationThrottled', 'Application is over its MailboxConcurrency limit.']
      : fault.status === 504
        ? ['GatewayTimeout', 'The gateway did not receive a timely response from the upstream server.']
        : ['ServiceUnavailable', 'Service unavailable']
  return graphError(fault.status, fault.code ?? code, fault.message ?? message, fault.retryAfter !== undefined ? { 'retry-after': String(fault.retryAfter) } : undefined)
}

const notFound = () => graphError(404, 'ErrorItemNotFound', 'The specified object was not found in the store.')
const tooLarge = (message = 'The request body is larger than the maximum of 4 MB Microsoft Graph accepts.') =>
  graphError(413, 'RequestBodyTooLarge', message)
const denied = () => graphError(403, 'ErrorAccessDenied', 'Access is denied. Check credentials and try again.')
const sendAsDenied = () =>
  graphError(
    403,
    'ErrorSendAsDenied',
    'The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account.',
  )
const unreadableJson = () =>
  graphError(400, 'BadRequest', 'Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.')
const canRead = (roles: Set<string>) => [...roles].some((role) => /^Mail\.(Read|ReadWrite|ReadBasic)(\.All)?$/.test(role))
const maySendAs = (mailbox: FakeMailbox, from: string) => from === mailbox.address || mailbox.sendAs.has(from)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const safeDecode = (segment: string) => {
  try {
    return decodeURIComponent(segment)
  } catch {
    return segment
  }
}
const header = (headers: RequestHeaders, name: string) => {
  const value = headers[name] ?? headers[name.toLowerCase()]
  return Array.isArray(value) ? value.join(', ') : value
}

// Shaped like Exchange ids (base64url, '=' padding), so callers must encode them in URLs.
const newRestId = () => `AAMkAG${randomBytes(36).toString('base64url')}AAA=`
const newImmutableId = () => `AAkALgAA${randomBytes(36).toString('base64url')}AAA=`
const newAttachmentId = () => `AAMkAG${randomBytes(24).toString('base64url')}BEgAQA${randomBytes(12).toString('base64url')}=`
const newInternetMessageId = () => `<${randomBytes(12).toString('hex')}@fake.outlook.com>`
/** Opaque state tokens, URL-safe as they stand. */
const newStateToken = () => randomBytes(30).toString('base64url')

/** `a@b.example`, `Name <a@b.example>` or `"Name, Jr." <a@b.example>`. */
function parseAddress(text: string): MimeAddress {
  const match = /^\s*"?([^"<]*?)"?\s*<([^>]+)>\s*$/.exec(text)
  if (!match) return { address: text.trim() }
  return match[1] ? { address: match[2]!.trim(), name: match[1].trim() } : { address: match[2]!.trim() }
}

/** Splits OData key segments such as `mailFolders('AAMk...')` into `mailFolders`, `AAMk...`. */
function keySegments(segments: string[]): string[] {
  return segments.flatMap((segment) => {
    const match = /^([A-Za-z.]+)\('(.*)'\)$/.exec(segment)
    return match ? [match[1]!, match[2]!.replaceAll("''", "'")] : [segment]
  })
}

function requestBytes(body: RequestBody): number {
  if (typeof body === 'string') return Buffer.byteLength(body)
  // nock hands over JSON bodies already parsed; clients send JSON.stringify output, so this is the size sent.
  return body === undefined || body === null ? 0 : Buffer.byteLength(JSON.stringify(body))
}

function jsonBody(body: RequestBody): Record<string, unknown> | undefined {
  if (typeof body !== 'string') return (body ?? {}) as Record<string, unknown>
  if (body === '') return {}
  try {
    return JSON.parse(body) as Record<string, unknown>
  } catch {
    return undefined
  }
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

function readFileAttachment(input: GraphAttachmentInput): FakeStoredAttachment | { refusal: FakeAnswer } {
  const type = input['@odata.type']
  if (!type) {
    return { refusal: graphError(400, 'RequestBodyRead', "An attachment needs an '@odata.type' such as '#microsoft.graph.fileAttachment'.") }
  }
  if (type.toLowerCase() !== '#microsoft.graph.fileattachment') {
    return { refusal: graphError(400, 'BadRequest', `The fake supports only #microsoft.graph.fileAttachment, not ${type}.`) }
  }
  if (typeof input.contentBytes !== 'string') return { refusal: graphError(400, 'BadRequest', 'The fileAttachment has no contentBytes.') }
  const bytes = Buffer.from(input.contentBytes, 'base64')
  if (bytes.length > MAX_INLINE_ATTACHMENT_BYTES) {
    return { refusal: tooLarge('An attachment sent in the request must be under 3 MB; use an upload session for larger files.') }
  }
  return {
    id: newAttachmentId(),
    name: input.name ?? '',
    contentType: input.contentType ?? 'application/octet-stream',
    size: bytes.length,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    isInline: input.isInline === true,
    ...(input.contentId ? { contentId: input.contentId } : {}),
    content: bytes,
  }
}

function attachmentJson(attachment: FakeStoredAttachment) {
  return {
    '@odata.type': '#microsoft.graph.fileAttachment',
    '@odata.mediaContentType': attachment.contentType,
    id: attachment.id,
    name: attachment.name,
    contentType: attachment.contentType,
    size: attachment.size,
    isInline: attachment.isInline,
    contentId: attachment.contentId ?? null,
  }
}

interface GraphRecipient {
  emailAddress?: { address?: string; name?: string }
}

interface GraphAttachmentInput {
  '@odata.type'?: string
  name?: string
  contentType?: string
  contentBytes?: string
  isInline?: boolean
  contentId?: string
}

interface GraphMessageInput {
  subject?: string
  body?: { contentType?: string; content?: string }
  from?: GraphRecipient
  toRecipients?: GraphRecipient[]
  ccRecipients?: GraphRecipient[]
  bccRecipients?: GraphRecipient[]
  replyTo?: GraphRecipient[]
  importance?: string
  internetMessageHeaders?: { name: string; value: string }[]
  attachments?: GraphAttachmentInput[]
}

type MessageContent = Pick<
  FakeStoredMessage,
  'subject' | 'body' | 'from' | 'to' | 'cc' | 'bcc' | 'replyTo' | 'importance' | 'internetMessageHeaders' | 'attachments'
>

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

/** Graph's page size for delta (and message lists) when the client asks for none. */
const DEFAULT_PAGE_SIZE = 10

/** The message properties `$select` accepts (Graph's; the fake leaves out a few it does not model). */
const MESSAGE_PROPERTIES = [
  'id',
  'createdDateTime',
  'lastModifiedDateTime',
  'changeKey',
  'categories',
  'receivedDateTime',
  'sentDateTime',
  'hasAttachments',
  'internetMessageId',
  'subject',
  'bodyPreview',
  'importance',
  'parentFolderId',
  'conversationId',
  'conversationIndex',
  'isDeliveryReceiptRequested',
  'isReadReceiptRequested',
  'isRead',
  'isDraft',
  'webLink',
  'inferenceClassification',
  'body',
  'uniqueBody',
  'sender',
  'from',
  'toRecipients',
  'ccRecipients',
  'bccRecipients',
  'replyTo',
  'flag',
  'internetMessageHeaders',
  'attachments',
  'extensions',
  'singleValueExtendedProperties',
  'multiValueExtendedProperties',
]
const PROPERTY_BY_LOWERCASE = new Map(MESSAGE_PROPERTIES.map((name) => [name.toLowerCase(), name]))

interface DeltaOptions {
  /** Canonical property names from the first request's $select; every property when undefined. */
  select?: string[]
  changeType?: 'created' | 'updated' | 'deleted'
  filter?: { op: 'ge' | 'gt'; at: number }
  orderDesc: boolean
  /** odata.maxpagesize of the round's first request, used when a later request sends none. */
  pageSize?: number
}

/** One entry of a round's snapshot, rendered when its page is served. */
type DeltaEntry = { kind: 'item'; immutableId: string } | { kind: 'removed'; immutableId: string; restIds: string[] }

/** The changes of one round of delta requests for a folder, fixed when the round starts. */
interface DeltaRound {
  mailbox: string
  folderId: string
  options: DeltaOptions
  entries: DeltaEntry[]
  /** The change sequence number when the round started: the next round reports what came after. */
  watermark: number
}

/** What a $skiptoken or $deltatoken stands for. */
type DeltaToken = { epoch: number; mailbox: string; folderId: string } & (
  | { kind: 'skip'; round: DeltaRound; offset: number }
  | { kind: 'delta'; since: number; options: DeltaOptions }
)

/** A message left a folder (moved out or deleted) at change `seq`, known there by `restId`. */
interface Removal {
  seq: number
  folderId: string
  restId: string
  immutableId: string
}

/** What a Graph mail route needs to know about the request it serves. */
interface GraphContext {
  host: string
  url: URL
  mailbox: FakeMailbox
  appId: string
  roles: Set<string>
  preferImmutable: boolean
  /** The Prefer request header. */
  prefer: string | undefined
  body: RequestBody
}

/** $select of a message request, as canonical property names; a 400 for names Graph does not know. */
function readSelect(url: URL): string[] | { refusal: FakeAnswer } | undefined {
  const raw = url.searchParams.get('$select')
  if (raw === null || !raw.trim()) return undefined
  const names: string[] = []
  for (const part of raw.split(',')) {
    const name = PROPERTY_BY_LOWERCASE.get(part.trim().toLowerCase())
    if (!name) {
      return { refusal: graphError(400, 'RequestBroker--ParseUri', `Could not find a property named '${part.trim()}' on type 'microsoft.graph.message'.`) }
    }
    if (!names.includes(name)) names.push(name)
  }
  return names
}

/** The options of a round's first delta request, which its links keep. */
function readDeltaOptions(url: URL): DeltaOptions | { refusal: FakeAnswer } {
  const select = readSelect(url)
  if (select && 'refusal' in select) return select
  const options: DeltaOptions = { orderDesc: false, ...(select ? { select } : {}) }
  const refuse = (message: string) => ({ refusal: graphError(400, 'ErrorInvalidUrlQuery', message) })
  const changeType = url.searchParams.get('changeType')
  if (changeType !== null) {
    if (changeType !== 'created' && changeType !== 'updated' && changeType !== 'deleted') {
      return refuse(`The changeType '${changeType}' is not one of created, updated, deleted.`)
    }
    options.changeType = changeType
  }
  const filter = url.searchParams.get('$filter')
  if (filter !== null) {
    const match = /^\s*receivedDateTime\s+(ge|gt)\s+(\S+)\s*$/i.exec(filter)
    const at = match ? Date.parse(match[2]!) : Number.NaN
    if (!match || Number.isNaN(at)) return refuse('Delta of messages supports only $filter=receivedDateTime ge {value} or receivedDateTime gt {value}.')
    options.filter = { op: match[1]!.toLowerCase() as 'ge' | 'gt', at }
  }
  const orderBy = url.searchParams.get('$orderby')
  if (orderBy !== null) {
    if (!/^\s*receivedDateTime\s+desc\s*$/i.test(orderBy)) return refuse('Delta of messages supports only $orderby=receivedDateTime desc.')
    options.orderDesc = true
  }
  if (url.searchParams.has('$search')) return refuse('Delta of messages does not support $search.')
  return options
}

export class FakeMicrosoft {
  readonly tenants = new Map<string, FakeTenant>()
  readonly tokenRequests: TokenRequestRecord[] = []
  readonly mailboxes = new Map<string, FakeMailbox>()
  readonly graphRequests: GraphRequestRecord[] = []
  /** Every message in every mailbox, keyed by immutable id (so by `id` too for messages created with immutable ids). */
  readonly messages = new Map<string, FakeStoredMessage>()
  /** Every Graph and Outlook request (not token requests) waits this long before it is answered. */
  latencyMs = 0
  /** Per mailbox (lowercase address), the most Graph/Outlook requests ever in flight at once. */
  readonly maxConcurrentPerMailbox = new Map<string, number>()
  /** Graph's MailboxConcurrency limit: a request beyond it is refused with 429 and Retry-After (0: no limit). */
  concurrencyLimit = 4
  /** Requests refused for being over concurrencyLimit, per mailbox. */
  readonly concurrencyRefusals = new Map<string, number>()
  /** Graph's per app and mailbox budget: this many requests in 10 minutes, then 429 with Retry-After (0: no limit). */
  requestsPer10Minutes = 10_000
  /** When each app's recent requests to each mailbox came (by `appId\nmailbox`), for requestsPer10Minutes. */
  private readonly recentRequests = new Map<string, number[]>()
  /** How long a subscription's validation request may take (Graph: 10 s). */
  validationTimeoutMs = 10_000
  /** How long a change notification's answer may take before the delivery counts as failed (Graph: 3 s). */
  notificationTimeoutMs = 3_000
  /** The longest subscription Graph grants on Outlook messages, in minutes from the request. */
  maxSubscriptionMinutes = 4230
  /** Whether a PATCH (renewal) validates the subscription's URLs again, as Graph does. */
  validateOnRenewal = true
  private readonly changeNotifications = new FakeSubscriptions({
    lookupMailbox: (addressOrId) => this.lookupMailbox(addressOrId),
    findFolder: (mailbox, idOrWellKnown) => this.findFolder(mailbox.folders, idOrWellKnown),
    etag: (message) => `W/"${this.changeKey(message)}"`,
    settings: () => ({
      validationTimeoutMs: this.validationTimeoutMs,
      notificationTimeoutMs: this.notificationTimeoutMs,
      maxExpirationMinutes: this.maxSubscriptionMinutes,
      validateOnRenewal: this.validateOnRenewal,
    }),
  })
  private tokenFaults: TokenFault[] = []
  private graphFaults: GraphFault[] = []
  private targetedFaults: { match: GraphFaultMatch; faults: GraphFault[] }[] = []
  private messagesByRestId = new Map<string, FakeStoredMessage>()
  /** Change sequence numbers, shared by all mailboxes: every store, move, update and delete takes the next. */
  private changeSeq = 0
  /** By immutable id: when the message entered its current folder, and when it last changed. */
  private changeState = new Map<string, { entered: number; changed: number }>()
  /** By mailbox address: messages that left a folder, for @removed in later delta rounds. */
  private removals = new Map<string, Removal[]>()
  private deltaTokens = new Map<string, DeltaToken>()
  /** By mailbox address: bumped by expireDeltaTokens, which voids every link handed out before. */
  private deltaEpochs = new Map<string, number>()
  /** Mailboxes whose next delta request repeats the page served before it. */
  private replayPending = new Set<string>()
  /** By `mailbox\nfolderId`: the items of the last delta page served, for replayNextDeltaPage. */
  private lastDeltaPage = new Map<string, unknown[]>()
  private uploadSessions = new Map<string, UploadSession>()
  private inFlight = new Map<string, number>()
  private verifiedTokens = new Map<string, TokenClaims>()
  /** Hosts that stand in for the Microsoft hosts of a cloud (a proxy, a sandbox): host[:port] -> cloud. */
  protected readonly standIns = new Map<string, FakeCloud>()
  private readonly servers: Server[] = []
  private readonly mailInFlight = new Set<Promise<undefined>>()

  /**
   * A real HTTPS server on 127.0.0.1 standing in for `cloud`, with a certificate from a private
   * CA (`caPem`) that only a client told to trust it accepts: a new one, or the one given.
   */
  async listen(
    cloud: FakeCloud = 'global',
    options: { port?: number; certificate?: { caPem: string; certPem: string; keyPem: string } } = {},
  ): Promise<{ host: string; caPem: string; close(): Promise<void> }> {
    const certificate = options.certificate ?? makeServerCertificate(['127.0.0.1', 'localhost'])
    const server = createServer({ key: certificate.keyPem, cert: certificate.certPem }, (request, response) => {
      const chunks: Buffer[] = []
      request.on('data', (chunk: Buffer) => chunks.push(chunk))
      request.on('end', () => {
        const raw = Buffer.concat(chunks)
        const method = request.method ?? 'GET'
        this.handle(host, method, request.url ?? '/', method === 'PUT' ? raw : raw.toString('utf8'), request.headers).then(
          (answer) => {
            if (answer === 'network') return void request.socket.destroy()
            const body =
              answer.body === undefined || answer.body === ''
                ? ''
                : typeof answer.body === 'string' || Buffer.isBuffer(answer.body)
                  ? answer.body
                  : JSON.stringify(answer.body)
            response.writeHead(answer.status, answer.headers ?? {})
            response.end(body)
          },
          () => request.socket.destroy(),
        )
      })
    })
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(options.port ?? 0, '127.0.0.1', resolve))
    const host = `127.0.0.1:${(server.address() as AddressInfo).port}`
    this.standIns.set(host, cloud)
    this.servers.push(server)
    return {
      host,
      caPem: certificate.caPem,
      close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    }
  }

  /** Closes the servers `listen` opened. */
  stop(): void {
    for (const server of this.servers.splice(0)) server.close()
  }

  /** A stand-in host's request, routed by path as the cloud's hosts would serve it. */
  protected async handle(host: string, method: string, uri: string, body: RequestBody, headers: RequestHeaders): Promise<'network' | FakeAnswer> {
    const path = uri.split('?')[0]!
    const tokenPath = /^\/([^/]+)\/oauth2\/v2\.0\/token$/.exec(path)
    if (method === 'POST' && tokenPath) {
      const result = await this.token(host, tokenPath[1]!, typeof body === 'string' ? body : new URLSearchParams(body as Record<string, string>).toString())
      if (result === 'network') return 'network'
      const contentType = 'contentType' in result && result.contentType ? result.contentType : 'application/json; charset=utf-8'
      return { status: result.status, body: result.body, headers: { 'content-type': contentType } }
    }
    if (path.startsWith('/v1.0/')) return this.serve('graph', host, method, uri, body, headers)
    if (path.startsWith('/api/')) return this.serve('outlook', host, method, uri, body, headers)
    return graphError(404, 'NotFound', `The fake serves nothing at ${method} ${path}.`)
  }

  /** The Microsoft host a request to `host` is for: itself, or the cloud's host a stand-in replaces. */
  private canonical(host: string, service: 'authority' | 'graph' | 'outlook'): string {
    const cloud = this.standIns.get(host)
    return cloud ? CLOUD_HOSTS[cloud][service] : host
  }

  addTenant(options: { id?: string; domains?: string[]; cloud?: FakeCloud } = {}): FakeTenant {
    const tenant: FakeTenant = {
      id: options.id ?? randomUUID(),
      cloud: options.cloud ?? 'global',
      domains: options.domains ?? [],
      apps: new Map(),
    }
    this.tenants.set(tenant.id, tenant)
    return tenant
  }

  registerApp(
    tenant: FakeTenant,
    options: { clientId?: string; roles?: string[]; secrets?: FakeSecret[]; certificates?: string[] } = {},
  ): FakeApp {
    const app: FakeApp = {
      clientId: options.clientId ?? randomUUID(),
      displayName: 'Mailgate',
      secrets: options.secrets ?? [],
      certificates: options.certificates ?? [],
      roles: options.roles ?? ['Mail.ReadWrite', 'Mail.Send'],
    }
    tenant.apps.set(app.clientId, app)
    return app
  }

  /**
   * A shared mailbox with the usual well-known folders and, to exercise paging, more
   * top-level folders than Graph returns in one page.
   */
  addMailbox(tenant: FakeTenant, address: string, options: { aliases?: string[]; extraTopLevel?: number; stableIds?: boolean } = {}): FakeMailbox {
    // Stable ids (the sandbox) stay the same across restarts, so a client's saved folder ids stay valid.
    const idFor = (name: string) => (options.stableIds ? createHash('sha256').update(`${address.toLowerCase()}/${name}`).digest('hex').slice(0, 32) : randomUUID().replaceAll('-', ''))
    const folder = (displayName: string, wellKnownName?: string): FakeFolder => ({
      id: `AAMk${idFor(displayName)}`,
      displayName,
      wellKnownName,
      children: [],
    })
    const folders = [
      folder('Inbox', 'inbox'),
      folder('Sent Items', 'sentitems'),
      folder('Deleted Items', 'deleteditems'),
      folder('Drafts', 'drafts'),
      folder('Junk Email', 'junkemail'),
      folder('Archive', 'archive'),
      folder('Outbox', 'outbox'),
    ]
    for (let i = 1; i <= (options.extraTopLevel ?? 6); i++) folders.push(folder(`Project ${i}`))
    const mailbox: FakeMailbox = {
      id: options.stableIds ? idFor('').replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, '$1-$2-$3-$4-$5') : randomUUID(),
      address: address.toLowerCase(),
      tenantId: tenant.id,
      displayName: address.split('@')[0]!,
      folders,
      sendAs: new Set((options.aliases ?? []).map((alias) => alias.toLowerCase())),
      sent: [],
      received: [],
    }
    this.mailboxes.set(mailbox.address, mailbox)
    return mailbox
  }

  /** Creates the folders of a path such as `Inbox/Invoices/2026` (existing ones are reused). */
  addFolder(mailbox: FakeMailbox, path: string): FakeFolder {
    let siblings = mailbox.folders
    let current: FakeFolder | undefined
    for (const name of path.split('/')) {
      current = siblings.find((f) => f.displayName.toLowerCase() === name.toLowerCase())
      if (!current) {
        current = { id: `AAMk${randomUUID().replaceAll('-', '')}`, displayName: name, children: [] }
        siblings.push(current)
      }
      siblings = current.children
    }
    return current!
  }

  /** A message by the id a client would use: its immutable id or its current REST id. */
  findMessage(id: string): FakeStoredMessage | undefined {
    return this.messages.get(id) ?? this.messagesByRestId.get(id)
  }

  /**
   * A folder by id, well-known name ('inbox', 'junkemail', ...) or path from the top
   * ('Inbox/Invoices/2026', display names case-insensitive; the first segment may be a
   * well-known name too).
   */
  folder(mailbox: FakeMailbox | string, pathOrId: string): FakeFolder | undefined {
    const box = this.mailboxOf(mailbox)
    const direct = this.findFolder(box.folders, pathOrId)
    if (direct) return direct
    const [first, ...rest] = pathOrId.split('/').filter(Boolean)
    if (!first) return undefined
    let current = box.folders.find((f) => f.wellKnownName === first.toLowerCase() || f.displayName.toLowerCase() === first.toLowerCase())
    for (const name of rest) current = current?.children.find((f) => f.displayName.toLowerCase() === name.toLowerCase())
    return current
  }

  /**
   * Puts mail into a folder of `mailbox` (default its inbox), as if it had arrived there:
   * structured fields, or `{ mime }` raw RFC 5322 read the way Exchange reads it (subject,
   * addresses, Message-ID, Date, headers, HTML or text body, attachments), whose bytes $value
   * then answers verbatim. Appears in the folder's delta like any new mail. Not recorded in
   * `mailbox.received`, which lists what fake mailboxes sent each other.
   */
  async deliver(mailbox: FakeMailbox | string, input: FakeDeliveryInput | { mime: Buffer | string }, options: FakeDeliveryOptions = {}): Promise<FakeStoredMessage> {
    const box = this.mailboxOf(mailbox)
    const where = this.folder(box, options.folder ?? 'inbox')
    if (!where) throw new Error(`The fake mailbox ${box.address} has no folder '${options.folder}'; create it with addFolder first`)
    const receivedAt = (options.receivedAt ?? new Date()).toISOString()
    const names: Record<string, string> = {}
    const address = (value: string | MimeAddress): string => {
      const parsed = typeof value === 'string' ? parseAddress(value) : value
      if (parsed.name) names[parsed.address.toLowerCase()] = parsed.name
      return parsed.address
    }
    if ('mime' in input) {
      const raw = Buffer.isBuffer(input.mime) ? input.mime : Buffer.from(input.mime, 'utf8')
      const parsed = await parseMime(raw)
      const from = parsed.from ? address(parsed.from).toLowerCase() : undefined
      const sender = parsed.sender ? address(parsed.sender).toLowerCase() : undefined
      return this.store(box, where, {
        isDraft: false,
        isRead: where.wellKnownName === 'sentitems' || where.wellKnownName === 'drafts',
        subject: parsed.subject,
        body: parsed.body,
        from,
        ...(sender && sender !== from ? { sender } : {}),
        to: parsed.to.map(address),
        cc: parsed.cc.map(address),
        bcc: parsed.bcc.map(address),
        replyTo: parsed.replyTo.map(address),
        importance: parsed.importance,
        internetMessageHeaders: parsed.headers,
        internetMessageId: parsed.internetMessageId ?? newInternetMessageId(),
        sentDateTime: parsed.sentDateTime ?? receivedAt,
        receivedDateTime: receivedAt,
        createdDateTime: receivedAt,
        attachments: parsed.attachments.map(({ content, ...rest }) => ({ id: newAttachmentId(), ...rest, content })),
        displayNames: names,
        mime: raw,
      })
    }
    const from = address(input.from ?? 'Alice Customer <alice@fabrikam.example>').toLowerCase()
    const sender = input.sender ? address(input.sender).toLowerCase() : undefined
    const body = typeof input.body === 'string' ? { contentType: 'text' as const, content: input.body } : { contentType: input.body?.contentType ?? 'text', content: input.body?.content ?? '' }
    return this.store(box, where, {
      isDraft: input.isDraft ?? false,
      isRead: input.isRead ?? (where.wellKnownName === 'sentitems' || where.wellKnownName === 'drafts'),
      subject: input.subject ?? '',
      body,
      from,
      ...(sender && sender !== from ? { sender } : {}),
      to: (input.to ?? [box.address]).map(address),
      cc: (input.cc ?? []).map(address),
      bcc: (input.bcc ?? []).map(address),
      replyTo: (input.replyTo ?? []).map(address),
      importance: input.importance ?? 'normal',
      internetMessageHeaders: input.headers ?? [],
      internetMessageId: input.internetMessageId ?? newInternetMessageId(),
      sentDateTime: (input.sentAt ?? new Date(receivedAt)).toISOString(),
      receivedDateTime: receivedAt,
      createdDateTime: receivedAt,
      attachments: (input.attachments ?? []).map((attachment) => {
        const content = Buffer.isBuffer(attachment.content) ? attachment.content : Buffer.from(attachment.content)
        return {
          id: newAttachmentId(),
          name: attachment.name,
          contentType: attachment.contentType ?? 'application/octet-stream',
          size: content.length,
          sha256: createHash('sha256').update(content).digest('hex'),
          isInline: attachment.isInline === true,
          ...(attachment.contentId ? { contentId: attachment.contentId } : {}),
          content,
        }
      }),
      displayNames: names,
    })
  }

  /** The messages in a folder (path, well-known name or id), oldest received first. */
  folderMessages(mailbox: FakeMailbox | string, folder: string): FakeStoredMessage[] {
    const box = this.mailboxOf(mailbox)
    const where = this.folder(box, folder)
    if (!where) throw new Error(`The fake mailbox ${box.address} has no folder '${folder}'`)
    return this.messagesIn(box.address, where.id).sort((a, b) => a.receivedDateTime.localeCompare(b.receivedDateTime))
  }

  /** A change made in the mailbox itself (say, read in Outlook): shows up in delta as an updated item. */
  updateMessage(message: FakeStoredMessage, changes: Partial<Pick<FakeStoredMessage, 'isRead' | 'subject' | 'importance' | 'body'>>): FakeStoredMessage {
    Object.assign(message, changes)
    this.touch(message)
    return message
  }

  /** A move made in the mailbox itself: new REST id, same immutable id, @removed from the old folder's delta. */
  moveMessage(message: FakeStoredMessage, folder: string): FakeStoredMessage {
    const destination = this.folder(message.mailbox, folder)
    if (!destination) throw new Error(`The fake mailbox ${message.mailbox} has no folder '${folder}'`)
    this.move(message, destination)
    return message
  }

  /** A deletion made in the mailbox itself: @removed in the folder's next delta round. */
  deleteMessage(message: FakeStoredMessage): void {
    this.forget(message)
  }

  /**
   * Every delta link (next and delta) handed out for `mailbox` so far answers 410 Gone with
   * SyncStateNotFound from now on, as Graph does when it dropped the sync state: the client
   * must start again without a token.
   */
  expireDeltaTokens(mailbox: FakeMailbox | string): void {
    const address = this.mailboxOf(mailbox).address
    this.deltaEpochs.set(address, (this.deltaEpochs.get(address) ?? 0) + 1)
  }

  /**
   * The next delta request for `mailbox` (to a folder that already served a page) answers
   * the items of the page served before it again, ahead of its own: Graph replays, and a
   * consumer has to be idempotent.
   */
  replayNextDeltaPage(mailbox: FakeMailbox | string): void {
    this.replayPending.add(this.mailboxOf(mailbox).address)
  }

  /**
   * How the fake reaches the subscriber's notification URLs (validation requests, change and
   * lifecycle notifications): tests wire it to the app's `inject`. Without one, creating a
   * subscription fails its validation.
   */
  setNotificationTransport(send: NotificationTransport | undefined): void {
    this.changeNotifications.setTransport(send)
  }

  /** Every POST of change notifications, in the order sent, with its answer (status, ms, ok). */
  get notificationDeliveries(): NotificationDelivery[] {
    return this.changeNotifications.notificationDeliveries
  }

  /** Every validation request (`?validationToken=`) sent while creating or renewing subscriptions. */
  get validationRequests(): ValidationRecord[] {
    return this.changeNotifications.validationRequests
  }

  /** Every lifecycle notification sent by sendLifecycleEvent, with its answer. */
  get lifecycleDeliveries(): LifecycleDelivery[] {
    return this.changeNotifications.lifecycleDeliveries
  }

  /** Waits until every queued change notification has been sent and answered (or timed out). */
  flushNotifications(): Promise<void> {
    return this.changeNotifications.flush()
  }

  /** The live subscriptions (all, or of one mailbox by address or id), as stored. */
  subscriptions(mailbox?: FakeMailbox | string): FakeSubscription[] {
    return this.changeNotifications.list(typeof mailbox === 'object' ? mailbox.address : mailbox)
  }

  /**
   * Sends a lifecycle notification to the subscription's lifecycleNotificationUrl and returns
   * the answer; `subscriptionRemoved` removes the subscription first, as Graph has by then.
   */
  sendLifecycleEvent(subscriptionId: string, event: LifecycleEvent): Promise<TransportAnswer> {
    return this.changeNotifications.lifecycle(subscriptionId, event)
  }

  /** Sends any payload (JSON unless a string), e.g. a forged notification, to `url` through the transport. */
  postNotification(url: string, body: unknown): Promise<TransportAnswer> {
    return this.changeNotifications.post(url, body)
  }

  /** The subscription expires now: the API answers 404 for it and it sends nothing more. */
  expireSubscription(subscriptionId: string): void {
    this.changeNotifications.expire(subscriptionId)
  }

  private mailboxOf(mailbox: FakeMailbox | string): FakeMailbox {
    const found = typeof mailbox === 'string' ? this.lookupMailbox(mailbox) : mailbox
    if (!found) throw new Error(`The fake has no mailbox ${String(mailbox)}`)
    return found
  }

  /**
   * The next Graph and Outlook requests fail this way, in order; one fault per request.
   * Requests that take a fault from failGraphRequests leave this queue alone.
   */
  failNextGraphRequests(...faults: GraphFault[]): void {
    this.graphFaults.push(...faults)
  }

  /**
   * Each later Graph or Outlook request matching `match` (method and URL pathname) takes the
   * next of these faults, in order; other requests pass untouched.
   */
  failGraphRequests(match: GraphFaultMatch, ...faults: GraphFault[]): void {
    if (faults.length) this.targetedFaults.push({ match: { ...match, method: match.method?.toUpperCase() }, faults: [...faults] })
  }

  /** The next token requests fail this way, in order; one fault per request. */
  failNextTokenRequests(...faults: TokenFault[]): void {
    this.tokenFaults.push(...faults)
  }

  /** Faults still waiting to be taken: Graph (queued and targeted) and token. */
  pendingFaults(): { graph: number; token: number } {
    return { graph: this.graphFaults.length + this.targetedFaults.reduce((sum, { faults }) => sum + faults.length, 0), token: this.tokenFaults.length }
  }

  /** Forgets every fault not yet taken. */
  clearFaults(): void {
    this.graphFaults = []
    this.targetedFaults = []
    this.tokenFaults = []
  }

  /** Like Entra: a tenant exists only in its own cloud. */
  private findTenant(host: string, idOrDomain: string): FakeTenant | undefined {
    const key = idOrDomain.toLowerCase()
    for (const tenant of this.tenants.values()) {
      if (CLOUD_HOSTS[tenant.cloud].authority !== host) continue
      if (tenant.id === key || tenant.domains.some((domain) => domain.toLowerCase() === key)) return tenant
    }
    return undefined
  }

  protected async token(host: string, tenantKey: string, rawBody: string) {
    const form = Object.fromEntries(new URLSearchParams(rawBody))
    const record: TokenRequestRecord = {
      host,
      tenant: tenantKey,
      clientId: form.client_id,
      grant: form.grant_type,
      method: form.client_secret ? 'secret' : form.client_assertion ? 'assertion' : 'none',
      outcome: 'pending',
    }
    this.tokenRequests.push(record)
    const fault = this.tokenFaults.shift()
    if (fault?.kind === 'delay') await new Promise((resolve) => setTimeout(resolve, fault.ms))
    if (fault?.kind === 'network') {
      record.outcome = 'network'
      return 'network' as const
    }
    if (fault?.kind === 'status') {
      record.outcome = `status ${fault.status}`
      return {
        status: fault.status,
        body: fault.body ?? { error: 'server_error', error_description: 'AADSTS90033: A transient error has occurred.' },
        contentType: fault.contentType,
      }
    }
    const outcome = this.issue(host, tenantKey, form)
    record.outcome = outcome.status === 200 ? 'issued' : String((outcome.body as { error_codes?: number[] }).error_codes?.[0])
    return outcome
  }

  private issue(host: string, tenantKey: string, form: Record<string, string>) {
    if (form.grant_type !== 'client_credentials') {
      return entraError(400, 'unsupported_grant_type', 70003, 'The app requested an unsupported grant type.')
    }
    const tenant = this.findTenant(this.canonical(host, 'authority'), tenantKey)
    if (!tenant) {
      return entraError(400, 'invalid_request', 90002, `Tenant '${tenantKey}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.`)
    }
    const app = form.client_id ? tenant.apps.get(form.client_id.toLowerCase()) : undefined
    if (!app) {
      return entraError(400, 'unauthorized_client', 700016, `Application with identifier '${form.client_id}' was not found in the directory '${tenant.id}'.`)
    }
    if (form.client_secret !== undefined) {
      const secret = app.secrets.find((candidate) => candidate.value === form.client_secret)
      if (!secret) {
        return entraError(401, 'invalid_client', 7000215, 'Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.')
      }
      if (secret.expiresAt <= new Date()) {
        return entraError(401, 'invalid_client', 7000222, `The provided client secret keys for app '${app.clientId}' are expired.`)
      }
    } else if (form.client_assertion !== undefined) {
      const problem = this.checkAssertion(host, tenantKey, app, form)
      if (problem) return problem
    } else {
      return entraError(401, 'invalid_client', 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
    }
    // Tokens are for the Graph host of the tenant's cloud and no other.
    if (form.scope !== `https://${CLOUD_HOSTS[tenant.cloud].graph}/.default`) {
      return entraError(400, 'invalid_scope', 1002012, `The provided value for scope ${form.scope} is not valid.`)
    }
    const now = Math.floor(Date.now() / 1000)
    const header = base64urlJson({ alg: 'HS256', typ: 'JWT' })
    const payload = base64urlJson({
      aud: form.scope.replace('/.default', ''),
      iss: `https://sts.windows.net/${tenant.id}/`,
      iat: now,
      nbf: now,
      exp: now + 3599,
      appid: app.clientId,
      tid: tenant.id,
      roles: app.roles,
    })
    const signature = createHmac('sha256', TOKEN_SIGNING_KEY).update(`${header}.${payload}`).digest('base64url')
    return {
      status: 200,
      body: { token_type: 'Bearer', expires_in: 3599, ext_expires_in: 3599, access_token: `${header}.${payload}.${signature}` },
    }
  }

  /**
   * What every Graph and Outlook request goes through: its record, the per-mailbox count of
   * requests in flight, latency, and faults around the actual handling.
   */
  protected async serve(
    service: 'graph' | 'outlook',
    host: string,
    method: string,
    uri: string,
    body: RequestBody,
    headers: RequestHeaders,
  ): Promise<'network' | FakeAnswer> {
    const record: GraphRequestRecord = { host, method, path: new URL(uri, `https://${host}`).pathname, at: Date.now(), appId: undefined, status: 0 }
    host = this.canonical(host, service)
    const url = new URL(uri, `https://${host}`)
    const prefer = header(headers, 'prefer')
    if (prefer !== undefined) record.prefer = prefer
    if (url.search) record.query = url.search
    if (service === 'outlook') record.hadAuthorization = header(headers, 'authorization') !== undefined
    this.graphRequests.push(record)

    const mailboxKey = service === 'graph' ? this.graphMailboxKey(url) : this.outlookMailboxKey(url)
    const inFlight = (this.inFlight.get(mailboxKey) ?? 0) + 1
    this.inFlight.set(mailboxKey, inFlight)
    if (inFlight > (this.maxConcurrentPerMailbox.get(mailboxKey) ?? 0)) this.maxConcurrentPerMailbox.set(mailboxKey, inFlight)
    try {
      if (this.latencyMs > 0) await sleep(this.latencyMs)
      if (mailboxKey && this.concurrencyLimit > 0 && inFlight > this.concurrencyLimit) {
        this.concurrencyRefusals.set(mailboxKey, (this.concurrencyRefusals.get(mailboxKey) ?? 0) + 1)
        const answer = faultAnswer({ status: 429, retryAfter: 1 })
        record.status = answer.status
        return answer
      }
      const overBudget = mailboxKey ? this.overRequestBudget(mailboxKey, headers) : undefined
      if (overBudget) {
        record.status = overBudget.status
        return overBudget
      }
      const fault = this.takeFault(method, url.pathname)
      if (fault) record.fault = fault.kind
      if (fault?.kind === 'delay') await sleep(fault.ms)
      if (fault?.kind === 'network') {
        record.status = -1
        return 'network'
      }
      if (fault?.kind === 'status') {
        const answer = faultAnswer(fault)
        record.status = answer.status
        return answer
      }

      const answer = service === 'graph' ? await this.graph(host, method, url, body, headers, record) : this.outlook(host, method, url, body, headers, record)
      record.status = answer.status
      if (fault?.kind !== 'lost-response') return answer
      record.processedStatus = answer.status
      if (fault.status === undefined) {
        record.status = -1
        return 'network'
      }
      const lost = faultAnswer({ ...fault, status: fault.status })
      record.status = lost.status
      return lost
    } finally {
      const left = this.inFlight.get(mailboxKey)! - 1
      if (left > 0) this.inFlight.set(mailboxKey, left)
      else this.inFlight.delete(mailboxKey)
    }
  }

  private takeFault(method: string, path: string): GraphFault | undefined {
    for (const [index, targeted] of this.targetedFaults.entries()) {
      const { method: wanted, path: pattern } = targeted.match
      if (wanted && wanted !== method) continue
      if (pattern) {
        pattern.lastIndex = 0 // a /g or /y pattern would otherwise remember the last match
        if (!pattern.test(path)) continue
      }
      const fault = targeted.faults.shift()
      if (!targeted.faults.length) this.targetedFaults.splice(index, 1)
      return fault
    }
    return this.graphFaults.shift()
  }

  /** A mailbox by address (any case) or by id, as Graph accepts either in /users/{id}. */
  private lookupMailbox(addressOrId: string): FakeMailbox | undefined {
    return this.mailboxes.get(addressOrId.toLowerCase()) ?? [...this.mailboxes.values()].find((mailbox) => mailbox.id === addressOrId)
  }

  private graphMailboxKey(url: URL): string {
    const [, collection, key] = keySegments(url.pathname.split('/').slice(1).map(safeDecode))
    if (collection !== 'users' || !key) return ''
    return this.lookupMailbox(key)?.address ?? key.toLowerCase()
  }

  private outlookMailboxKey(url: URL): string {
    const session = this.uploadSessionFor(url)
    if (session) return session.mailbox
    const mailboxId = /Users\('([^'@]+)@/i.exec(safeDecode(url.pathname))?.[1]
    return (mailboxId && this.lookupMailbox(mailboxId)?.address) || ''
  }

  private async graph(host: string, method: string, url: URL, body: RequestBody, headers: RequestHeaders, record: GraphRequestRecord): Promise<FakeAnswer> {
    const claims = this.verifyToken((header(headers, 'authorization') ?? '').replace(/^Bearer /, ''))
    if (!claims) return graphError(401, 'InvalidAuthenticationToken', 'Access token validation failure.')
    if (claims.aud !== `https://${host}`) {
      return graphError(401, 'InvalidAuthenticationToken', 'Access token validation failure. Invalid audience.')
    }
    record.appId = claims.appid

    const segments = keySegments(url.pathname.replace(/^\/v1\.0\//, '').split('/').map(safeDecode))
    if (segments[0] === 'subscriptions') {
      if ((method === 'POST' || method === 'PATCH') && requestBytes(body) > MAX_REQUEST_BYTES) return tooLarge()
      const caller = {
        host,
        appId: claims.appid,
        tenantId: claims.tid,
        roles: new Set(claims.roles),
        preferImmutable: /IdType\s*=\s*"?ImmutableId"?/i.test(record.prefer ?? ''),
      }
      const answer = await this.changeNotifications.handle(caller, method, segments.slice(1), body)
      return answer ?? graphError(400, 'BadRequest', `The fake does not serve ${method} ${url.pathname}.`)
    }
    if (segments[0] !== 'users' || !segments[1]) return graphError(400, 'BadRequest', 'Resource not found for the segment.')
    const mailbox = this.lookupMailbox(segments[1])
    if (!mailbox || mailbox.tenantId !== claims.tid) {
      return graphError(404, 'ErrorInvalidUser', `The requested user '${segments[1]}' is invalid.`)
    }
    if (mailbox.allowedApps && !mailbox.allowedApps.has(claims.appid)) {
      return graphError(403, 'ErrorAccessDenied', 'Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings.')
    }
    if ((method === 'POST' || method === 'PATCH') && requestBytes(body) > MAX_REQUEST_BYTES) return tooLarge()

    const context: GraphContext = {
      host,
      url,
      mailbox,
      appId: claims.appid,
      roles: new Set(claims.roles),
      preferImmutable: /IdType\s*=\s*"?ImmutableId"?/i.test(record.prefer ?? ''),
      prefer: record.prefer,
      body,
    }
    const [, , resource, ...rest] = segments
    let answer: FakeAnswer | undefined
    if (resource === 'mailFolders') answer = this.mailFolders(context, method, rest)
    else if (method === 'POST' && resource === 'sendMail' && !rest.length) answer = this.sendMail(context)
    else if (resource === 'messages') answer = this.messageRoute(context, method, rest)
    return answer ?? graphError(400, 'BadRequest', `The fake does not serve ${method} ${url.pathname}.`)
  }

  private mailFolders(context: GraphContext, method: string, [folderId, navigation, ...more]: string[]): FakeAnswer | undefined {
    const { url, mailbox, roles } = context
    if (navigation === 'messages' && folderId) {
      // Reading a folder's messages, or a message addressed through its folder.
      const delta = more.length === 1 && /^(microsoft\.graph\.)?delta$/i.test(more[0]!)
      if (method === 'GET' && (delta || !more.length)) {
        if (!canRead(roles)) return denied()
        const folder = this.findFolder(mailbox.folders, folderId)
        if (!folder) return notFound()
        return delta ? this.messageDelta(context, folder) : this.listMessages(context, folder)
      }
      return more.length ? this.messageRoute(context, method, more) : undefined
    }
    if (method !== 'GET' || more.length) return undefined
    if (!canRead(roles)) return denied()
    const page = (items: FakeFolder[]) => {
      const top = Number(url.searchParams.get('$top') ?? 10)
      const skip = Number(url.searchParams.get('$skip') ?? 0)
      const body: Record<string, unknown> = { value: items.slice(skip, skip + top).map((f) => this.folderJson(f)) }
      if (skip + top < items.length) body['@odata.nextLink'] = `https://${url.host}${url.pathname}?$top=${top}&$skip=${skip + top}`
      return reply(200, body)
    }
    if (!folderId) return page(mailbox.folders)
    const target = this.findFolder(mailbox.folders, folderId)
    if (!target) return notFound()
    if (navigation === 'childFolders') return page(target.children)
    if (!navigation) return reply(200, this.folderJson(target))
    return undefined
  }

  private sendMail({ mailbox, roles, body }: GraphContext): FakeAnswer {
    if (!roles.has('Mail.Send')) return denied()
    const request = jsonBody(body) as { message?: GraphMessageInput; saveToSentItems?: boolean } | undefined
    if (!request) return unreadableJson()
    const input = request.message ?? {}
    if (!input.toRecipients?.length && !input.ccRecipients?.length && !input.bccRecipients?.length) {
      return graphError(400, 'ErrorInvalidRecipients', 'At least one recipient is not valid.')
    }
    const content = this.readMessage(input)
    if ('refusal' in content) return content.refusal
    const from = content.from ?? mailbox.address
    if (!maySendAs(mailbox, from)) return sendAsDenied()
    const savedToSentItems = request.saveToSentItems !== false
    const sent = { ...content, from, internetMessageId: newInternetMessageId(), sentDateTime: new Date().toISOString() }
    // Graph keeps a copy in Sent Items, under an id the caller never learns.
    if (savedToSentItems) this.store(mailbox, this.wellKnown(mailbox, 'sentitems'), { ...sent, isDraft: false, isRead: true })
    this.recordSend(mailbox, sent, { via: 'sendMail', savedToSentItems })
    return reply(202)
  }

  /** /users/{mb}/messages[/{id}[/...]]; undefined for routes the fake does not serve. */
  private messageRoute(context: GraphContext, method: string, [id, navigation, action, ...beyond]: string[]): FakeAnswer | undefined {
    const { roles, mailbox } = context
    if (!id) return method === 'POST' ? this.createDraft(context) : undefined
    if (beyond.length) return undefined
    const stored = this.findMessage(id)
    const message = stored?.mailbox === mailbox.address ? stored : undefined
    // Like Graph, permissions are checked before the message is looked up.
    if (!navigation && method === 'GET') {
      if (!canRead(roles)) return denied()
      const select = readSelect(context.url)
      if (select && 'refusal' in select) return select.refusal
      return message ? reply(200, this.messageJson(message, context, select)) : notFound()
    }
    if (navigation === '$value' && !action && method === 'GET') {
      if (!canRead(roles)) return denied()
      if (!message) return notFound()
      // Like Graph: the MIME comes as text/plain.
      return { status: 200, body: message.mime ?? buildMime(this.mimeSource(message)), headers: { 'content-type': 'text/plain' } }
    }
    if (!navigation && method === 'PATCH') return this.updateFromRequest(context, message)
    if (/^(microsoft\.graph\.)?move$/i.test(navigation ?? '') && !action && method === 'POST') return this.moveFromRequest(context, message)
    if (!navigation && method === 'DELETE') {
      if (!roles.has('Mail.ReadWrite')) return denied()
      if (!message) return notFound()
      // Graph's DELETE takes the message out of the folder (into the dumpster, which the API does not show).
      this.forget(message)
      return reply(204)
    }
    if (navigation === 'attachments' && !action && method === 'GET') {
      if (!canRead(roles)) return denied()
      return message ? reply(200, { value: message.attachments.map((a) => attachmentJson(a)) }) : notFound()
    }
    if (navigation === 'attachments' && method === 'POST' && (!action || /^(microsoft\.graph\.)?createUploadSession$/i.test(action))) {
      if (!roles.has('Mail.ReadWrite')) return denied()
      if (!message) return notFound()
      if (!message.isDraft) return graphError(400, 'ErrorInvalidOperation', 'Attachments can only be added to a draft message.')
      return action ? this.createUploadSession(context, message, id) : this.addAttachment(context, message)
    }
    if (/^(microsoft\.graph\.)?send$/i.test(navigation ?? '') && !action && method === 'POST') return this.sendDraft(context, message)
    return undefined
  }

  private createDraft(context: GraphContext): FakeAnswer {
    if (!context.roles.has('Mail.ReadWrite')) return denied()
    const input = jsonBody(context.body) as GraphMessageInput | undefined
    if (!input) return unreadableJson()
    const content = this.readMessage(input)
    if ('refusal' in content) return content.refusal
    const draft = this.store(context.mailbox, this.wellKnown(context.mailbox, 'drafts'), {
      ...content,
      isDraft: true,
      isRead: true,
      internetMessageId: newInternetMessageId(),
    })
    if (context.preferImmutable) draft.id = draft.immutableId
    return reply(201, this.messageJson(draft, context))
  }

  private sendDraft({ mailbox, roles }: GraphContext, message: FakeStoredMessage | undefined): FakeAnswer {
    if (!roles.has('Mail.Send')) return denied()
    if (!message) return notFound()
    if (!message.isDraft) return graphError(400, 'ErrorInvalidOperation', 'The message has already been sent; only draft messages can be sent.')
    if (!message.to.length && !message.cc.length && !message.bcc.length) {
      return graphError(400, 'ErrorInvalidRecipients', 'At least one recipient is required, but none were found.')
    }
    const from = message.from ?? mailbox.address
    if (!maySendAs(mailbox, from)) return sendAsDenied()
    message.isDraft = false
    message.from = from
    message.sentDateTime = new Date().toISOString()
    const sentBy = message.id
    this.move(message, this.wellKnown(mailbox, 'sentitems'))
    this.recordSend(mailbox, { ...message, from, sentDateTime: message.sentDateTime }, { via: 'draft', savedToSentItems: true, messageId: sentBy })
    return reply(202)
  }

  private addAttachment(context: GraphContext, message: FakeStoredMessage): FakeAnswer {
    const input = jsonBody(context.body) as GraphAttachmentInput | undefined
    if (!input) return unreadableJson()
    const attachment = readFileAttachment(input)
    if ('refusal' in attachment) return attachment.refusal
    message.attachments.push(attachment)
    this.touch(message)
    return reply(201, attachmentJson(attachment))
  }

  private createUploadSession({ host, mailbox, appId, body }: GraphContext, message: FakeStoredMessage, requestedId: string): FakeAnswer {
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
    const outlookHost = CLOUD_HOSTS[this.tenants.get(mailbox.tenantId)?.cloud ?? 'global'].outlook
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
    this.uploadSessions.set(session.id, session)
    return reply(201, {
      '@odata.context': `https://${host}/v1.0/$metadata#microsoft.graph.uploadSession`,
      uploadUrl: `${session.messageUrl}/AttachmentSessions('${session.id}')?authtoken=${session.authToken}`,
      expirationDateTime: session.expirationDateTime,
      nextExpectedRanges: ['0-'],
    })
  }

  private uploadSessionFor(url: URL): UploadSession | undefined {
    const id = /AttachmentSessions\('([^']+)'\)/i.exec(safeDecode(url.pathname))?.[1]
    return id ? this.uploadSessions.get(id) : undefined
  }

  /** The pre-authenticated upload URLs on the Outlook host: PUT a byte range, or DELETE to cancel. */
  private outlook(host: string, method: string, url: URL, body: RequestBody, headers: RequestHeaders, record: GraphRequestRecord): FakeAnswer {
    const session = this.uploadSessionFor(url)
    if (session) record.appId = session.appId
    // The URL carries its own token; a Graph bearer token sent along is rejected for its audience.
    if (record.hadAuthorization) {
      const audience = this.verifyToken((header(headers, 'authorization') ?? '').replace(/^Bearer /, ''))?.aud ?? 'https://graph.microsoft.com'
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
      this.uploadSessions.delete(session.id)
      return reply(204)
    }
    const message = this.messages.get(session.messageKey)
    if (!message) {
      this.uploadSessions.delete(session.id)
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
    this.uploadSessions.delete(session.id)
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
    this.touch(message)
    return reply(201, '', { location: `${session.messageUrl}/Attachments('${attachment.id}')` })
  }

  /** Validates and normalises a message the way sendMail and POST /messages accept it. */
  private readMessage(input: GraphMessageInput): MessageContent | { refusal: FakeAnswer } {
    const badHeader = input.internetMessageHeaders?.find((h) => !/^x-/i.test(h.name))
    if (badHeader) {
      return { refusal: graphError(400, 'InvalidInternetMessageHeader', `The internet message header name '${badHeader.name}' should start with 'x-' or 'X-'.`) }
    }
    const importance = (input.importance ?? 'normal').toLowerCase()
    if (importance !== 'low' && importance !== 'normal' && importance !== 'high') {
      return { refusal: graphError(400, 'RequestBodyRead', `Cannot convert the literal '${input.importance}' to the expected type 'microsoft.graph.importance'.`) }
    }
    const contentType = (input.body?.contentType ?? 'text').toLowerCase()
    if (contentType !== 'text' && contentType !== 'html') {
      return { refusal: graphError(400, 'RequestBodyRead', `Cannot convert the literal '${input.body?.contentType}' to the expected type 'microsoft.graph.bodyType'.`) }
    }
    const attachments: FakeStoredAttachment[] = []
    for (const raw of input.attachments ?? []) {
      const attachment = readFileAttachment(raw)
      if ('refusal' in attachment) return attachment
      attachments.push(attachment)
    }
    const addresses = (recipients?: GraphRecipient[]) => (recipients ?? []).map((r) => r.emailAddress?.address ?? '')
    return {
      subject: input.subject ?? '',
      body: { contentType, content: input.body?.content ?? '' },
      from: input.from?.emailAddress?.address?.toLowerCase(),
      to: addresses(input.toRecipients),
      cc: addresses(input.ccRecipients),
      bcc: addresses(input.bccRecipients),
      replyTo: addresses(input.replyTo),
      importance,
      internetMessageHeaders: input.internetMessageHeaders ?? [],
      attachments,
    }
  }

  /** Records the send and delivers to every fake mailbox among the recipients (once each), into its inbox. */
  private recordSend(
    mailbox: FakeMailbox,
    message: MessageContent & { from: string; internetMessageId: string; sentDateTime: string },
    how: Pick<FakeSentMessage, 'via' | 'savedToSentItems' | 'messageId'>,
  ): void {
    const sent: FakeSentMessage = {
      from: message.from,
      sender: mailbox.address,
      to: message.to,
      subject: message.subject,
      headers: message.internetMessageHeaders,
      savedToSentItems: how.savedToSentItems,
      cc: message.cc,
      bcc: message.bcc,
      replyTo: message.replyTo,
      importance: message.importance,
      bodyType: message.body.contentType,
      body: message.body.content,
      attachments: message.attachments.map(({ id: _id, ...summary }) => summary),
      via: how.via,
      ...(how.messageId ? { messageId: how.messageId } : {}),
      internetMessageId: message.internetMessageId,
    }
    mailbox.sent.push(sent)
    const delivered = new Set<string>()
    const original = { from: message.from, to: message.to, subject: message.subject, internetMessageId: message.internetMessageId, sentDateTime: message.sentDateTime, headers: message.internetMessageHeaders }
    const unknown = new Set<string>()
    for (const address of [...message.to, ...message.cc, ...message.bcc]) {
      const recipient = this.findMailbox(address)
      if (!recipient) {
        // An address of an organisation the stand-in hosts that no mailbox has: Exchange's NDR comes back.
        const domain = address.split('@')[1]?.toLowerCase()
        if (domain && [...this.tenants.values()].some((tenant) => tenant.domains.includes(domain))) unknown.add(address.toLowerCase())
        continue
      }
      if (delivered.has(recipient.address)) continue
      delivered.add(recipient.address)
      this.answerAutomatically(recipient, original)
      recipient.received.push(sent)
      this.store(recipient, this.wellKnown(recipient, 'inbox'), {
        isDraft: false,
        isRead: false,
        subject: message.subject,
        body: message.body,
        from: message.from,
        to: message.to,
        cc: message.cc,
        bcc: [], // recipients do not see the Bcc line
        replyTo: message.replyTo,
        importance: message.importance,
        internetMessageHeaders: message.internetMessageHeaders,
        internetMessageId: message.internetMessageId,
        sentDateTime: message.sentDateTime,
        attachments: [...message.attachments],
      })
    }
    // One report for the message, a block per recipient that was not found.
    if (unknown.size > 0) this.later(this.deliver(mailbox, { mime: exchangeNdr(original, [...unknown], mailbox.address.split('@')[1]!) }))
  }

  /** Counts the request against its app's 10-minute budget for the mailbox; the refusal once it is spent. */
  private overRequestBudget(mailboxKey: string, headers: RequestHeaders): FakeAnswer | undefined {
    if (this.requestsPer10Minutes <= 0) return undefined
    const token = header(headers, 'authorization')?.replace(/^Bearer\s+/i, '')
    const key = `${(token && this.verifyToken(token)?.appid) ?? 'anonymous'}\n${mailboxKey}`
    const now = Date.now()
    const recent = this.recentRequests.get(key) ?? []
    while (recent.length > 0 && recent[0]! <= now - 600_000) recent.shift()
    if (recent.length >= this.requestsPer10Minutes) {
      return faultAnswer({ status: 429, message: 'Application is over its MailboxRequests limit.', retryAfter: Math.max(1, Math.ceil((recent[0]! + 600_000 - now) / 1000)) })
    }
    recent.push(now)
    this.recentRequests.set(key, recent)
    return undefined
  }

  /** A mailbox by its address or by one of its aliases. */
  findMailbox(address: string): FakeMailbox | undefined {
    const key = address.toLowerCase()
    return this.mailboxes.get(key) ?? [...this.mailboxes.values()].find((mailbox) => mailbox.sendAs.has(key))
  }

  /** An out-of-office reply to a mailbox of the stand-in, once per sender, never to automated mail. */
  private answerAutomatically(recipient: FakeMailbox, original: AnsweredMessage): void {
    // Exchange stays quiet when the sender asks it to (X-Auto-Response-Suppress: OOF or All; Graph
    // lets clients set only x- headers). Automatic replies and NDRs arrive through deliver(), which
    // never answers, so two mailboxes out of office cannot loop.
    const automated = original.headers.some((header) => {
      const name = header.name.toLowerCase()
      const value = header.value.toLowerCase()
      return (name === 'auto-submitted' && value.trim() !== 'no') || (name === 'x-auto-response-suppress' && /\b(all|oof)\b/.test(value))
    })
    const sender = this.findMailbox(original.from)
    if (!recipient.automaticReply || automated || !sender || recipient.automaticReply.repliedTo.has(original.from.toLowerCase())) return
    recipient.automaticReply.repliedTo.add(original.from.toLowerCase())
    this.later(this.deliver(sender, exchangeAutomaticReply(original, recipient.address, recipient.automaticReply.message)))
  }

  /** Mail the stand-in sends of its own accord (NDRs, automatic replies) arrives a moment later. */
  private later(delivery: Promise<unknown>): void {
    const settled = delivery.then(
      () => undefined,
      () => undefined,
    )
    this.mailInFlight.add(settled)
    void settled.then(() => this.mailInFlight.delete(settled))
  }

  /** Waits for NDRs and automatic replies under way to arrive. */
  async mailSettled(): Promise<void> {
    while (this.mailInFlight.size > 0) await Promise.all([...this.mailInFlight])
  }

  /** Keeps a new message in `folder` of `mailbox`, with fresh REST and immutable ids. */
  private store(
    mailbox: FakeMailbox,
    folder: FakeFolder,
    fields: Omit<
      FakeStoredMessage,
      'id' | 'restId' | 'immutableId' | 'mailbox' | 'folder' | 'parentFolderId' | 'createdDateTime' | 'receivedDateTime' | 'lastModifiedDateTime'
    > &
      Partial<Pick<FakeStoredMessage, 'createdDateTime' | 'receivedDateTime'>>,
  ): FakeStoredMessage {
    const restId = newRestId()
    const now = new Date().toISOString()
    const message: FakeStoredMessage = {
      ...fields,
      id: restId,
      restId,
      immutableId: newImmutableId(),
      mailbox: mailbox.address,
      folder: this.folderLabel(mailbox, folder),
      parentFolderId: folder.id,
      createdDateTime: fields.createdDateTime ?? now,
      receivedDateTime: fields.receivedDateTime ?? fields.createdDateTime ?? now,
      lastModifiedDateTime: now,
    }
    this.messages.set(message.immutableId, message)
    this.messagesByRestId.set(restId, message)
    const seq = ++this.changeSeq
    this.changeState.set(message.immutableId, { entered: seq, changed: seq })
    this.changeNotifications.created(message)
    return message
  }

  /** A change to a message: delta reports it again (as Graph reports any update). */
  private touch(message: FakeStoredMessage): void {
    const state = this.changeState.get(message.immutableId)
    if (state) state.changed = ++this.changeSeq
    message.lastModifiedDateTime = new Date().toISOString()
    this.changeNotifications.updated(message)
  }

  private recordRemoval(message: FakeStoredMessage): void {
    const list = this.removals.get(message.mailbox) ?? []
    list.push({ seq: ++this.changeSeq, folderId: message.parentFolderId, restId: message.restId, immutableId: message.immutableId })
    this.removals.set(message.mailbox, list)
  }

  /** Like Exchange, a move gives the message a new REST id; its immutable id stays. */
  private move(message: FakeStoredMessage, destination: FakeFolder): void {
    const from = { folderId: message.parentFolderId, restId: message.restId }
    this.recordRemoval(message)
    this.messagesByRestId.delete(message.restId)
    const createdWithRestId = message.id === message.restId
    message.restId = newRestId()
    if (createdWithRestId) message.id = message.restId
    message.parentFolderId = destination.id
    const mailbox = this.mailboxes.get(message.mailbox)
    message.folder = mailbox ? this.folderLabel(mailbox, destination) : destination.wellKnownName ?? destination.displayName
    this.messagesByRestId.set(message.restId, message)
    const seq = ++this.changeSeq
    this.changeState.set(message.immutableId, { entered: seq, changed: seq })
    message.lastModifiedDateTime = new Date().toISOString()
    this.changeNotifications.moved(message, from.folderId, from.restId)
  }

  private forget(message: FakeStoredMessage): void {
    if (!this.messages.has(message.immutableId)) return
    this.changeNotifications.deleted(message)
    this.recordRemoval(message)
    this.messages.delete(message.immutableId)
    this.messagesByRestId.delete(message.restId)
    this.changeState.delete(message.immutableId)
  }

  /** Changes with every change to the message, like Exchange's ChangeKey. */
  private changeKey(message: FakeStoredMessage): string {
    const changed = this.changeState.get(message.immutableId)?.changed ?? 0
    return createHash('sha256').update(`${message.immutableId}/${changed}`).digest('base64').slice(0, 40)
  }

  /** A well-known folder every fake mailbox has. */
  private wellKnown(mailbox: FakeMailbox, name: string): FakeFolder {
    const folder = this.findFolder(mailbox.folders, name)
    if (!folder) throw new Error(`The fake mailbox ${mailbox.address} has no '${name}' folder`)
    return folder
  }

  /** `folder` of FakeStoredMessage: the well-known name, or the path of display names from the top. */
  private folderLabel(mailbox: FakeMailbox, folder: FakeFolder): FakeMessageFolder {
    if (folder.wellKnownName) return folder.wellKnownName
    const path = (folders: FakeFolder[], trail: string[]): string[] | undefined => {
      for (const candidate of folders) {
        if (candidate === folder) return [...trail, candidate.displayName]
        const nested = path(candidate.children, [...trail, candidate.displayName])
        if (nested) return nested
      }
      return undefined
    }
    return (path(mailbox.folders, []) ?? [folder.displayName]).join('/')
  }

  private messagesIn(mailbox: string, folderId: string): FakeStoredMessage[] {
    return [...this.messages.values()].filter((message) => message.mailbox === mailbox && message.parentFolderId === folderId)
  }

  private mimeSource(message: FakeStoredMessage): MimeSource {
    const named = (address: string): MimeAddress => {
      const name = message.displayNames?.[address.toLowerCase()]
      return name ? { address, name } : { address }
    }
    return {
      ...(message.from ? { from: named(message.from) } : {}),
      ...(message.sender ? { sender: named(message.sender) } : {}),
      to: message.to.map(named),
      cc: message.cc.map(named),
      bcc: message.bcc.map(named),
      replyTo: message.replyTo.map(named),
      subject: message.subject,
      date: new Date(message.sentDateTime ?? message.createdDateTime),
      internetMessageId: message.internetMessageId,
      importance: message.importance,
      headers: message.internetMessageHeaders,
      body: message.body,
      attachments: message.attachments,
      seed: message.immutableId,
    }
  }

  /**
   * The message as Graph shows it; with `select`, only those properties (and id). Like Graph,
   * internetMessageHeaders come only when selected: a draft's are the x- headers set on it, a
   * MIME-delivered message's are those of its MIME, others' those of the MIME $value writes.
   */
  private messageJson(message: FakeStoredMessage, { host, preferImmutable }: GraphContext, select?: string[], entity = true) {
    const recipient = (address: string) => ({ emailAddress: { name: message.displayNames?.[address.toLowerCase()] ?? address, address } })
    const from = message.from ? recipient(message.from) : null
    const sender = message.sender ? recipient(message.sender) : from
    const text = message.body.contentType === 'html' ? message.body.content.replace(/<[^>]*>/g, ' ') : message.body.content
    const changeKey = this.changeKey(message)
    const conversationTopic = message.subject.replace(/^((re|fw|fwd|aw|wg)\s*:\s*)+/i, '').trim().toLowerCase()
    const full: Record<string, unknown> = {
      id: preferImmutable ? message.immutableId : message.restId,
      createdDateTime: message.createdDateTime,
      lastModifiedDateTime: message.lastModifiedDateTime,
      changeKey,
      categories: [],
      receivedDateTime: message.receivedDateTime,
      sentDateTime: message.sentDateTime ?? null,
      hasAttachments: message.attachments.some((attachment) => !attachment.isInline),
      internetMessageId: message.internetMessageId,
      subject: message.subject,
      bodyPreview: text.replace(/\s+/g, ' ').trim().slice(0, 255),
      importance: message.importance,
      parentFolderId: message.parentFolderId,
      conversationId: `AAQkAG${createHash('sha256').update(`${message.mailbox}/${conversationTopic}`).digest('base64url').slice(0, 32)}=`,
      isDeliveryReceiptRequested: false,
      isReadReceiptRequested: false,
      isRead: message.isRead,
      isDraft: message.isDraft,
      webLink: `https://outlook.office365.com/owa/?ItemID=${encodeURIComponent(message.restId)}&exvsurl=1&viewmodel=ReadMessageItem`,
      inferenceClassification: 'focused',
      body: message.body,
      sender,
      from,
      toRecipients: message.to.map(recipient),
      ccRecipients: message.cc.map(recipient),
      bccRecipients: message.bcc.map(recipient),
      replyTo: message.replyTo.map(recipient),
      flag: { flagStatus: 'notFlagged' },
    }
    if (select?.includes('internetMessageHeaders')) {
      full.internetMessageHeaders = message.isDraft || message.mime ? message.internetMessageHeaders : mimeHeaders(this.mimeSource(message))
    }
    const shown = select ? Object.fromEntries(Object.entries(full).filter(([name]) => name === 'id' || select.includes(name))) : full
    const head = entity
      ? {
          '@odata.context': `https://${host}/v1.0/$metadata#users('${encodeURIComponent(message.mailbox)}')/messages${select ? `(${select.join(',')})` : ''}/$entity`,
        }
      : { '@odata.type': '#microsoft.graph.message' }
    return { ...head, '@odata.etag': `W/"${changeKey}"`, ...shown }
  }

  /** PATCH of a message: the fake supports isRead, the property a mail consumer changes. */
  private updateFromRequest(context: GraphContext, message: FakeStoredMessage | undefined): FakeAnswer {
    if (!context.roles.has('Mail.ReadWrite')) return denied()
    if (!message) return notFound()
    const patch = jsonBody(context.body)
    if (!patch) return unreadableJson()
    const unsupported = Object.keys(patch).filter((name) => name !== 'isRead' && !name.startsWith('@odata.'))
    if (unsupported.length) return graphError(400, 'BadRequest', `The fake supports PATCH of isRead only, not ${unsupported.join(', ')}.`)
    if ('isRead' in patch) {
      if (typeof patch.isRead !== 'boolean') {
        return graphError(400, 'RequestBodyRead', `Cannot convert the literal '${String(patch.isRead)}' to the expected type 'Edm.Boolean'.`)
      }
      message.isRead = patch.isRead
    }
    this.touch(message)
    return reply(200, this.messageJson(message, context))
  }

  /** POST .../move: 201 with the message in its new folder, under a new REST id (same immutable id). */
  private moveFromRequest(context: GraphContext, message: FakeStoredMessage | undefined): FakeAnswer {
    if (!context.roles.has('Mail.ReadWrite')) return denied()
    if (!message) return notFound()
    const request = jsonBody(context.body)
    if (!request) return unreadableJson()
    const destinationId = request.destinationId ?? request.DestinationId
    if (typeof destinationId !== 'string' || !destinationId) {
      return graphError(400, 'ErrorInvalidParameter', "The parameter 'destinationId' is missing or not a string.")
    }
    const destination = this.findFolder(context.mailbox.folders, destinationId)
    if (!destination) return notFound()
    this.move(message, destination)
    return reply(201, this.messageJson(message, context))
  }

  /** GET mailFolders/{id}/messages: newest first, $top (default 10) and $skip paging, $select. */
  private listMessages(context: GraphContext, folder: FakeFolder): FakeAnswer {
    const { url, mailbox, host } = context
    const select = readSelect(url)
    if (select && 'refusal' in select) return select.refusal
    const top = Math.max(1, Number(url.searchParams.get('$top') ?? DEFAULT_PAGE_SIZE) || DEFAULT_PAGE_SIZE)
    const skip = Math.max(0, Number(url.searchParams.get('$skip') ?? 0) || 0)
    const all = this.messagesIn(mailbox.address, folder.id).sort((a, b) => b.receivedDateTime.localeCompare(a.receivedDateTime))
    const body: Record<string, unknown> = {
      '@odata.context': `https://${host}/v1.0/$metadata#users('${encodeURIComponent(mailbox.address)}')/mailFolders('${folder.id}')/messages`,
      value: all.slice(skip, skip + top).map((message) => this.messageJson(message, context, select, false)),
    }
    if (skip + top < all.length) {
      const next = new URL(url.href)
      next.searchParams.set('$top', String(top))
      next.searchParams.set('$skip', String(skip + top))
      body['@odata.nextLink'] = `https://${host}${next.pathname}?${decodeURIComponent(next.searchParams.toString())}`
    }
    return reply(200, body)
  }

  /**
   * GET mailFolders/{id}/messages/delta. A round starts without a token (every message in the
   * folder) or from a deltaLink (what changed since: new, moved-in and updated messages as
   * items, moved-out and deleted ones as @removed), is fixed when it starts, and is served in
   * pages of odata.maxpagesize (default 10) linked by nextLinks; its last page carries the
   * deltaLink for the next round. The links keep $select and the other first-request options.
   */
  private messageDelta(context: GraphContext, folder: FakeFolder): FakeAnswer {
    const { url, mailbox, host } = context
    const epoch = this.deltaEpochs.get(mailbox.address) ?? 0
    const skipToken = url.searchParams.get('$skiptoken')
    const deltaToken = url.searchParams.get('$deltatoken')
    const gone = () =>
      graphError(410, 'SyncStateNotFound', `The sync state generation is not found; generation=${epoch};[highest=${epoch}]. Start a new delta round without a state token.`)
    let round: DeltaRound
    let offset = 0
    if (skipToken !== null || deltaToken !== null) {
      if (skipToken !== null && deltaToken !== null) return graphError(400, 'ErrorInvalidUrlQuery', 'Only one of $skiptoken and $deltatoken may be given.')
      const state = this.deltaTokens.get((skipToken ?? deltaToken)!)
      if (!state || state.kind !== (skipToken !== null ? 'skip' : 'delta') || state.epoch !== epoch) return gone()
      if (state.mailbox !== mailbox.address || state.folderId !== folder.id) {
        return graphError(400, 'ErrorInvalidUrlQuery', 'The state token belongs to another mailbox or folder.')
      }
      if (state.kind === 'skip') {
        round = state.round
        offset = state.offset
      } else {
        round = this.startRound(mailbox.address, folder.id, { ...state.options }, state.since)
      }
    } else {
      const options = readDeltaOptions(url)
      if ('refusal' in options) return options.refusal
      round = this.startRound(mailbox.address, folder.id, options, undefined)
    }
    const requested = /odata\.maxpagesize\s*=\s*"?(\d+)"?/i.exec(context.prefer ?? '')?.[1]
    const requestedSize = requested ? Number(requested) : undefined
    const pageSize = requestedSize && requestedSize > 0 ? requestedSize : (round.options.pageSize ?? DEFAULT_PAGE_SIZE)
    if (offset === 0 && requestedSize && requestedSize > 0) round.options.pageSize = requestedSize

    const value: unknown[] = []
    for (const entry of round.entries.slice(offset, offset + pageSize)) {
      const current = this.messages.get(entry.immutableId)
      const here = current?.parentFolderId === round.folderId ? current : undefined
      if (entry.kind === 'item') {
        // Gone since the round started: the next round reports the removal.
        if (here) value.push(this.messageJson(here, context, round.options.select, false))
        continue
      }
      const ids = context.preferImmutable ? (here ? [] : [entry.immutableId]) : entry.restIds.filter((id) => id !== here?.restId)
      for (const id of ids) value.push({ '@odata.type': '#microsoft.graph.message', id, '@removed': { reason: 'deleted' } })
    }

    const pageKey = `${mailbox.address}\n${folder.id}`
    const replayed = this.replayPending.has(mailbox.address) ? this.lastDeltaPage.get(pageKey) : undefined
    if (replayed) this.replayPending.delete(mailbox.address)
    this.lastDeltaPage.set(pageKey, value)

    const more = offset + pageSize < round.entries.length
    const token = newStateToken()
    const owner = { epoch, mailbox: mailbox.address, folderId: folder.id }
    this.deltaTokens.set(
      token,
      more ? { ...owner, kind: 'skip', round, offset: offset + pageSize } : { ...owner, kind: 'delta', since: round.watermark, options: round.options },
    )
    // Graph's links name the user as the request did and the folder by id, in key syntax.
    const user = url.pathname.split('/')[3]
    const link = `https://${host}/v1.0/users/${user}/mailFolders('${folder.id}')/messages/delta?${more ? '$skiptoken' : '$deltatoken'}=${token}`
    const body = {
      '@odata.context': `https://${host}/v1.0/$metadata#Collection(message)`,
      [more ? '@odata.nextLink' : '@odata.deltaLink']: link,
      value: [...(replayed ?? []), ...value],
    }
    return reply(200, body, requestedSize && requestedSize > 0 ? { 'preference-applied': `odata.maxpagesize=${requestedSize}` } : undefined)
  }

  /** The entries of a round: everything in the folder (`since` undefined) or what changed after `since`. */
  private startRound(mailbox: string, folderId: string, options: DeltaOptions, since: number | undefined): DeltaRound {
    const stateOf = (message: FakeStoredMessage) => this.changeState.get(message.immutableId)!
    let items = this.messagesIn(mailbox, folderId)
    if (since !== undefined) {
      items = items.filter((message) => stateOf(message).changed > since)
      if (options.changeType === 'created') items = items.filter((message) => stateOf(message).entered > since)
      if (options.changeType === 'updated') items = items.filter((message) => stateOf(message).entered <= since)
      if (options.changeType === 'deleted') items = []
    }
    const filter = options.filter
    if (filter) items = items.filter((message) => (filter.op === 'ge' ? Date.parse(message.receivedDateTime) >= filter.at : Date.parse(message.receivedDateTime) > filter.at))
    items.sort(
      options.orderDesc
        ? (a, b) => b.receivedDateTime.localeCompare(a.receivedDateTime)
        : (a, b) => stateOf(a).changed - stateOf(b).changed,
    )
    const removed = new Map<string, string[]>()
    if (since !== undefined && (options.changeType === undefined || options.changeType === 'deleted')) {
      for (const removal of this.removals.get(mailbox) ?? []) {
        if (removal.folderId !== folderId || removal.seq <= since) continue
        const restIds = removed.get(removal.immutableId) ?? []
        if (!restIds.includes(removal.restId)) restIds.push(removal.restId)
        removed.set(removal.immutableId, restIds)
      }
    }
    return {
      mailbox,
      folderId,
      options,
      entries: [
        ...[...removed].map(([immutableId, restIds]): DeltaEntry => ({ kind: 'removed', immutableId, restIds })),
        ...items.map((message): DeltaEntry => ({ kind: 'item', immutableId: message.immutableId })),
      ],
      watermark: this.changeSeq,
    }
  }

  private findFolder(folders: FakeFolder[], idOrWellKnown: string): FakeFolder | undefined {
    for (const folder of folders) {
      if (folder.id === idOrWellKnown || folder.wellKnownName === idOrWellKnown.toLowerCase()) return folder
      const nested = this.findFolder(folder.children, idOrWellKnown)
      if (nested) return nested
    }
    return undefined
  }

  private folderJson(folder: FakeFolder) {
    return { id: folder.id, displayName: folder.displayName, childFolderCount: folder.children.length, parentFolderId: null }
  }

  private verifyToken(token: string): TokenClaims | null {
    // Benchmarks send thousands of requests with the same few tokens: verify each only once.
    let claims = this.verifiedTokens.get(token)
    if (!claims) {
      const [header, payload, signature] = token.split('.')
      if (!header || !payload || !signature) return null
      const expected = createHmac('sha256', TOKEN_SIGNING_KEY).update(`${header}.${payload}`).digest('base64url')
      if (expected !== signature) return null
      claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as TokenClaims
      this.verifiedTokens.set(token, claims)
    }
    if (claims.exp * 1000 < Date.now()) return null
    return claims
  }

  /** Verifies a certificate client assertion the way Entra does, short of revocation. */
  private checkAssertion(host: string, tenantKey: string, app: FakeApp, form: Record<string, string>) {
    const invalid = (description: string) => entraError(401, 'invalid_client', 700027, description)
    if (form.client_assertion_type !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') {
      return entraError(400, 'invalid_request', 90014, 'The client_assertion_type is missing or wrong.')
    }
    const [headerPart, payloadPart, signaturePart] = form.client_assertion!.split('.')
    if (!headerPart || !payloadPart || !signaturePart) return invalid('Client assertion is not a JWT.')
    const header = JSON.parse(Buffer.from(headerPart, 'base64url').toString()) as Record<string, string>
    const claims = JSON.parse(Buffer.from(payloadPart, 'base64url').toString()) as Record<string, unknown>
    const thumbprint = header['x5t#S256']
      ? { sha256: Buffer.from(header['x5t#S256'], 'base64url').toString('hex').toUpperCase() }
      : header.x5t
        ? { sha1: Buffer.from(header.x5t, 'base64url').toString('hex').toUpperCase() }
        : null
    if (!thumbprint) return invalid('Client assertion has no certificate thumbprint (x5t#S256).')
    const registered = app.certificates
      .map((pem) => new X509Certificate(pem))
      .find((cert) =>
        thumbprint.sha256
          ? cert.fingerprint256.replaceAll(':', '') === thumbprint.sha256
          : cert.fingerprint.replaceAll(':', '') === thumbprint.sha1,
      )
    if (!registered) {
      return invalid(`Client assertion failed signature validation. Reason - The key was not found. Thumbprint of key used by client: '${thumbprint.sha256 ?? thumbprint.sha1}'.`)
    }
    const data = Buffer.from(`${headerPart}.${payloadPart}`)
    const signature = Buffer.from(signaturePart, 'base64url')
    const key = registered.publicKey
    const valid =
      header.alg === 'PS256'
        ? verify('sha256', data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, signature)
        : header.alg === 'RS256'
          ? verify('sha256', data, key, signature)
          : false
    if (!valid) return invalid('Client assertion failed signature validation.')
    const audience = `https://${host}/${tenantKey}/oauth2/v2.0/token`
    if (claims.aud !== audience) {
      return entraError(401, 'invalid_client', 700021, `Client assertion audience claim does not match Realm issuer. Expected ${audience}, got ${String(claims.aud)}.`)
    }
    if (claims.iss !== app.clientId || claims.sub !== app.clientId) {
      return entraError(401, 'invalid_client', 700023, 'Client assertion issuer and subject must be the client id.')
    }
    if (typeof claims.exp !== 'number' || claims.exp * 1000 <= Date.now()) {
      return entraError(401, 'invalid_client', 700024, 'Client assertion is not within its valid time range.')
    }
    if (new Date(registered.validTo) <= new Date()) return invalid('The certificate registered for the app has expired.')
    return null
  }
}
