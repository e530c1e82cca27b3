import type { MessageError } from '../../../db/schema.ts'
import { MailboxError, TokenError, toMailboxError } from '../../graph/errors.ts'
import { GRAPH_LIMITS } from '../../graph/limits.ts'
import type { OutgoingMail } from '../../graph/mailbox-client.ts'
import type { AttachmentToSend } from './attachment-repository.ts'
import type { MessageRow } from './message-repository.ts'

/**
 * How the dispatcher judges a failed Graph request and shapes what it sends: which failures
 * may have sent the message, which are worth another attempt, what goes in one request.
 */

/**
 * Graph refuses requests over about 4 MB, and files inside a request travel base64 (4/3):
 * small files ride in the draft request up to this total, leaving room for the body.
 */
const DRAFT_REQUEST_ATTACHMENT_BUDGET = 2_500_000

/** Why a send attempt stopped, and whether the message may already be out. */
export class SendFailure extends Error {
  readonly error: MailboxError
  /** The failed request was the send itself. */
  readonly atSend: boolean
  readonly ambiguous: boolean

  constructor(error: MailboxError, atSend: boolean) {
    super(error.message)
    this.error = error
    this.atSend = atSend
    this.ambiguous = atSend && isAmbiguous(error)
  }
}

/** Lease lost to another dispatcher: stop without writing anything. */
export class LeaseLost extends Error {}

/** Names the outbox message a sent mail came from. */
export const MESSAGE_ID_HEADER = 'x-mailgate-message'

export function outgoingMail(message: MessageRow): OutgoingMail {
  return {
    from: message.fromAddress,
    to: message.toAddresses,
    cc: message.ccAddresses,
    bcc: message.bccAddresses,
    replyTo: message.replyTo,
    subject: message.subject,
    body: { contentType: message.bodyType, content: message.body },
    importance: message.importance,
    // Lets ingest recognise this message when it comes back: a copy to a watched mailbox, or
    // returned inside a bounce (a DSN quotes the original's headers).
    headers: { ...message.headers, [MESSAGE_ID_HEADER]: message.id },
  }
}

/** Small files ride in the draft request while they fit; the rest are added one by one. */
export function splitForDraft(attachments: AttachmentToSend[]): [AttachmentToSend[], AttachmentToSend[]] {
  const inRequest: AttachmentToSend[] = []
  const separate: AttachmentToSend[] = []
  let budget = DRAFT_REQUEST_ATTACHMENT_BUDGET
  for (const attachment of attachments) {
    if (attachment.size <= GRAPH_LIMITS.attachmentInRequestBytes && attachment.size <= budget) {
      inRequest.push(attachment)
      budget -= attachment.size
    } else {
      separate.push(attachment)
    }
  }
  return [inRequest, separate]
}

export function toSendError(error: unknown): MailboxError {
  if (error instanceof SendFailure) return error.error
  if (error instanceof MailboxError) return error
  if (error instanceof TokenError) return toMailboxError(error)
  throw error
}

/** The send may have been processed: no answer, a cut connection, or a server error without Retry-After. */
export function isAmbiguous(error: MailboxError): boolean {
  if (error.code === 'NETWORK_ERROR' || error.code === 'GRAPH_TIMEOUT') return true
  return error.code === 'GRAPH_UNAVAILABLE' && error.retryAfterSeconds === undefined
}

/** Refusals that another attempt would only repeat. */
export function isPermanent(error: MailboxError): boolean {
  if (error.code === 'AUTHENTICATION_FAILED' || error.code === 'THROTTLED' || error.code === 'GRAPH_UNAVAILABLE') return false
  // Nothing left this server (TLS refused) or nothing came back: worth another attempt.
  if (error.code === 'NETWORK_ERROR' || error.code === 'GRAPH_TIMEOUT' || error.code === 'TLS_UNTRUSTED' || error.code === 'REQUEST_SLOTS_UNAVAILABLE') return false
  return error.status === undefined || (error.status >= 400 && error.status < 500 && error.status !== 408)
}

export function errorRecord(error: MailboxError): MessageError {
  return {
    code: error.code,
    message: error.message,
    hint: error.hint,
    ...(error.graphCode ? { graphCode: error.graphCode } : {}),
    ...(error.status !== undefined ? { status: error.status } : {}),
  }
}
