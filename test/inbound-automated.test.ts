import { describe, expect, it } from 'vitest'
import type { AutomatedKind } from '../db/schema.ts'
import { bounceDetails, classifyAutomated } from '../src/modules/inbound/automated.ts'
import type { MailReport, ParsedMail } from '../src/modules/inbound/parsed-mail.ts'

type Headers = Record<string, string | string[]>

/** A ParsedMail with harmless defaults; `headers` as a name → value(s) map (names lower-cased). */
function mail(overrides: Omit<Partial<ParsedMail>, 'headers'> & { headers?: Headers } = {}): ParsedMail {
  const { headers = {}, ...rest } = overrides
  const list = Object.entries(headers).flatMap(([name, value]) =>
    (Array.isArray(value) ? value : [value]).map((v) => ({ name: name.toLowerCase(), value: v })),
  )
  return {
    messageId: 'm1@example.com',
    inReplyTo: null,
    references: [],
    subject: 'Question about my order',
    from: { address: 'alice@example.com', name: 'Alice' },
    sender: null,
    replyTo: [],
    to: ['support@mailgate.test'],
    cc: [],
    bcc: [],
    returnPath: 'alice@example.com',
    date: new Date('2025-01-01T10:00:00Z'),
    importance: 'normal',
    headers: list,
    text: 'Hello, where is my order?',
    html: null,
    attachments: [],
    report: null,
    contentType: 'text/plain',
    problems: [],
    ...rest,
  }
}

function dsn(actions: { action: string | null; status?: string; recipient?: string; diagnostic?: string }[], extra: Partial<MailReport> = {}): MailReport {
  return {
    type: 'delivery-status',
    recipients: actions.map((a) => ({ action: a.action, status: a.status ?? null, recipient: a.recipient ?? null, diagnostic: a.diagnostic ?? null })),
    originalMessageId: null,
    originalHeaders: [],
    ...extra,
  }
}

const daemon = { address: 'mailer-daemon@mx.example.net', name: 'Mail Delivery System' }
const postmaster = { address: 'postmaster@contoso.onmicrosoft.com', name: 'Microsoft Outlook' }
const exchangeOof = { 'auto-submitted': 'auto-replied', 'x-auto-response-suppress': 'All', 'x-ms-exchange-inbox-rules-loop': 'bob@contoso.com' }

interface Case {
  name: string
  mail: ParsedMail
  kind: AutomatedKind | null
  /** Every string must be among the evidence. */
  evidence?: string[]
  suppress: boolean
  /** Every string must be among the suppress reasons. */
  reasons?: string[]
}

