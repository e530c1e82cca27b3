/**
 * Reading the machine-readable parts of a multipart/report (RFC 6522): the delivery-status
 * fields of a bounce or delay notice (RFC 3464, RFC 6533), the disposition-notification fields
 * of a read receipt (RFC 8098), and the returned original message or its headers.
 */
import { bareMessageId } from './mail-fields.ts'
import type { DeliveryStatusRecipient } from './parsed-mail.ts'

/** How much of a report part is kept to read it; what follows is ignored. */
export const MAX_REPORT_PART_BYTES = 64 * 1024
const MAX_RECIPIENTS = 1000
const MAX_FIELD_CHARS = 2000

export type ReportPartKind = 'status' | 'original'

/** Which report part a content type is: status fields, the original message or its headers, or none. */
export function reportPartKind(contentType: string): ReportPartKind | null {
  switch (contentType) {
    case 'message/delivery-status':
    case 'message/global-delivery-status':
    case 'message/disposition-notification':
    case 'message/global-disposition-notification':
      return 'status'
    case 'message/rfc822':
    case 'message/global':
    case 'text/rfc822-headers':
    case 'message/global-headers':
      return 'original'
    default:
      return null
  }
}

type FieldBlock = Map<string, string>

/**
 * The field blocks of a status part: blocks are separated by empty lines, fields are
 * `Name: value` with header-style continuation lines; names lower case, first occurrence wins.
 */
export function parseFieldBlocks(text: string): FieldBlock[] {
  const blocks: FieldBlock[] = []
  let block: FieldBlock = new Map()
  let lastName: string | null = null
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === '') {
      if (block.size > 0) blocks.push(block)
      block = new Map()
      lastName = null
    } else if (/^[ \t]/.test(line)) {
      if (lastName !== null) block.set(lastName, `${block.get(lastName)} ${line.trim()}`.slice(0, MAX_FIELD_CHARS))
    } else {
      lastName = readField(block, line)
    }
  }
  if (block.size > 0) blocks.push(block)
  return blocks
}

/** Adds `Name: value` to the block; answers the name a continuation line would extend. */
function readField(block: FieldBlock, line: string): string | null {
  const colon = line.indexOf(':')
  if (colon <= 0) return null
  const name = line.slice(0, colon).trim().toLowerCase()
  if (block.has(name)) return null
  block.set(name, line.slice(colon + 1).trim().slice(0, MAX_FIELD_CHARS))
  return name
}

export interface StatusReport {
  recipients: DeliveryStatusRecipient[]
  /** Original-Message-ID of a disposition notification, without <>. */
  originalMessageId: string | null
}

/**
 * The recipients of a delivery-status (per-recipient blocks after the per-message one) or
 * disposition-notification part (its single block names the Final-Recipient). A block counts
 * as a recipient's when it names a recipient or an action, so a missing empty line between
 * the per-message and the first recipient block still yields that recipient.
 */
export function readStatusReport(text: string): StatusReport {
  const recipients: DeliveryStatusRecipient[] = []
  let originalMessageId: string | null = null
  for (const block of parseFieldBlocks(text)) {
    originalMessageId ??= bareMessageId(block.get('original-message-id'))
    if (!block.has('final-recipient') && !block.has('original-recipient') && !block.has('action')) continue
    if (recipients.length < MAX_RECIPIENTS) recipients.push(recipientOf(block))
  }
  return { recipients, originalMessageId }
}

function recipientOf(block: FieldBlock): DeliveryStatusRecipient {
  return {
    action: firstWord(block.get('action')),
    status: statusCode(block.get('status')),
    recipient: typedAddress(block.get('final-recipient')) ?? typedAddress(block.get('original-recipient')),
    diagnostic: withoutType(block.get('diagnostic-code')) ?? withoutType(block.get('disposition')),
  }
}

function firstWord(value: string | undefined): string | null {
  const word = value?.trim().split(/[\s;(]/)[0]?.toLowerCase()
  return word ? word : null
}

/** `5.1.1`, or whatever the field says when it holds no such code. */
function statusCode(value: string | undefined): string | null {
  if (value === undefined) return null
  const code = /\b[245]\.\d{1,3}\.\d{1,3}\b/.exec(value)
  if (code) return code[0]
  const trimmed = value.trim()
  return trimmed === '' ? null : trimmed.slice(0, 32)
}

/** `rfc822; Bob@Example.com` → `bob@example.com`. */
function typedAddress(value: string | undefined): string | null {
  const address = withoutType(value)
    ?.replace(/^<(.*)>$/, '$1')
    .trim()
    .toLowerCase()
  return address ? address : null
}

/** `smtp; 550 5.1.1 unknown user` → `550 5.1.1 unknown user`. */
function withoutType(value: string | undefined): string | null {
  if (value === undefined) return null
  const text = value.replace(/^\s*[\w.-]+\s*;/, '').trim()
  return text === '' ? null : text
}
