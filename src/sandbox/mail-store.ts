import { createHash, randomBytes, randomUUID } from 'node:crypto'
import type { FakeTenant } from './entra.ts'

/**
 * The hosted mailboxes of the Microsoft stand-in: their folders and messages, the REST and
 * immutable ids of messages, and the change sequence that delta queries and change
 * notifications are built on.
 */

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

/** The fields of a new message; the store adds the ids, where it is, and when. */
export type NewMessage = Omit<
  FakeStoredMessage,
  'id' | 'restId' | 'immutableId' | 'mailbox' | 'folder' | 'parentFolderId' | 'createdDateTime' | 'receivedDateTime' | 'lastModifiedDateTime'
> &
  Partial<Pick<FakeStoredMessage, 'createdDateTime' | 'receivedDateTime'>>

/** A message left a folder (moved out or deleted) at change `seq`, known there by `restId`. */
export interface Removal {
  seq: number
  folderId: string
  restId: string
  immutableId: string
}

/** Who hears of every message change: the change-notification subscriptions. */
export interface MessageChanges {
  created(message: FakeStoredMessage): void
  updated(message: FakeStoredMessage): void
  moved(message: FakeStoredMessage, fromFolderId: string, fromRestId: string): void
  deleted(message: FakeStoredMessage): void
}

// Shaped like Exchange ids (base64url, '=' padding), so callers must encode them in URLs.
export const newRestId = () => `AAMkAG${randomBytes(36).toString('base64url')}AAA=`
const newImmutableId = () => `AAkALgAA${randomBytes(36).toString('base64url')}AAA=`
export const newAttachmentId = () => `AAMkAG${randomBytes(24).toString('base64url')}BEgAQA${randomBytes(12).toString('base64url')}=`
export const newInternetMessageId = () => `<${randomBytes(12).toString('hex')}@fake.outlook.com>`

export class MailStore {
  readonly mailboxes = new Map<string, FakeMailbox>()
  /** Every message in every mailbox, keyed by immutable id (so by `id` too for messages created with immutable ids). */
  readonly messages = new Map<string, FakeStoredMessage>()
  /** By immutable id: when the message entered its current folder, and when it last changed. */
  readonly changeState = new Map<string, { entered: number; changed: number }>()
  /** By mailbox address: messages that left a folder, for @removed in later delta rounds. */
  readonly removals = new Map<string, Removal[]>()
  private readonly messagesByRestId = new Map<string, FakeStoredMessage>()
  /** Change sequence numbers, shared by all mailboxes: every store, move, update and delete takes the next. */
  private seq = 0
  private readonly changes: MessageChanges

  constructor(changes: MessageChanges) {
    this.changes = changes
  }

  /** The latest change sequence number. */
  get changeSeq(): number {
    return this.seq
  }

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

  findMessage(id: string): FakeStoredMessage | undefined {
    return this.messages.get(id) ?? this.messagesByRestId.get(id)
  }

  /** A mailbox by address (any case) or by id, as Graph accepts either in /users/{id}. */
  lookupMailbox(addressOrId: string): FakeMailbox | undefined {
    return this.mailboxes.get(addressOrId.toLowerCase()) ?? [...this.mailboxes.values()].find((mailbox) => mailbox.id === addressOrId)
  }

  /** A mailbox by its address or by one of its aliases. */
  findMailbox(address: string): FakeMailbox | undefined {
    const key = address.toLowerCase()
    return this.mailboxes.get(key) ?? [...this.mailboxes.values()].find((mailbox) => mailbox.sendAs.has(key))
  }

  mailboxOf(mailbox: FakeMailbox | string): FakeMailbox {
    const found = typeof mailbox === 'string' ? this.lookupMailbox(mailbox) : mailbox
    if (!found) throw new Error(`The fake has no mailbox ${String(mailbox)}`)
    return found
  }

  /** A folder by id, well-known name or path from the top (see FakeMicrosoft.folder). */
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

  findFolder(folders: FakeFolder[], idOrWellKnown: string): FakeFolder | undefined {
    for (const folder of folders) {
      if (folder.id === idOrWellKnown || folder.wellKnownName === idOrWellKnown.toLowerCase()) return folder
      const nested = this.findFolder(folder.children, idOrWellKnown)
      if (nested) return nested
    }
    return undefined
  }

  /** A well-known folder every fake mailbox has. */
  wellKnown(mailbox: FakeMailbox, name: string): FakeFolder {
    const folder = this.findFolder(mailbox.folders, name)
    if (!folder) throw new Error(`The fake mailbox ${mailbox.address} has no '${name}' folder`)
    return folder
  }

  messagesIn(mailbox: string, folderId: string): FakeStoredMessage[] {
    return [...this.messages.values()].filter((message) => message.mailbox === mailbox && message.parentFolderId === folderId)
  }

  /** Keeps a new message in `folder` of `mailbox`, with fresh REST and immutable ids. */
  store(mailbox: FakeMailbox, folder: FakeFolder, fields: NewMessage): FakeStoredMessage {
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
    const seq = ++this.seq
    this.changeState.set(message.immutableId, { entered: seq, changed: seq })
    this.changes.created(message)
    return message
  }

  /** A change to a message: delta reports it again (as Graph reports any update). */
  touch(message: FakeStoredMessage): void {
    const state = this.changeState.get(message.immutableId)
    if (state) state.changed = ++this.seq
    message.lastModifiedDateTime = new Date().toISOString()
    this.changes.updated(message)
  }

  /** Like Exchange, a move gives the message a new REST id; its immutable id stays. */
  move(message: FakeStoredMessage, destination: FakeFolder): void {
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
    const seq = ++this.seq
    this.changeState.set(message.immutableId, { entered: seq, changed: seq })
    message.lastModifiedDateTime = new Date().toISOString()
    this.changes.moved(message, from.folderId, from.restId)
  }

  forget(message: FakeStoredMessage): void {
    if (!this.messages.has(message.immutableId)) return
    this.changes.deleted(message)
    this.recordRemoval(message)
    this.messages.delete(message.immutableId)
    this.messagesByRestId.delete(message.restId)
    this.changeState.delete(message.immutableId)
  }

  /** Changes with every change to the message, like Exchange's ChangeKey. */
  changeKey(message: FakeStoredMessage): string {
    const changed = this.changeState.get(message.immutableId)?.changed ?? 0
    return createHash('sha256').update(`${message.immutableId}/${changed}`).digest('base64').slice(0, 40)
  }

  private recordRemoval(message: FakeStoredMessage): void {
    const list = this.removals.get(message.mailbox) ?? []
    list.push({ seq: ++this.seq, folderId: message.parentFolderId, restId: message.restId, immutableId: message.immutableId })
    this.removals.set(message.mailbox, list)
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
}
