/**
 * Realistic raw mail for bench/ingest.ts and its load client: Outlook-style multipart/mixed
 * (multipart/alternative text + html, both quoted-printable, then a small PDF in base64) with
 * a real-looking transport header block; about 40 KB each. Every message is distinct: its
 * Message-ID, sender and paragraphs follow from its `tag` and index, so no two share a
 * source, content or identity dedupe key.
 *
 * The world is test/support/ingest.ts's (support@contoso.example with a billing@ route, a
 * blocked *@spam.example) plus SENT_MESSAGES messages Mailgate sent from support@ for work
 * items WI-3000, WI-3001, ... (bench/ingest.ts adds them), and the mails cycle through five
 * kinds in a fixed mix of ten, each with a known outcome. Replies spread over those work
 * items, as replies to many tickets would, rather than all joining one.
 */
import { createHash } from 'node:crypto'

/** Sent messages (work items) the replies answer, in turn. */
export const SENT_MESSAGES = 100

/** The work item of sent message `k`, and the Message-ID Graph reported for it. */
export const sentWorkItem = (k: number) => `WI-${3000 + k}`
export const sentMessageId = (k: number) => `<${sentWorkItem(k).toLowerCase()}@contoso.example>`

export type MailKind = 'request' | 'billing' | 'reply' | 'auto-reply' | 'spam'

/** One cycle of the mix: 5 requests (3 support, 2 billing), 3 replies, 1 auto-reply, 1 spam. */
const CYCLE: MailKind[] = ['request', 'reply', 'billing', 'request', 'reply', 'request', 'auto-reply', 'billing', 'reply', 'spam']

/** The outcome each kind must get in the world above. */
export const EXPECTED_OUTCOME: Record<MailKind, string> = { request: 'requested', billing: 'requested', reply: 'appended', 'auto-reply': 'unhandled', spam: 'discarded' }

export const kindOf = (index: number): MailKind => CYCLE[index % CYCLE.length]!

/** The outcomes `count` consecutive mails from index 0 must get. */
export function expectedMix(count: number): Record<string, number> {
  const mix: Record<string, number> = {}
  for (let i = 0; i < count; i++) mix[EXPECTED_OUTCOME[kindOf(i)]] = (mix[EXPECTED_OUTCOME[kindOf(i)]] ?? 0) + 1
  return mix
}

const SENTENCES = [
  'The printer on the third floor jams again whenever someone prints double-sided.',
  'We tried the steps from your knowledge base article, but the error comes back after a restart.',
  'Could you send a technician this week? Our office is open from 8:00 to 17:30.',
  'Attached is the signed order form together with the delivery note from last Tuesday.',
  'The invoice lists twelve toner cartridges, but we received only ten of them.',
  'Our purchase order number is on the attached document; please quote it on the credit note.',
  'Since the firmware update the scanner no longer sends documents to our shared mailbox.',
  'Please let me know whether the maintenance contract covers the replacement of the fuser unit.',
  'Our facilities lead, Sophie, is available on Tuesdays and Thursdays for an on-site visit.',
  'We would also like to add two more devices to the contract from the first of next month.',
  'The display shows error code E-204 and the paper tray will not close properly.',
  'Grüße an das Team in Rotterdam, and thanks again for the quick help last time.',
]

