import { randomUUID } from 'node:crypto'

export interface RawMailOptions {
  from?: string
  to?: string[]
  cc?: string[]
  subject?: string
  messageId?: string
  inReplyTo?: string
  references?: string[]
  body?: string
  /** Extra header lines, e.g. `Auto-Submitted: auto-replied`. */
  headers?: string[]
  date?: string
}

/** A plain-text RFC 5322 message with CRLF line ends; a fresh Message-ID unless given. */
export function rawMail(options: RawMailOptions = {}): string {
  const lines = [
    `Received: from mail.fabrikam.example (mail.fabrikam.example [192.0.2.7]) by mx.contoso.example; ${options.date ?? 'Mon, 30 Nov 2026 09:00:00 +0000'}`,
    `From: ${options.from ?? 'Alice Customer <alice@fabrikam.example>'}`,
    `To: ${(options.to ?? ['support@contoso.example']).join(', ')}`,
    ...(options.cc?.length ? [`Cc: ${options.cc.join(', ')}`] : []),
    `Subject: ${options.subject ?? 'Printer on floor 3 is jammed'}`,
    `Date: ${options.date ?? 'Mon, 30 Nov 2026 09:00:00 +0000'}`,
    `Message-ID: <${options.messageId ?? `${randomUUID()}@fabrikam.example`}>`,
    ...(options.inReplyTo ? [`In-Reply-To: <${options.inReplyTo}>`] : []),
    ...(options.references?.length ? [`References: ${options.references.map((id) => `<${id}>`).join(' ')}`] : []),
    ...(options.headers ?? []),
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
    options.body ?? `Hello,\r\nthe printer jams again. ${randomUUID()}\r\nAlice`,
    '',
  ]
  return lines.join('\r\n')
}
