import { randomBytes, randomUUID } from 'node:crypto'
import type { FakeDeliveryInput } from './sending.ts'
import { rfc5322Date } from './mime.ts'

/** What a bounce or an automatic reply needs of the message it answers. */
export interface AnsweredMessage {
  from: string
  to: string[]
  subject: string
  internetMessageId: string
  sentDateTime: string
  headers: { name: string; value: string }[]
}

/**
 * A non-delivery report as Exchange Online writes one for an address its organisation does
 * not have (550 5.1.10 RESOLVER.ADR.RecipientNotFound): RFC 3464 multipart/report from
 * "Microsoft Outlook", with the original's headers (its Message-ID and x- headers) returned
 * as text/rfc822-headers. Shaped after test/fixtures/inbound/26-bounce-exchange-ndr.eml.
 */
export function exchangeNdr(original: AnsweredMessage, recipients: string[], organisationDomain: string): string {
  const outer = `_${randomUUID()}_`
  const alternative = `_${randomUUID()}_`
  const server = 'SANDBOX01MB0001.namprd00.prod.outlook.com'
  const now = rfc5322Date(new Date())
  const diagnostic = (recipient: string) => `550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient ${recipient} not found by SMTP address lookup`
  const returned = [
    `From: ${original.from}`,
    `To: ${original.to.join(', ')}`,
    `Subject: ${original.subject}`,
    `Date: ${rfc5322Date(new Date(original.sentDateTime))}`,
    `Message-ID: ${original.internetMessageId}`,
    ...original.headers.filter((header) => /^x-/i.test(header.name)).map((header) => `${header.name}: ${header.value}`),
  ]
  return [
    `From: Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@${organisationDomain}>`,
    `To: ${original.from}`,
    `Date: ${now}`,
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${outer}"`,
    'X-MS-Exchange-Message-Is-Ndr:',
    'Content-Language: en-US',
    `Message-ID: <${randomUUID()}@${server}>`,
    `Subject: Undeliverable: ${original.subject}`,
    'MIME-Version: 1.0',
    'Return-Path: <>',
    '',
    `--${outer}`,
    `Content-Type: multipart/alternative; boundary="${alternative}"`,
    '',
    `--${alternative}`,
    'Content-Type: text/plain; charset="us-ascii"',
    '',
    'Delivery has failed to these recipients or groups:',
    '',
    ...recipients.flatMap((recipient) => [
      `${recipient}<mailto:${recipient}>`,
      "The email address you entered couldn't be found. Please check the recipient's email address and try to resend the message.",
      '',
    ]),
    'Diagnostic information for administrators:',
    '',
    `Generating server: ${server}`,
    '',
    ...recipients.flatMap((recipient) => [recipient, `Remote server returned '${diagnostic(recipient)}'`, '']),
    `--${alternative}--`,
    '',
    `--${outer}`,
    'Content-Type: message/delivery-status',
    '',
    `Reporting-MTA: dns;${server}`,
    `Arrival-Date: ${now}`,
    '',
    ...recipients.flatMap((recipient) => [
      `Original-Recipient: rfc822;${recipient}`,
      `Final-Recipient: rfc822;${recipient}`,
      'Action: failed',
      'Status: 5.1.10',
      `Diagnostic-Code: smtp;${diagnostic(recipient)}`,
      '',
    ]),
    `--${outer}`,
    'Content-Type: text/rfc822-headers',
    '',
    ...returned,
    '',
    `--${outer}--`,
    '',
  ].join('\r\n')
}

/**
 * An out-of-office reply as Exchange sends one: "Automatic reply:" subject, threaded to the
 * message it answers, `Auto-Submitted: auto-replied` and `X-MS-Exchange-Inbox-Rules-Loop`.
 * Shaped after test/fixtures/inbound/18-oof-exchange-threaded.eml.
 */
export function exchangeAutomaticReply(original: AnsweredMessage, from: string, text: string): FakeDeliveryInput {
  const references = original.headers.find((header) => header.name.toLowerCase() === 'references')?.value
  return {
    from,
    to: [original.from],
    subject: `Automatic reply: ${original.subject}`,
    body: text,
    internetMessageId: `<${randomBytes(16).toString('hex')}@${from.split('@')[1]}>`,
    headers: [
      { name: 'Thread-Topic', value: original.subject },
      { name: 'In-Reply-To', value: original.internetMessageId },
      { name: 'References', value: [references, original.internetMessageId].filter(Boolean).join(' ') },
      { name: 'X-Auto-Response-Suppress', value: 'All' },
      { name: 'X-MS-Exchange-Inbox-Rules-Loop', value: from },
      { name: 'Auto-Submitted', value: 'auto-replied' },
    ],
  }
}
