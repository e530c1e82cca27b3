import type { InboundAttachment, InboundHeader } from '../../../db/schema.ts'

export interface MailAddress {
  /** Lower case. */
  address: string
  name: string | null
}

/** One recipient's lines of a delivery-status report (RFC 3464). */
export interface DeliveryStatusRecipient {
  /** `failed`, `delayed`, `delivered`, `relayed` or `expanded` (lower case). */
  action: string | null
  /** e.g. `5.1.1`. */
  status: string | null
  /** The address part of Final-Recipient (or Original-Recipient), lower case. */
  recipient: string | null
  diagnostic: string | null
}

/** What a multipart/report says, and the original message it reports on. */
export interface MailReport {
  /** The report-type parameter, lower case: `delivery-status`, `disposition-notification`, ... */
  type: string
  recipients: DeliveryStatusRecipient[]
  /** Message-ID of the original message (from the returned message or its headers), without <>. */
  originalMessageId: string | null
  /** Headers of the returned original (message/rfc822 or text/rfc822-headers part), lower-case names. */
  originalHeaders: InboundHeader[]
}

/**
 * A received email as the pipeline sees it, whatever its source (raw MIME or Graph JSON).
 * Every string is already decoded; every address list is lower case and deduplicated.
 */
export interface ParsedMail {
  /** Without the angle brackets. */
  messageId: string | null
  /** Without the angle brackets. */
  inReplyTo: string | null
  /** Without the angle brackets, oldest first. */
  references: string[]
  subject: string
  from: MailAddress | null
  sender: MailAddress | null
  replyTo: string[]
  to: string[]
  cc: string[]
  bcc: string[]
  /** Return-Path address; `''` for the null return path `<>`; `null` when absent. */
  returnPath: string | null
  date: Date | null
  importance: 'low' | 'normal' | 'high'
  /** All top-level headers in order, names lower case (at most a few hundred kept). */
  headers: InboundHeader[]
  text: string
  html: string | null
  attachments: InboundAttachment[]
  /** Set for multipart/report mail (bounces, delay notices, read receipts). */
  report: MailReport | null
  /** Top-level Content-Type value, lower case, without parameters. */
  contentType: string
  /** What could not be read as given; the rest was still parsed. */
  problems: string[]
}

const NUL = new RegExp(String.fromCharCode(0), 'g')

function text(value: string): string {
  const wellFormed = value.isWellFormed() ? value : value.toWellFormed()
  return wellFormed.includes('\u0000') ? wellFormed.replace(NUL, '\uFFFD') : wellFormed
}

function nullableText(value: string | null): string | null {
  return value === null ? null : text(value)
}

/**
 * PostgreSQL stores no NUL character in text or jsonb and jsonb no unpaired UTF-16 surrogate,
 * and mail from strangers may carry either anywhere (a UTF-16 encoded word decodes to one):
 * each becomes U+FFFD, so the mail is still stored rather than refused.
 */
export function storable(mail: ParsedMail): ParsedMail {
  const address = (value: MailAddress | null) => (value ? { address: text(value.address), name: nullableText(value.name) } : null)
  return {
    ...mail,
    messageId: nullableText(mail.messageId),
    inReplyTo: nullableText(mail.inReplyTo),
    references: mail.references.map(text),
    subject: text(mail.subject),
    from: address(mail.from),
    sender: address(mail.sender),
    replyTo: mail.replyTo.map(text),
    to: mail.to.map(text),
    cc: mail.cc.map(text),
    bcc: mail.bcc.map(text),
    returnPath: nullableText(mail.returnPath),
    headers: mail.headers.map((header) => ({ name: text(header.name), value: text(header.value) })),
    text: text(mail.text),
    html: nullableText(mail.html),
    attachments: mail.attachments.map((attachment) => ({ ...attachment, name: text(attachment.name), contentType: text(attachment.contentType), contentId: nullableText(attachment.contentId) })),
    report: mail.report
      ? {
          ...mail.report,
          originalMessageId: nullableText(mail.report.originalMessageId),
          originalHeaders: mail.report.originalHeaders.map((header) => ({ name: text(header.name), value: text(header.value) })),
          recipients: mail.report.recipients.map((recipient) => ({
            action: nullableText(recipient.action),
            status: nullableText(recipient.status),
            recipient: nullableText(recipient.recipient),
            diagnostic: nullableText(recipient.diagnostic),
          })),
        }
      : null,
    problems: mail.problems.map(text),
  }
}