const cases: Case[] = [
  // ---- plain human mail and lying headers
  { name: 'plain human mail', mail: mail(), kind: null, suppress: false },
  {
    name: 'Outlook mail with X-Auto-Response-Suppress: All is human, but not to be auto-answered',
    mail: mail({ headers: { 'x-auto-response-suppress': 'All', 'x-ms-has-attach': '' } }),
    kind: null,
    suppress: true,
    reasons: ['X-Auto-Response-Suppress: All'],
  },
  {
    name: 'X-Auto-Response-Suppress: DR, RN, NRN asks for no receipts only: answer allowed',
    mail: mail({ headers: { 'x-auto-response-suppress': 'DR, RN, NRN' } }),
    kind: null,
    suppress: false,
  },
  {
    name: 'X-Auto-Response-Suppress: oof,autoreply (lower case, no spaces)',
    mail: mail({ headers: { 'x-auto-response-suppress': 'oof,autoreply' } }),
    kind: null,
    suppress: true,
    reasons: ['X-Auto-Response-Suppress: OOF', 'X-Auto-Response-Suppress: AutoReply'],
  },
  {
    name: 'X-Auto-Response-Suppress with a prototype name is just garbage',
    mail: mail({ headers: { 'x-auto-response-suppress': 'constructor, __proto__' } }),
    kind: null,
    suppress: false,
  },
  {
    name: 'newsletter with List-Id and List-Unsubscribe',
    mail: mail({ headers: { 'list-id': '<news.example.com>', 'list-unsubscribe': '<https://example.com/u>' } }),
    kind: null,
    suppress: true,
    reasons: ['List-Id present', 'List-Unsubscribe present'],
  },
  {
    name: 'bulk mail with Precedence: bulk and Feedback-ID',
    mail: mail({ headers: { precedence: 'Bulk', 'feedback-id': '1:campaign:esp' } }),
    kind: null,
    suppress: true,
    reasons: ['Precedence: bulk', 'Feedback-ID present'],
  },
  { name: 'Precedence: list', mail: mail({ headers: { precedence: 'list' } }), kind: null, suppress: true, reasons: ['Precedence: list'] },
  { name: 'Precedence: junk', mail: mail({ headers: { precedence: 'junk' } }), kind: null, suppress: true, reasons: ['Precedence: junk'] },
  { name: 'mailing-list post with List-Post only', mail: mail({ headers: { 'list-post': '<mailto:l@x.org>' } }), kind: null, suppress: true },
  { name: 'empty Return-Path alone', mail: mail({ returnPath: '' }), kind: null, suppress: false },
  {
    name: 'empty Return-Path with bounce-like body but a human subject: not a bounce',
    mail: mail({ returnPath: '', text: 'Your parcel could not be delivered today.' }),
    kind: null,
    suppress: false,
  },
  { name: 'Auto-Submitted: no', mail: mail({ headers: { 'auto-submitted': 'no' } }), kind: null, suppress: false },
  { name: 'Auto-Submitted: No (comment)', mail: mail({ headers: { 'auto-submitted': 'No (manual)' } }), kind: null, suppress: false },
  { name: 'Auto-Submitted empty value is ignored', mail: mail({ headers: { 'auto-submitted': '   ' } }), kind: null, suppress: false },
  {
    name: 'human reply to an auto reply: "Re: Automatic reply:"',
    mail: mail({ subject: 'Re: Automatic reply: Question about my order', headers: { 'x-auto-response-suppress': 'All' } }),
    kind: null,
    suppress: true,
  },
  { name: 'human "AW: Automatische Antwort:"', mail: mail({ subject: 'AW: Automatische Antwort: Angebot' }), kind: null, suppress: false },
  { name: 'prefix in the middle of the subject', mail: mail({ subject: 'About the Automatic reply: it is broken' }), kind: null, suppress: false },
  { name: 'human forwards a bounce: "Fw: Undeliverable:"', mail: mail({ subject: 'Fw: Undeliverable: Invoice' }), kind: null, suppress: false },
  { name: 'human says "Undeliverable:" but is no daemon', mail: mail({ subject: 'Undeliverable: parcel 123' }), kind: null, suppress: false },
  {
    name: 'X-MS-Exchange-Inbox-Rules-Loop alone (rule-forwarded customer mail)',
    mail: mail({ headers: { 'x-ms-exchange-inbox-rules-loop': 'support@contoso.com' } }),
    kind: null,
    suppress: false,
  },
  { name: 'X-Autoreply: no', mail: mail({ headers: { 'x-autoreply': 'no' } }), kind: null, suppress: false },

  // ---- Exchange out-of-office in several languages
  ...(
    [
      ['Automatic reply: Question about my order', 'Automatic reply:'],
      ['Automatische Antwort: Angebot', 'Automatische Antwort:'],
      ['Réponse automatique\u00a0: Devis', 'Réponse automatique\u00a0:'],
      ['Respuesta automática: Pedido', 'Respuesta automática:'],
      ['Risposta automatica: Ordine', 'Risposta automatica:'],
      ['Automatisch antwoord: Bestelling', 'Automatisch antwoord:'],
      ['Autosvar: Order', 'Autosvar:'],
      ['Автоматический ответ: Заказ', 'Автоматический ответ:'],
      ['自動応答: 注文', '自動応答:'],
      ['  [EXTERNAL] Automatic reply: Order', 'Automatic reply:'],
      ['AUTOMATIC REPLY: shouting', 'AUTOMATIC REPLY:'],
    ] as const
  ).map(
    ([subject, prefix]): Case => ({
      name: `Exchange OOF "${subject}"`,
      mail: mail({ subject, headers: exchangeOof, text: 'I am travelling.' }),
      kind: 'out_of_office',
      evidence: [`subject prefix "${prefix}"`, 'Auto-Submitted: auto-replied', 'X-MS-Exchange-Inbox-Rules-Loop'],
      suppress: true,
      reasons: ['automated: out_of_office', 'X-Auto-Response-Suppress: All', 'Auto-Submitted: auto-replied'],
    }),
  ),
  {
    name: 'Réponse automatique with decomposed accent',
    mail: mail({ subject: 'Re\u0301ponse automatique : Devis' }),
    kind: 'out_of_office',
    evidence: ['subject prefix "Réponse automatique :"'],
    suppress: true,
  },
  { name: 'old Outlook "Out of Office AutoReply:"', mail: mail({ subject: 'Out of Office AutoReply: Order' }), kind: 'out_of_office', suppress: true },
  { name: '"OOO: back Monday"', mail: mail({ subject: 'OOO: back Monday' }), kind: 'out_of_office', suppress: true },
  { name: '"Abwesenheitsnotiz" without colon', mail: mail({ subject: 'Abwesenheitsnotiz Angebot' }), kind: 'out_of_office', suppress: true },
  {
    name: 'Gmail vacation responder saying "out of the office"',
    mail: mail({ subject: 'Re: Question about my order', headers: { 'auto-submitted': 'auto-replied' }, text: 'Thanks, I am out of the office until 6 January.' }),
    kind: 'out_of_office',
    evidence: ['Auto-Submitted: auto-replied', 'body says "out of the office"'],
    suppress: true,
  },
  {
    name: 'Gmail vacation responder without out-of-office wording',
    mail: mail({ subject: 'Re: Question about my order', headers: { 'auto-submitted': 'auto-replied' }, text: 'Thanks for writing, I will answer soon.' }),
    kind: 'auto_reply',
    evidence: ['Auto-Submitted: auto-replied'],
    suppress: true,
    reasons: ['automated: auto_reply', 'Auto-Submitted: auto-replied'],
  },
  {
    name: 'X-Autoreply with German "abwesend" in the subject',
    mail: mail({ subject: 'Ich bin abwesend', headers: { 'x-autoreply': 'yes' } }),
    kind: 'out_of_office',
    evidence: ['X-Autoreply: yes', 'subject says "abwesen"'],
    suppress: true,
  },

  // ---- auto replies
  {
    name: 'Auto-Submitted: Auto-Generated; with parameters',
    mail: mail({ headers: { 'auto-submitted': 'Auto-Generated; owner-email="x@y"' }, text: 'Your ticket 42 was received. I am on vacation.' }),
    kind: 'auto_reply',
    evidence: ['Auto-Submitted: auto-generated'],
    suppress: true,
  },
  { name: 'Auto-Submitted: auto-notified', mail: mail({ headers: { 'auto-submitted': 'auto-notified' } }), kind: 'auto_reply', suppress: true },
  { name: 'Auto-Submitted: garbage value counts', mail: mail({ headers: { 'auto-submitted': '\u0000??yes' } }), kind: 'auto_reply', suppress: true },
  {
    name: 'Auto-Submitted repeated, first "no", then auto-replied',
    mail: mail({ headers: { 'auto-submitted': ['no', 'auto-replied'] } }),
    kind: 'auto_reply',
    suppress: true,
  },
  { name: 'X-Autoreply: yes', mail: mail({ headers: { 'x-autoreply': 'yes' } }), kind: 'auto_reply', evidence: ['X-Autoreply: yes'], suppress: true },
  { name: 'X-Autorespond', mail: mail({ headers: { 'x-autorespond': 'Thanks' } }), kind: 'auto_reply', evidence: ['X-Autorespond: Thanks'], suppress: true },
  { name: 'X-Autoreply-From', mail: mail({ headers: { 'x-autoreply-from': 'bob@x.org' } }), kind: 'auto_reply', suppress: true },
  { name: 'X-Mail-Autoreply', mail: mail({ headers: { 'x-mail-autoreply': '' } }), kind: 'auto_reply', evidence: ['X-Mail-Autoreply'], suppress: true },
  {
    name: 'Precedence: auto_reply',
    mail: mail({ headers: { precedence: 'auto_reply' } }),
    kind: 'auto_reply',
    evidence: ['Precedence: auto_reply'],
    suppress: true,
  },
  { name: 'X-Precedence: auto_reply', mail: mail({ headers: { 'x-precedence': 'auto_reply' } }), kind: 'auto_reply', suppress: true },
  {
    name: 'X-Autogenerated: Reply',
    mail: mail({ headers: { 'x-autogenerated': 'Reply' } }),
    kind: 'auto_reply',
    evidence: ['X-Autogenerated: Reply'],
    suppress: true,
  },
  { name: 'X-Autogenerated: Forward is no auto reply', mail: mail({ headers: { 'x-autogenerated': 'Forward' } }), kind: null, suppress: false },
  {
    name: 'X-POST-MessageClass: 9; Autoresponder',
    mail: mail({ headers: { 'x-post-messageclass': '9; Autoresponder' } }),
    kind: 'auto_reply',
    evidence: ['X-POST-MessageClass: 9; Autoresponder'],
    suppress: true,
  },

  // ---- RFC 3464 delivery status notifications, RFC 8098 read receipts
  {
    name: 'DSN failed',
    mail: mail({
      from: daemon,
      returnPath: '',
      subject: 'Undelivered Mail Returned to Sender',
      contentType: 'multipart/report',
      report: dsn([{ action: 'delivered' }, { action: 'failed', status: '5.1.1' }]),
    }),
    kind: 'bounce',
    evidence: ['multipart/report; report-type=delivery-status, Action: failed'],
    suppress: true,
    reasons: ['automated: bounce'],
  },
  {
    name: 'DSN delayed',
    mail: mail({ from: daemon, subject: 'Delayed Mail (still being retried)', contentType: 'multipart/report', report: dsn([{ action: 'delayed', status: '4.4.1' }]) }),
    kind: 'delay',
    evidence: ['multipart/report; report-type=delivery-status, Action: delayed'],
    suppress: true,
  },
  {
    name: 'DSN delivered (success notice)',
    mail: mail({ from: daemon, subject: 'Successful Mail Delivery Report', contentType: 'multipart/report', report: dsn([{ action: 'delivered', status: '2.0.0' }]) }),
    kind: 'auto_reply',
    evidence: ['multipart/report; report-type=delivery-status, Action: delivered (delivery success notice)'],
    suppress: true,
  },
  {
    name: 'DSN with no Action but a 5.x.x status',
    mail: mail({ contentType: 'multipart/report', report: dsn([{ action: null, status: '5.7.1' }]) }),
    kind: 'bounce',
    evidence: ['multipart/report; report-type=delivery-status, Status: 5.7.1'],
    suppress: true,
  },
  {
    name: 'DSN with unreadable recipients',
    mail: mail({ contentType: 'multipart/report', report: dsn([]) }),
    kind: 'bounce',
    suppress: true,
  },
  {
    name: 'MDN read receipt',
    mail: mail({
      subject: 'Read: Question about my order',
      contentType: 'multipart/report',
      report: { type: 'disposition-notification', recipients: [], originalMessageId: 'x@y', originalHeaders: [] },
    }),
    kind: 'read_receipt',
    evidence: ['multipart/report; report-type=disposition-notification'],
    suppress: true,
  },
  {
    name: 'abuse feedback report',
    mail: mail({ contentType: 'multipart/report', report: { type: 'feedback-report', recipients: [], originalMessageId: null, originalHeaders: [] } }),
    kind: 'auto_reply',
    evidence: ['multipart/report; report-type=feedback-report'],
    suppress: true,
  },

  // ---- non-RFC bounces and delay notices
  {
    name: 'Exchange "Undeliverable:" from postmaster with <> return path',
    mail: mail({
      from: postmaster,
      returnPath: '',
      subject: 'Undeliverable: Question about my order',
      text: "Your message to bob@contoso.com couldn't be delivered.",
    }),
    kind: 'bounce',
    evidence: ['subject "Undeliverable:"', 'From: postmaster@contoso.onmicrosoft.com', 'Return-Path: <>'],
    suppress: true,
  },
  {
    name: 'qmail "failure notice" with <> only',
    mail: mail({ from: { address: 'bounces@host.example', name: null }, returnPath: '', subject: 'failure notice' }),
    kind: 'bounce',
    evidence: ['subject "failure notice"', 'Return-Path: <>'],
    suppress: true,
  },
  ...(
    [
      'Mail delivery failed: returning message to sender',
      'Delivery Status Notification (Failure)',
      'Returned mail: see transcript for details',
      'Unzustellbar: Angebot',
      'Non remis : Devis',
      'No se puede entregar: Pedido',
      'Delivery Failure',
    ] as const
  ).map(
    (subject): Case => ({
      name: `non-RFC bounce "${subject}" from MAILER-DAEMON`,
      mail: mail({ from: daemon, returnPath: null, subject }),
      kind: 'bounce',
      suppress: true,
    }),
  ),
  ...(['Delivery Status Notification (Delay)', 'Delayed Mail (still being retried)', 'Warning: message 1abc-000X-yz delayed 24 hours'] as const).map(
    (subject): Case => ({
      name: `non-RFC delay "${subject}"`,
      mail: mail({ from: daemon, returnPath: '', subject }),
      kind: 'delay',
      suppress: true,
    }),
  ),
  {
    name: 'MAILER-DAEMON with a neutral subject but bounce wording in the body',
    mail: mail({ from: { address: 'MAILER-DAEMON', name: null }, subject: 'Notice', text: 'This is the mail system at host mx.example.net.\n\n<bob@x.org>: host said: 550 5.1.1 User unknown' }),
    kind: 'bounce',
    suppress: true,
  },
  {
    name: 'MAILER-DAEMON postfix delay warning in the body only',
    mail: mail({ from: daemon, subject: 'Notice', text: 'THIS IS A WARNING ONLY. YOU DO NOT NEED TO RESEND YOUR MESSAGE. Your message could not be delivered for more than 3 hour(s).' }),
    kind: 'delay',
    suppress: true,
  },
  {
    name: 'postmaster writing an ordinary mail is not a bounce',
    mail: mail({ from: { address: 'postmaster@example.org', name: 'IT' }, subject: 'Maintenance tonight', text: 'The server will be down from 22:00.' }),
    kind: null,
    suppress: false,
  },
  {
    name: 'exim X-Failed-Recipients with <>',
    mail: mail({ returnPath: '', subject: 'Something', headers: { 'x-failed-recipients': 'bob@x.org' } }),
    kind: 'bounce',
    evidence: ['X-Failed-Recipients', 'Return-Path: <>'],
    suppress: true,
  },
]

