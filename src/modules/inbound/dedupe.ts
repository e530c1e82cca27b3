import { hash } from 'node:crypto'
import type { ParsedMail } from './parsed-mail.ts'

export type DedupeWay = 'source' | 'content' | 'identity'

export interface DedupeKey {
  kind: DedupeWay
  hash: string
}

/** The scope a key is unique in: `*` across all connectors, or the connector's id. */
export function dedupeScope(setting: 'global' | 'connector', connectorId: string): string {
  return setting === 'global' ? '*' : connectorId
}

/**
 * What collapsing every whitespace run to one space changes: runs of two or more, and single
 * whitespace other than a space. Matching only these (not every single space, as `\s+` does)
 * gives the same text several times faster on a long body.
 */
const WHITESPACE_TO_COLLAPSE = /\s{2,}|[^\S ]/g

function normalised(text: string): string {
  return text.replace(WHITESPACE_TO_COLLAPSE, ' ').trim()
}

function fingerprint(parts: unknown[]): string {
  return hash('sha256', JSON.stringify(parts))
}

/**
 * The three ways one mail is recognised again: its exact source; what a reader sees (sender,
 * recipients, subject, date, thread headers, body text, attachments) without transport
 * headers, as when a mail reaches a mailbox and one of its aliases; and its Message-ID with sender, subject and
 * recipients, as when a server re-delivers it with a rewritten body.
 */
export function dedupeKeys(mail: ParsedMail, sourceHash: string): DedupeKey[] {
  const from = mail.from?.address ?? ''
  const recipients = [...new Set([...mail.to, ...mail.cc])].sort()
  const subject = normalised(mail.subject)
  const keys: DedupeKey[] = [
    {
      kind: 'content',
      // The Date and thread headers belong to what the sender wrote: they tell a customer's second
      // identical "Any update?" from a copy of the first, which keeps them.
      hash: fingerprint([from, [...mail.to].sort(), [...mail.cc].sort(), subject, normalised(mail.text), mail.attachments.map((a) => a.sha256).sort(), mail.date?.toISOString() ?? null, mail.inReplyTo, mail.references]),
    },
  ]
  if (mail.messageId) keys.push({ kind: 'identity', hash: fingerprint([mail.messageId, from, subject, recipients]) })
  keys.push({ kind: 'source', hash: sourceHash })
  // One order everywhere, so that racing intakes take the key locks in the same order.
  return keys.sort((a, b) => (a.kind < b.kind ? -1 : a.kind > b.kind ? 1 : 0))
}
