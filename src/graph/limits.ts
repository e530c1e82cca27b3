/**
 * Microsoft Graph's and Exchange Online's limits that shape what Mailgate accepts and how it
 * sends, named once. Sources: ../shared/GRAPH-NOTES.md and Microsoft's documentation.
 */
export const GRAPH_LIMITS = {
  /** Graph refuses request bodies over about 4 MB. */
  requestBytes: 4 * 1024 * 1024,
  /** A file that travels inside a request (sendMail, a draft, POST attachments), and every inline image. */
  attachmentInRequestBytes: 3 * 1024 * 1024,
  /**
   * All attachments of one sendMail request: they travel base64 (4/3 of their size) inside
   * the 4 MB request.
   */
  sendMailAttachmentsBytes: 3 * 1024 * 1024,
  /** The largest file an upload session takes, and so the largest message Mailgate can send. */
  uploadSessionBytes: 150 * 1024 * 1024,
  /** One PUT to an upload session. */
  uploadPieceBytes: 4 * 1024 * 1024,
  /** To, Cc and Bcc together. */
  recipientsPerMessage: 500,
  /** Requests in flight at once per app and mailbox. */
  concurrentRequestsPerMailbox: 4,
  /** Exchange Online's sending rate per mailbox, messages a minute. */
  messagesPerMinute: 30,
} as const

/** What an app may do with mailboxes, from the application permissions (`roles`) it holds. */
export interface MailCapabilities {
  /** Mail.Read or Mail.ReadWrite. */
  read: boolean
  /** Mail.ReadWrite: mark, move, delete, and create drafts (large attachments, checkable sends). */
  readWrite: boolean
  /** Mail.Send. */
  send: boolean
}

export function capabilitiesOf(roles: readonly string[]): MailCapabilities {
  const readWrite = roles.includes('Mail.ReadWrite')
  return { read: readWrite || roles.includes('Mail.Read'), readWrite, send: roles.includes('Mail.Send') }
}