describe('classifyAutomated', () => {
  it.each(cases)('$name', (c) => {
    const verdict = classifyAutomated(c.mail)
    expect(verdict.automated?.kind ?? null).toBe(c.kind)
    if (c.kind !== null) expect(verdict.automated!.evidence.length).toBeGreaterThan(0)
    for (const e of c.evidence ?? []) expect(verdict.automated?.evidence).toContain(e)
    expect(verdict.suppressAutomatedAnswer).toBe(c.suppress)
    expect(verdict.suppressReasons.length > 0).toBe(c.suppress)
    for (const r of c.reasons ?? []) expect(verdict.suppressReasons).toContain(r)
  })

  it('never throws on garbage', () => {
    const garbage = mail({
      subject: undefined as unknown as string,
      text: null as unknown as string,
      from: { address: null as unknown as string, name: null },
      headers: { 'auto-submitted': '((((', precedence: ';;;', 'x-auto-response-suppress': ',,,' },
      report: { type: null as unknown as string, recipients: [null, { action: 7 }] as any, originalMessageId: null, originalHeaders: null as any },
    })
    garbage.headers.push(null as any, { name: 5, value: {} } as any)
    expect(() => classifyAutomated(garbage)).not.toThrow()
    expect(() => bounceDetails(garbage)).not.toThrow()
  })
})