/** Deterministic pseudo-random numbers (mulberry32), so a run is repeatable. */
function random(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Quoted-printable (RFC 2045) of UTF-8 text: CRLF line ends, soft breaks before 76 characters. */
function quotedPrintable(text: string): string {
  const out: string[] = []
  for (const line of text.split('\n')) {
    let encoded = Buffer.from(line, 'utf8')
      .toString('latin1')
      .replace(/[^\x20-\x3c\x3e-\x7e]|\x20$/g, (char) => `=${char.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`)
    while (encoded.length > 75) {
      let cut = 75
      while (encoded[cut - 1] === '=' || encoded[cut - 2] === '=') cut-- // never split an =XX escape
      out.push(`${encoded.slice(0, cut)}=`)
      encoded = encoded.slice(cut)
    }
    out.push(encoded)
  }
  return out.join('\r\n')
}

/** A small PDF-looking attachment (about 12 KB), base64 in 76-character lines; the same in every mail. */
const PDF_BASE64 = (() => {
  const next = random(2024)
  const stream = Array.from({ length: 9000 }, () => Math.floor(next() * 256))
  const pdf = Buffer.concat([
    Buffer.from('%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n3 0 obj\n<< /Length 9000 /Filter /FlateDecode >>\nstream\n', 'latin1'),
    Buffer.from(stream),
    Buffer.from(`\nendstream\nendobj\n${'0000000000 65535 f \n'.repeat(120)}trailer\n<< /Size 4 /Root 1 0 R >>\nstartxref\n9345\n%%EOF\n`, 'latin1'),
  ])
  return pdf.toString('base64').replace(/.{76}/g, '$&\r\n')
})()

const HTML_STYLE = `<style><!--
@font-face {font-family:"Cambria Math"; panose-1:2 4 5 3 5 4 6 3 2 4;}
@font-face {font-family:Aptos;}
p.MsoNormal, li.MsoNormal, div.MsoNormal {margin:0cm; font-size:12.0pt; font-family:"Aptos",sans-serif; mso-ligatures:standardcontextual; mso-fareast-language:EN-US;}
span.EmailStyle17 {mso-style-type:personal-compose; font-family:"Aptos",sans-serif; color:windowtext;}
.MsoChpDefault {mso-style-type:export-only; font-size:10.0pt; mso-ligatures:none;}
@page WordSection1 {size:612.0pt 792.0pt; margin:72.0pt 72.0pt 72.0pt 72.0pt;}
div.WordSection1 {page:WordSection1;}
--></style>`

interface Envelope {
  from: string
  to: string
  subject: string
  extraHeaders: string[]
}

function envelopeOf(kind: MailKind, n: number): Envelope {
  const customer = `Customer ${n} <customer${n}@fabrikam.example>`
  switch (kind) {
    case 'request':
      return { from: customer, to: 'Contoso Support <support@contoso.example>', subject: `Printer on floor 3 keeps jamming (site ${n})`, extraHeaders: [] }
    case 'billing':
      return { from: customer, to: 'Contoso Billing <billing@contoso.example>', subject: `Question about our last statement, account ${n}`, extraHeaders: [] }
    case 'reply': {
      // A reply to one of Mailgate's sent messages (3 replies a cycle, each cycle the next work item); it threads by In-Reply-To.
      const sent = sentMessageId(Math.floor(n / CYCLE.length) % SENT_MESSAGES)
      return {
        from: customer,
        to: 'support@contoso.example',
        subject: 'RE: Your printer',
        extraHeaders: [`In-Reply-To: ${sent}`, `References: ${sent}`],
      }
    }
    case 'auto-reply':
      return {
        from: customer,
        to: 'support@contoso.example',
        subject: 'Automatic reply: Your request',
        extraHeaders: ['Auto-Submitted: auto-replied', 'X-Auto-Response-Suppress: All', 'X-MS-Exchange-Inbox-Rules-Loop: customer@fabrikam.example'],
      }
    case 'spam':
      return { from: `Offers <offers${n}@spam.example>`, to: 'support@contoso.example', subject: `You have won (${n})`, extraHeaders: [] }
  }
}

function transportHeaders(n: number): string[] {
  const host = `DB9PR07MB${(3000 + (n % 997)).toString()}`
  const received = (from: string, by: string) =>
    `Received: from ${from}.eurprd04.prod.outlook.com (2603:10a6:102:1d2::72)\r\n by ${by}.eurprd04.prod.outlook.com (2603:10a6:102:24e::11) with\r\n Microsoft SMTP Server (version=TLS1_2,\r\n cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.7633.034; Tue, 4 Jun 2024 07:42:03 +0000`
  const signature = (seed: number) => {
    const next = random(seed)
    return Array.from({ length: 6 }, () => Buffer.from(Array.from({ length: 54 }, () => Math.floor(next() * 256))).toString('base64')).join('\r\n ')
  }
  return [
    received('DU2PR04CA9052', 'PAXPR04MB9642'),
    received('DB1PEPF000509E5', 'DU2PR04CA9052'),
    received(host, 'DB1PEPF000509E5'),
    'Authentication-Results: spf=pass (sender IP is 40.107.6.157)\r\n smtp.mailfrom=fabrikam.example; dkim=pass (signature was verified)\r\n header.d=fabrikam.example;dmarc=pass action=none\r\n header.from=fabrikam.example;compauth=pass reason=100',
    `ARC-Seal: i=1; a=rsa-sha256; s=arcselector10001; d=microsoft.com; cv=none;\r\n b=${signature(n * 3 + 1)}`,
    `ARC-Message-Signature: i=1; a=rsa-sha256; c=relaxed/relaxed; d=microsoft.com;\r\n s=arcselector10001;\r\n h=From:Date:Subject:Message-ID:Content-Type:MIME-Version;\r\n b=${signature(n * 3 + 2)}`,
    `DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=fabrikam.example;\r\n s=selector1; h=From:Date:Subject:Message-ID:Content-Type:MIME-Version;\r\n b=${signature(n * 3 + 3)}`,
    `X-MS-Exchange-Organization-Network-Message-Id: ${createHash('md5').update(String(n)).digest('hex')}`,
    'X-MS-Exchange-Organization-MessageDirectionality: Incoming',
    'X-Forefront-Antispam-Report:\r\n CIP:40.107.6.157;CTRY:NL;LANG:en;SCL:1;SRV:;IPV:NLI;SFV:NSPM;H:EUR02-VI1-obe.outbound.protection.outlook.com;CAT:NONE;SFS:(13230040)(366016)(1800799024);DIR:INB;',
    'X-MS-Exchange-Organization-SCL: 1',
  ]
}

function paragraphs(n: number, tag: string, id: string): string[] {
  const next = random(n * 7919 + tag.length)
  const out: string[] = []
  for (let p = 0; p < 18; p++) {
    out.push(Array.from({ length: 4 }, () => SENTENCES[Math.floor(next() * SENTENCES.length)]!).join(' '))
  }
  out[1] = `Our reference: ${tag}-${id}` // short, so quoted-printable never breaks it
  return out
}

/**
 * Mail number `n` of a run `tag` (distinct tags never share a Message-ID or body). `id` names it
 * in its Message-ID and body; the load client passes a placeholder and writes each request's
 * number over it, rather than building every mail anew.
 */
export function benchMail(tag: string, n: number, id = String(n)): Buffer {
  const kind = kindOf(n)
  const envelope = envelopeOf(kind, n)
  const boundary = `_004_${tag}${n}_`
  const alternative = `_000_${tag}${n}_`
  const body = paragraphs(n, tag, id)
  const text = ['Hello Contoso team,', '', ...body.flatMap((paragraph) => [paragraph, '']), 'Kind regards,', `Customer ${n}`, 'Fabrikam, Inc. | +31 10 555 0192', ''].join('\n')
  const html = [
    '<html xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office" xmlns:w="urn:schemas-microsoft-com:office:word" xmlns="http://www.w3.org/TR/REC-html40">',
    '<head>',
    '<meta http-equiv="Content-Type" content="text/html; charset=utf-8">',
    '<meta name="Generator" content="Microsoft Word 15 (filtered medium)">',
    HTML_STYLE,
    '</head>',
    '<body lang="EN-GB" link="#467886" vlink="#96607D" style="word-wrap:break-word">',
    '<div class="WordSection1">',
    '<p class="MsoNormal"><span lang="EN-US">Hello Contoso team,<o:p></o:p></span></p>',
    ...body.flatMap((paragraph) => [
      `<p class="MsoNormal"><span lang="EN-US" style="font-size:11.0pt;font-family:&quot;Aptos&quot;,sans-serif">${paragraph}<o:p></o:p></span></p>`,
      '<p class="MsoNormal"><span lang="EN-US"><o:p>&nbsp;</o:p></span></p>',
    ]),
    `<p class="MsoNormal"><span lang="EN-US">Kind regards,<br>Customer ${n}<br>Fabrikam, Inc. | +31 10 555 0192<o:p></o:p></span></p>`,
    '</div>',
    '</body>',
    '</html>',
    '',
  ].join('\n')
  const lines = [
    ...transportHeaders(n),
    `From: ${envelope.from}`,
    `To: ${envelope.to}`,
    `Subject: ${envelope.subject}`,
    `Thread-Topic: ${envelope.subject}`,
    'Date: Tue, 4 Jun 2024 07:41:55 +0000',
    `Message-ID: <${tag}-${id}.${kind}@fabrikam.example>`,
    ...envelope.extraHeaders,
    'Accept-Language: en-US',
    'Content-Language: en-US',
    'X-MS-Has-Attach: yes',
    `Content-Type: multipart/mixed;\r\n\tboundary="${boundary}"`,
    'MIME-Version: 1.0',
    '',
    `--${boundary}`,
    `Content-Type: multipart/alternative;\r\n\tboundary="${alternative}"`,
    '',
    `--${alternative}`,
    'Content-Type: text/plain; charset="utf-8"',
    'Content-Transfer-Encoding: quoted-printable',
    '',
    quotedPrintable(text),
    `--${alternative}`,
    'Content-Type: text/html; charset="utf-8"',
    'Content-Transfer-Encoding: quoted-printable',
    '',
    quotedPrintable(html),
    `--${alternative}--`,
    '',
    `--${boundary}`,
    'Content-Type: application/pdf; name="Delivery note.pdf"',
    'Content-Description: Delivery note.pdf',
    'Content-Disposition: attachment; filename="Delivery note.pdf"; size=12120;\r\n\tcreation-date="Tue, 04 Jun 2024 07:40:00 GMT"',
    'Content-Transfer-Encoding: base64',
    '',
    PDF_BASE64,
    '',
    `--${boundary}--`,
    '',
  ]
  return Buffer.from(lines.join('\r\n'), 'utf8')
}