describe('bounceDetails', () => {
  it('reads the first failed recipient and the original from a DSN', () => {
    const m = mail({
      from: daemon,
      returnPath: '',
      subject: 'Undelivered Mail Returned to Sender',
      contentType: 'multipart/report',
      report: dsn(
        [
          { action: 'delivered', status: '2.0.0', recipient: 'carol@x.org' },
          { action: 'delayed', status: '4.4.1', recipient: 'dave@x.org' },
          { action: 'failed', status: '5.1.1', recipient: 'bob@x.org', diagnostic: 'smtp; 550 5.1.1 <bob@x.org>: Recipient address rejected: User unknown' },
        ],
        {
          originalMessageId: 'orig-1@mailgate.test',
          originalHeaders: [
            { name: 'message-id', value: '<orig-1@mailgate.test>' },
            { name: 'x-mailgate-message', value: '0197a1b2-0000-7000-8000-000000000001' },
          ],
        },
      ),
    })
    expect(bounceDetails(m)).toEqual({
      recipient: 'bob@x.org',
      status: '5.1.1',
      diagnostic: 'smtp; 550 5.1.1 <bob@x.org>: Recipient address rejected: User unknown',
      originalMessageId: 'orig-1@mailgate.test',
      originalMailgateId: '0197a1b2-0000-7000-8000-000000000001',
    })
  })

  it('takes the first delayed recipient of a delay DSN, and the Message-ID from the original headers', () => {
    const m = mail({
      contentType: 'multipart/report',
      report: dsn([{ action: 'delayed', status: '4.4.7', recipient: 'dave@x.org' }], { originalHeaders: [{ name: 'message-id', value: '<orig-2@mailgate.test>' }] }),
    })
    expect(bounceDetails(m)).toEqual({ recipient: 'dave@x.org', status: '4.4.7', diagnostic: null, originalMessageId: 'orig-2@mailgate.test', originalMailgateId: null })
  })

  it('reads a non-RFC bounce from its text', () => {
    const m = mail({
      from: daemon,
      returnPath: '',
      subject: 'Mail delivery failed: returning message to sender',
      headers: { 'x-failed-recipients': 'Bob@X.org' },
      text: [
        'This message was created automatically by mail delivery software.',
        '',
        'A message that you sent could not be delivered to one or more of its recipients.',
        '',
        '  bob@x.org',
        '    host mx.x.org [192.0.2.1]',
        '    SMTP error from remote mail server after RCPT TO:<bob@x.org>:',
        '    550 5.1.1 No such user',
        '',
        '------ This is a copy of the message, including all the headers. ------',
        'Message-ID: <orig-3@mailgate.test>',
        'X-Mailgate-Message: 0197a1b2-0000-7000-8000-000000000003',
      ].join('\n'),
    })
    expect(bounceDetails(m)).toEqual({
      recipient: 'bob@x.org',
      status: '5.1.1',
      diagnostic: '550 5.1.1 No such user',
      originalMessageId: 'orig-3@mailgate.test',
      originalMailgateId: '0197a1b2-0000-7000-8000-000000000003',
    })
  })

  it('reads the recipient of an Exchange-style text bounce', () => {
    const m = mail({ from: postmaster, returnPath: '', subject: 'Undeliverable: Hi', text: "Your message to bob@contoso.com couldn't be delivered.\nRemote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound'" })
    expect(bounceDetails(m)).toMatchObject({ recipient: 'bob@contoso.com', status: '5.1.10' })
  })

  it('is null for mail that is no bounce or delay, and for read receipts', () => {
    expect(bounceDetails(mail())).toBeNull()
    expect(bounceDetails(mail({ subject: 'Automatic reply: x', headers: { 'auto-submitted': 'auto-replied' } }))).toBeNull()
    expect(bounceDetails(mail({ report: { type: 'disposition-notification', recipients: [], originalMessageId: 'x@y', originalHeaders: [] } }))).toBeNull()
  })
})
