import { createHash, randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { createAjv } from '../src/lib/validation.ts'
import { fromGraphMessage, GraphMessageBody, type GraphMessageInput } from '../src/modules/inbound/graph-message.ts'
import { attachmentContent, parseMime } from '../src/modules/inbound/mime.ts'

const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'

function crlf(...lines: string[]): string {
  return lines.join('\r\n')
}

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex')
}

function base64Lines(data: Buffer): string {
  return data.toString('base64').replace(/.{76}/g, '$&\r\n')
}

async function* chunksOf(message: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let offset = 0; offset < message.length; offset += size) yield message.subarray(offset, offset + size)
}

function parse(message: string | Buffer, options?: Parameters<typeof parseMime>[1], chunkSize = 4096) {
  const bytes = typeof message === 'string' ? Buffer.from(message, 'utf8') : message
  return parseMime(chunksOf(bytes, chunkSize), options)
}

describe('parseMime', () => {
  it('reads a plain text mail', async () => {
    const mail = await parse(
      crlf(
        'Return-Path: <Bounces+X@Example.com>',
        'Received: from a by b;',
        '\tTue, 1 Jul 2003 10:52:37 +0200',
        'From: "Ann Example" <Ann@Example.COM>',
        'Sender: Helper <helper@example.com>',
        'To: bob@example.com, "Bob again" <BOB@example.com>, Team: carol@example.com, dave@example.com;',
        'Cc: Eve <eve@example.com>',
        'Bcc: frank@example.com',
        'Reply-To: replies@example.com',
        'Subject: Quarterly',
        ' numbers',
        'Date: Tue, 1 Jul 2003 10:52:37 +0200',
        'Message-ID: <m1@example.com>',
        'In-Reply-To: <m0@example.com>',
        'References: <root@example.com>',
        ' <m0@example.com>',
        'X-Priority: 1 (Highest)',
        'Content-Type: text/plain; charset=utf-8',
        '',
        'Hello Bob,',
        'the numbers are in.',
        '',
      ),
    )
    expect(mail).toMatchObject({
      messageId: 'm1@example.com',
      inReplyTo: 'm0@example.com',
      references: ['root@example.com', 'm0@example.com'],
      subject: 'Quarterly numbers',
      from: { address: 'ann@example.com', name: 'Ann Example' },
      sender: { address: 'helper@example.com', name: 'Helper' },
      to: ['bob@example.com', 'carol@example.com', 'dave@example.com'],
      cc: ['eve@example.com'],
      bcc: ['frank@example.com'],
      replyTo: ['replies@example.com'],
      returnPath: 'bounces+x@example.com',
      importance: 'high',
      html: null,
      attachments: [],
      report: null,
      contentType: 'text/plain',
      problems: [],
    })
    expect(mail.date?.toISOString()).toBe('2003-07-01T08:52:37.000Z')
    expect(mail.text).toBe('Hello Bob,\nthe numbers are in.\n')
    expect(mail.headers.map((header) => header.name)).toEqual([
      'return-path',
      'received',
      'from',
      'sender',
      'to',
      'cc',
      'bcc',
      'reply-to',
      'subject',
      'date',
      'message-id',
      'in-reply-to',
      'references',
      'x-priority',
      'content-type',
    ])
    expect(mail.headers[1]).toEqual({ name: 'received', value: 'from a by b;\tTue, 1 Jul 2003 10:52:37 +0200' })
    expect(mail.headers[12]).toEqual({ name: 'references', value: '<root@example.com> <m0@example.com>' })
  })

  it('reads importance from Importance and Priority, the null Return-Path, and a bad date as null', async () => {
    const low = await parse(crlf('Importance: Low', 'Return-Path: <>', 'Date: someday soon', '', 'x'))
    expect(low).toMatchObject({ importance: 'low', returnPath: '', date: null, subject: '' })
    const urgent = await parse(crlf('Priority: urgent', '', 'x'))
    expect(urgent.importance).toBe('high')
    const plain = await parse(crlf('X-Priority: 3', '', 'x'))
    expect(plain).toMatchObject({ importance: 'normal', returnPath: null })
  })

  it('derives text from an html-only mail', async () => {
    const mail = await parse(
      crlf('From: a@example.com', 'Content-Type: text/html; charset=utf-8', '', '<html><body><p>Hello <b>there</b></p><p>Second &amp; last</p></body></html>'),
    )
    expect(mail.html).toContain('<b>there</b>')
    expect(mail.text).toContain('Hello there')
    expect(mail.text).toContain('Second & last')
    expect(mail.contentType).toBe('text/html')
  })

  it('derives text from html inside multipart/related, which mailparser leaves empty', async () => {
    const mail = await parse(
      crlf(
        'Content-Type: multipart/related; boundary="rel"',
        '',
        '--rel',
        'Content-Type: text/html; charset=utf-8',
        '',
        '<p>Logo below</p><img src="cid:logo@x">',
        '--rel',
        'Content-Type: image/png',
        'Content-ID: <logo@x>',
        'Content-Transfer-Encoding: base64',
        '',
        Buffer.from('png bytes').toString('base64'),
        '--rel--',
        '',
      ),
    )
    expect(mail.text).toMatch(/^Logo below\b/)
    expect(mail.attachments).toEqual([
      { name: 'attachment-1.png', contentType: 'image/png', size: 9, sha256: sha256('png bytes'), contentId: 'logo@x', inline: true },
    ])
  })

  it('reads multipart/alternative with attachments, hashing and counting their decoded bytes', async () => {
    const pdf = randomBytes(150_000)
    const image = randomBytes(3000)
    const binary = randomBytes(777)
    const mail = await parse(
      crlf(
        'From: a@example.com',
        'Subject: Files',
        'Content-Type: multipart/mixed; boundary="outer"',
        '',
        'preamble',
        '--outer',
        'Content-Type: multipart/alternative; boundary="alt"',
        '',
        '--alt',
        'Content-Type: text/plain; charset=utf-8',
        'Content-Transfer-Encoding: quoted-printable',
        '',
        'See the files =E2=80=93 three of them.',
        '--alt',
        'Content-Type: multipart/related; boundary="rel"',
        '',
        '--rel',
        'Content-Type: text/html; charset=utf-8',
        '',
        '<p>See the files</p><img src="cid:img1@x">',
        '--rel',
        'Content-Type: image/jpeg; name="photo.jpg"',
        'Content-Disposition: inline; filename="photo.jpg"',
        'Content-ID: <img1@x>',
        'Content-Transfer-Encoding: base64',
        '',
        base64Lines(image),
        '--rel--',
        '--alt--',
        '--outer',
        'Content-Type: application/pdf; name="Report Q1.pdf"',
        'Content-Disposition: attachment; filename="Report Q1.pdf"',
        'Content-Transfer-Encoding: base64',
        '',
        base64Lines(pdf),
        '--outer',
        'Content-Type: application/octet-stream',
        'Content-Transfer-Encoding: base64',
        '',
        base64Lines(binary),
        '--outer--',
        '',
      ),
      undefined,
      1000,
    )
    expect(mail.text).toBe('See the files – three of them.')
    expect(mail.html).toContain('<p>See the files</p>')
    expect(mail.contentType).toBe('multipart/mixed')
    expect(mail.attachments).toEqual([
      { name: 'photo.jpg', contentType: 'image/jpeg', size: 3000, sha256: sha256(image), contentId: 'img1@x', inline: true },
      { name: 'Report Q1.pdf', contentType: 'application/pdf', size: 150_000, sha256: sha256(pdf), contentId: null, inline: false },
      { name: 'attachment-3', contentType: 'application/octet-stream', size: 777, sha256: sha256(binary), contentId: null, inline: false },
    ])
    expect(mail.problems).toEqual([])
  })

  it('reads an RFC 3464 bounce: recipients, status, and the returned original', async () => {
    const mail = await parse(
      crlf(
        'Return-Path: <>',
        'From: Mail Delivery System <MAILER-DAEMON@mx.example.net>',
        'To: sender@example.com',
        'Subject: Undelivered Mail Returned to Sender',
        'Auto-Submitted: auto-replied',
        'Content-Type: multipart/report; report-type=Delivery-Status;',
        '\tboundary="dsn"',
        '',
        '--dsn',
        'Content-Type: text/plain; charset=us-ascii',
        '',
        'I could not deliver your message.',
        '--dsn',
        'Content-Type: message/delivery-status',
        '',
        'Reporting-MTA: dns; mx.example.net',
        'Arrival-Date: Tue, 1 Jul 2003 10:52:37 +0200',
        '',
        'Final-Recipient: rfc822; Nobody@Example.org',
        'Original-Recipient: rfc822;nobody@example.org',
        'Action: failed',
        'Status: 5.1.1',
        'Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.org>:',
        '    Recipient address rejected: User unknown',
        '',
        'Final-Recipient: rfc822; slow@example.org',
        'Action: delayed',
        'Status: 4.4.1 (connection timed out)',
        '',
        '--dsn',
        'Content-Type: message/rfc822',
        '',
        'From: sender@example.com',
        'To: nobody@example.org',
        'Subject: Your request',
        'Message-ID: <Orig-1@mailgate.example.com>',
        'X-Mailgate-Message: 0190a5f1-0000-7000-8000-000000000001',
        'X-Long: first',
        '  second',
        '',
        'Original body',
        '--dsn--',
        '',
      ),
    )
    expect(mail.returnPath).toBe('')
    expect(mail.contentType).toBe('multipart/report')
    expect(mail.text).toBe('I could not deliver your message.')
    expect(mail.report).toEqual({
      type: 'delivery-status',
      recipients: [
        { action: 'failed', status: '5.1.1', recipient: 'nobody@example.org', diagnostic: '550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown' },
        { action: 'delayed', status: '4.4.1', recipient: 'slow@example.org', diagnostic: null },
      ],
      originalMessageId: 'Orig-1@mailgate.example.com',
      originalHeaders: [
        { name: 'from', value: 'sender@example.com' },
        { name: 'to', value: 'nobody@example.org' },
        { name: 'subject', value: 'Your request' },
        { name: 'message-id', value: '<Orig-1@mailgate.example.com>' },
        { name: 'x-mailgate-message', value: '0190a5f1-0000-7000-8000-000000000001' },
        { name: 'x-long', value: 'first   second' },
      ],
    })
    expect(mail.attachments.map((attachment) => [attachment.name, attachment.contentType])).toEqual([
      ['attachment-1.txt', 'message/delivery-status'],
      ['attachment-2.eml', 'message/rfc822'],
    ])
  })

  it('reads a bounce that returns only the headers (text/rfc822-headers)', async () => {
    const mail = await parse(
      crlf(
        'From: postmaster@example.net',
        'Content-Type: multipart/report; report-type=delivery-status; boundary=b1',
        '',
        '--b1',
        'Content-Type: text/plain',
        '',
        'Delivery failed.',
        '--b1',
        'Content-Type: message/delivery-status',
        '',
        'Reporting-MTA: dns; example.net',
        '',
        'Final-Recipient: rfc822; <Gone@Example.org>',
        'Action: failed',
        'Status: 5.2.1',
        '',
        '--b1',
        'Content-Type: text/rfc822-headers',
        '',
        'Message-ID: <abc@mailgate.example.com>',
        'X-Mailgate-Message: 42',
        'Subject: hi',
        '--b1--',
        '',
      ),
    )
    expect(mail.report).toMatchObject({
      type: 'delivery-status',
      recipients: [{ action: 'failed', status: '5.2.1', recipient: 'gone@example.org', diagnostic: null }],
      originalMessageId: 'abc@mailgate.example.com',
    })
    expect(mail.report?.originalHeaders).toContainEqual({ name: 'x-mailgate-message', value: '42' })
    expect(mail.attachments.map((attachment) => attachment.contentType)).toEqual(['message/delivery-status', 'text/rfc822-headers'])
  })

  it('reads a read receipt (disposition-notification)', async () => {
    const mail = await parse(
      crlf(
        'From: bob@example.org',
        'Subject: Read: Your request',
        'Content-Type: multipart/report; report-type=disposition-notification; boundary="mdn"',
        '',
        '--mdn',
        'Content-Type: text/plain',
        '',
        'Your message was displayed.',
        '--mdn',
        'Content-Type: message/disposition-notification',
        '',
        'Reporting-UA: mail.example.org; Outlook',
        'Final-Recipient: rfc822; Bob@Example.org',
        'Original-Message-ID: <orig-7@mailgate.example.com>',
        'Disposition: manual-action/MDN-sent-manually; displayed',
        '',
        '--mdn--',
        '',
      ),
    )
    expect(mail.report).toEqual({
      type: 'disposition-notification',
      recipients: [{ action: null, status: null, recipient: 'bob@example.org', diagnostic: 'manual-action/MDN-sent-manually; displayed' }],
      originalMessageId: 'orig-7@mailgate.example.com',
      originalHeaders: [],
    })
  })

  it('lists but does not read a forwarded message/rfc822 of a mail that is no report', async () => {
    const mail = await parse(
      crlf(
        'Subject: Fwd: hello',
        'Content-Type: multipart/mixed; boundary=m',
        '',
        '--m',
        'Content-Type: text/plain',
        '',
        'See below.',
        '--m',
        'Content-Type: message/rfc822',
        'Content-Disposition: inline',
        '',
        'Message-ID: <inner@x>',
        'Subject: hello',
        '',
        'Inner body',
        '--m--',
        '',
      ),
    )
    expect(mail.report).toBeNull()
    expect(mail.text).toBe('See below.')
    expect(mail.attachments).toMatchObject([{ name: 'attachment-1.eml', contentType: 'message/rfc822', inline: true }])
  })

  it('decodes encoded-word subjects and body charsets, and names an unknown charset', async () => {
    const utf8 = await parse(crlf('Subject: =?utf-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=', '', 'x'))
    expect(utf8.subject).toBe('Grüße aus Köln')
    expect(utf8.headers[0]).toEqual({ name: 'subject', value: '=?utf-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=' })

    const latin1 = await parse(
      Buffer.concat([
        Buffer.from(crlf('Subject: =?iso-8859-1?Q?Caf=E9_cr=E8me?=', 'Content-Type: text/plain; charset=iso-8859-1', 'Content-Transfer-Encoding: 8bit', '', '')),
        Buffer.from('D\xe9j\xe0 vu\r\n', 'latin1'),
      ]),
    )
    expect(latin1.subject).toBe('Café crème')
    expect(latin1.text).toBe('Déjà vu\n')
    expect(latin1.problems).toEqual([])

    const unknown = await parse(crlf('Content-Type: text/plain; charset=x-no-such-charset', '', 'plain ascii'))
    expect(unknown.text).toBe('plain ascii')
    expect(unknown.problems).toEqual(['unknown charset x-no-such-charset; text read as UTF-8'])
  })

  it('reads 8-bit bytes in headers as UTF-8 and names headers that are not', async () => {
    const mail = await parse(
      Buffer.concat([
        Buffer.from('Subject: Grüße\r\nFrom: Jörg <jorg@example.com>\r\n', 'utf8'),
        Buffer.from('X-Latin1: caf\xe9\r\n', 'latin1'),
        Buffer.from('\r\nbody'),
      ]),
    )
    expect(mail.subject).toBe('Grüße')
    expect(mail.from).toEqual({ address: 'jorg@example.com', name: 'Jörg' })
    expect(mail.headers[0]).toEqual({ name: 'subject', value: 'Grüße' })
    expect(mail.headers[2]).toEqual({ name: 'x-latin1', value: 'caf\ufffd' })
    expect(mail.problems).toEqual(['header x-latin1 has bytes that are not UTF-8'])
  })

  it('resolves with what it read from a message cut off mid-part', async () => {
    const pdf = randomBytes(10_000)
    const whole = crlf(
      'Subject: cut',
      'Content-Type: multipart/mixed; boundary=c',
      '',
      '--c',
      'Content-Type: text/plain',
      '',
      'Text before the cut.',
      '--c',
      'Content-Type: application/pdf; name=a.pdf',
      'Content-Transfer-Encoding: base64',
      '',
      base64Lines(pdf),
      '--c--',
      '',
    )
    const mail = await parse(whole.slice(0, whole.indexOf('base64\r\n') + 5000))
    expect(mail.subject).toBe('cut')
    expect(mail.text).toBe('Text before the cut.')
    expect(mail.attachments).toHaveLength(1)
    expect(mail.attachments[0]!.name).toBe('a.pdf')
    expect(mail.attachments[0]!.size).toBeGreaterThan(3000)
    expect(mail.attachments[0]!.size).toBeLessThan(10_000)
  })

  it('reads a 10,000-part message in reasonable time, listing at most maxParts attachments', async () => {
    let message = 'Subject: many\r\nContent-Type: multipart/mixed; boundary=p\r\n\r\n--p\r\nContent-Type: text/plain\r\n\r\nfirst\r\n'
    for (let part = 0; part < 10_000; part++) message += `--p\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=f${part}.bin\r\n\r\nxyz${part}\r\n`
    message += '--p--\r\n'
    const started = performance.now()
    const mail = await parse(message, undefined, 64 * 1024)
    expect(performance.now() - started).toBeLessThan(15_000)
    expect(mail.text).toBe('first')
    expect(mail.attachments).toHaveLength(2000)
    expect(mail.attachments[1999]).toMatchObject({ name: 'f1999.bin', size: 7, sha256: sha256('xyz1999') })
    expect(mail.problems).toContain('more than 2000 attachment parts; the rest are not listed')
  })

  it('keeps only the file name of an attachment named with a path or control characters', async () => {
    const attachment = (filename: string) =>
      crlf('--n', 'Content-Type: text/plain', `Content-Disposition: attachment; filename="${filename}"`, '', 'secret')
    const mail = await parse(
      crlf(
        'Content-Type: multipart/mixed; boundary=n',
        '',
        attachment('../../etc/passwd'),
        attachment('..\\\\..\\\\boot.ini'),
        attachment('bad\u202Etxt.exe'),
        attachment('..'),
        attachment('x'.repeat(300) + '.pdf'),
        '--n--',
        '',
      ),
    )
    const names = mail.attachments.map((entry) => entry.name)
    expect(names.slice(0, 4)).toEqual(['passwd', 'boot.ini', 'badtxt.exe', 'attachment-4.txt'])
    expect(names[4]).toHaveLength(255)
    expect(names[4]!.endsWith('.pdf')).toBe(true)
  })

  it('gives an empty ParsedMail with a problem for empty input', async () => {
    const mail = await parseMime(chunksOf(Buffer.alloc(0), 1))
    expect(mail).toEqual({
      messageId: null,
      inReplyTo: null,
      references: [],
      subject: '',
      from: null,
      sender: null,
      replyTo: [],
      to: [],
      cc: [],
      bcc: [],
      returnPath: null,
      date: null,
      importance: 'normal',
      headers: [],
      text: '',
      html: null,
      attachments: [],
      report: null,
      contentType: 'text/plain',
      problems: ['empty message'],
    })
  })

  it('cuts text, html and headers to the limits given, saying so', async () => {
    const headers = Array.from({ length: 20 }, (_, index) => `X-H${index}: ${index}`)
    const mail = await parse(
      crlf(...headers, 'Content-Type: multipart/alternative; boundary=a', '', '--a', 'Content-Type: text/plain', '', 't'.repeat(500), '--a', 'Content-Type: text/html', '', `<p>${'h'.repeat(500)}</p>`, '--a--', ''),
      { maxHeaders: 10, maxTextChars: 100, maxHtmlChars: 200 },
    )
    expect(mail.headers).toHaveLength(10)
    expect(mail.text).toHaveLength(100)
    expect(mail.html).toHaveLength(200)
    expect(mail.problems).toEqual(
      expect.arrayContaining(['headers: only the first 10 of 21 kept', 'text body cut to 100 characters', 'html body cut to 200 characters']),
    )
  })

  it('strips the tags of html too long for html-to-text, saying so', async () => {
    const html = `<div><p>${'word '.repeat(100)}</p><script>alert(1)</script></div>`
    const mail = await parse(crlf('Content-Type: text/html', '', html), { maxHtmlChars: 300 })
    expect(mail.text).toBe('word '.repeat(100).trim())
    expect(mail.html).toHaveLength(300)
    expect(mail.problems).toEqual([
      `html not converted to text by mailparser: HTML too long for parsing ${html.length} bytes`,
      `html too long to convert to text (${html.length} characters); tags stripped instead`,
      'html body cut to 300 characters',
    ])
  })

  it('caps References and cuts an overlong header value', async () => {
    const references = Array.from({ length: 150 }, (_, index) => `<r${index}@x>`).join(' ')
    const mail = await parse(crlf(`References: ${references}`, `X-Huge: ${'v'.repeat(1024 * 1024)}`, 'Subject: still read', '', 'body'))
    expect(mail.references).toHaveLength(100)
    expect(mail.references[0]).toBe('r0@x')
    expect(mail.references[1]).toBe('r51@x')
    expect(mail.references[99]).toBe('r149@x')
    expect(mail.subject).toBe('still read')
    expect(mail.headers[1]!.value).toHaveLength(8192)
    expect(mail.problems).toEqual(['header x-huge cut to 8192 characters', 'References cut to 100 of 150 Message-IDs'])
  })

  describe('hostile input', () => {
    it('reads garbage bytes without throwing', async () => {
      const mail = await parse(randomBytes(100_000))
      expect(Array.isArray(mail.problems)).toBe(true)
    })

    it('reads a 30 MB base64 body, counting the decoded bytes', async () => {
      const content = Buffer.alloc(22 * 1024 * 1024, 0x5a)
      const message = Buffer.from(crlf('Content-Type: application/zip; name=big.zip', 'Content-Transfer-Encoding: base64', '', base64Lines(content), ''))
      expect(message.length).toBeGreaterThan(30_000_000)
      const mail = await parse(message, undefined, 64 * 1024)
      expect(mail.attachments).toEqual([
        { name: 'big.zip', contentType: 'application/zip', size: content.length, sha256: sha256(content), contentId: null, inline: false },
      ])
    })

    it('resolves for multiparts nested thousands deep, with a problem', async () => {
      let message = 'Subject: deep\r\nContent-Type: multipart/mixed; boundary=d0\r\n\r\n'
      for (let depth = 1; depth < 5000; depth++) message += `--d${depth - 1}\r\nContent-Type: multipart/mixed; boundary=d${depth}\r\n\r\n`
      message += '--d4999\r\nContent-Type: text/plain\r\n\r\ndeep text\r\n'
      const mail = await parse(message)
      expect(mail.subject).toBe('deep')
      expect(mail.problems.length).toBeGreaterThan(0)
    })

    it('reads a 1 MB header line', async () => {
      const mail = await parse(crlf(`Subject: ${'s'.repeat(1024 * 1024)}`, 'From: a@example.com', '', 'body'))
      expect(mail.subject).toHaveLength(8192)
      expect(mail.from?.address).toBe('a@example.com')
      expect(mail.text).toBe('body')
    })

    it('resolves with a problem when the header block is larger than mailsplit takes', async () => {
      const mail = await parse(crlf(`Subject: ${'s'.repeat(3 * 1024 * 1024)}`, '', 'body'))
      expect(mail.problems).toEqual(['message could not be read to its end: Max header size for a MIME node exceeded'])
    })

    it('reads LF-only line ends and a message without a body', async () => {
      const lf = await parse('Subject: unix\nFrom: a@example.com\n\nline one\nline two\n')
      expect(lf).toMatchObject({ subject: 'unix', text: 'line one\nline two\n' })
      const headersOnly = await parse('Subject: no body')
      expect(headersOnly.subject).toBe('no body')
    })

    it('reads a UTF-7 body as UTF-8, never decoding it into markup', async () => {
      const mail = await parse(crlf('Content-Type: text/html; charset=utf-7', '', '+ADw-script+AD4-alert(1)+ADw-/script+AD4-'))
      expect(mail.html).not.toContain('<script>')
      expect(mail.problems).toContain('unknown charset utf-7; text read as UTF-8')
    })
  })

  describe('the source', () => {
    it('rejects with the error the source throws, also mid-attachment', async () => {
      const failure = new Error('message too large')
      async function* failing(): AsyncGenerator<Buffer> {
        yield Buffer.from(crlf('Subject: x', 'Content-Type: application/pdf', 'Content-Transfer-Encoding: base64', '', ''))
        yield Buffer.from(base64Lines(randomBytes(100_000)))
        throw failure
      }
      await expect(parseMime(failing())).rejects.toBe(failure)
    })

    it('reads the rest of the source after the parser has given up', async () => {
      let chunksRead = 0
      async function* source(): AsyncGenerator<Buffer> {
        yield Buffer.from(`Subject: ${'s'.repeat(3 * 1024 * 1024)}\r\n`)
        for (let chunk = 0; chunk < 10; chunk++) {
          chunksRead++
          yield Buffer.from('more\r\n')
        }
      }
      const mail = await parseMime(source())
      expect(chunksRead).toBe(10)
      expect(mail.problems).toHaveLength(1)
    })

    it('waits for the parser to drain instead of buffering the source', async () => {
      const content = randomBytes(4 * 1024 * 1024)
      const message = Buffer.from(crlf('Content-Type: application/pdf', 'Content-Transfer-Encoding: base64', '', base64Lines(content), ''))
      let pulled = 0
      async function* source(): AsyncGenerator<Buffer> {
        for (let offset = 0; offset < message.length; offset += 16 * 1024) {
          pulled++
          yield message.subarray(offset, offset + 16 * 1024)
        }
      }
      const mail = await parseMime(source())
      expect(pulled).toBe(Math.ceil(message.length / (16 * 1024)))
      expect(mail.attachments[0]).toMatchObject({ size: content.length, sha256: sha256(content) })
    })
  })
})

describe('attachmentContent', () => {
  const first = randomBytes(50_000)
  const second = randomBytes(200_000)
  const message = Buffer.from(
    crlf(
      'Content-Type: multipart/mixed; boundary=s',
      '',
      '--s',
      'Content-Type: text/plain',
      '',
      'two files',
      '--s',
      'Content-Type: application/pdf; name=one.pdf',
      'Content-Transfer-Encoding: base64',
      '',
      base64Lines(first),
      '--s',
      'Content-Type: image/png; name=two.png',
      'Content-Transfer-Encoding: base64',
      '',
      base64Lines(second),
      '--s',
      'Content-Type: application/zip; name=three.zip',
      'Content-Transfer-Encoding: base64',
      '',
      base64Lines(randomBytes(3_000_000)),
      '--s--',
      '',
    ),
  )

  async function collect(content: AsyncIterable<Buffer>): Promise<Buffer> {
    const chunks: Buffer[] = []
    for await (const chunk of content) chunks.push(chunk)
    return Buffer.concat(chunks)
  }

  it('streams the decoded content of the attachment at the index parseMime listed it', async () => {
    const mail = await parseMime(chunksOf(message, 8192))
    expect(mail.attachments.map((attachment) => attachment.name)).toEqual(['one.pdf', 'two.png', 'three.zip'])
    expect(sha256(await collect(attachmentContent(chunksOf(message, 8192), 0)))).toBe(sha256(first))
    const content = await collect(attachmentContent(chunksOf(message, 8192), 1))
    expect(sha256(content)).toBe(sha256(second))
    expect(sha256(content)).toBe(mail.attachments[1]!.sha256)
  })

  // mailparser reads ahead about 1 MB (mailsplit's ChunkedPassthrough buffers 16 chunks of 64 KB).
  it('reads the source only up to the end of that attachment, give or take what mailparser buffers', async () => {
    let pulled = 0
    async function* source(): AsyncGenerator<Buffer> {
      for await (const chunk of chunksOf(message, 8192)) {
        pulled++
        yield chunk
      }
    }
    expect(sha256(await collect(attachmentContent(source(), 0)))).toBe(sha256(first))
    expect(pulled * 8192).toBeLessThan(2 * 1024 * 1024)
    expect(message.length).toBeGreaterThan(4 * 1024 * 1024)
  })

  it('fails for an index the message does not have, and with the error of the source', async () => {
    await expect(collect(attachmentContent(chunksOf(message, 8192), 3))).rejects.toThrow('no attachment 3')
    await expect(collect(attachmentContent(chunksOf(message, 8192), -1))).rejects.toThrow('no attachment -1')
    const failure = new Error('blob gone')
    async function* failing(): AsyncGenerator<Buffer> {
      yield message.subarray(0, 1000)
      throw failure
    }
    await expect(collect(attachmentContent(failing(), 1))).rejects.toBe(failure)
  })
})

describe('fromGraphMessage', () => {
  const validate = createAjv(false).compile(GraphMessageBody)

  const graphMessage: GraphMessageInput = {
    id: 'AAMkAD...',
    conversationId: 'AAQkAD...',
    internetMessageId: '<g1@example.com>',
    subject: 'Re: Your request',
    from: { emailAddress: { address: 'Ann@Example.COM', name: 'Ann Example' } },
    sender: { emailAddress: { address: 'ann@example.com', name: 'Ann Example' } },
    toRecipients: [
      { emailAddress: { address: 'Support@Example.org', name: 'Support' } },
      { emailAddress: { address: 'support@example.org' } },
      { emailAddress: { name: 'No address' } },
    ],
    ccRecipients: [{ emailAddress: { address: 'cc@example.org' } }],
    bccRecipients: [],
    replyTo: [{ emailAddress: { address: 'Replies@Example.com' } }],
    internetMessageHeaders: [
      { name: 'Return-Path', value: '<Bounce@Example.com>' },
      { name: 'In-Reply-To', value: '<parent@mailgate.example.com>' },
      { name: 'References', value: '<root@mailgate.example.com> <parent@mailgate.example.com>' },
      { name: 'Auto-Submitted', value: 'no' },
      { name: 'Content-Type', value: 'multipart/mixed; boundary="x"' },
    ],
    body: { contentType: 'text', content: 'Thanks, that works.' },
    importance: 'low',
    hasAttachments: true,
    attachments: [],
    receivedDateTime: '2026-01-31T09:00:05Z',
    sentDateTime: '2026-01-31T09:00:00Z',
  }

  it('reads a text message', () => {
    expect(validate(graphMessage)).toBe(true)
    const mail = fromGraphMessage(graphMessage)
    expect(mail).toEqual({
      messageId: 'g1@example.com',
      inReplyTo: 'parent@mailgate.example.com',
      references: ['root@mailgate.example.com', 'parent@mailgate.example.com'],
      subject: 'Re: Your request',
      from: { address: 'ann@example.com', name: 'Ann Example' },
      sender: { address: 'ann@example.com', name: 'Ann Example' },
      replyTo: ['replies@example.com'],
      to: ['support@example.org'],
      cc: ['cc@example.org'],
      bcc: [],
      returnPath: 'bounce@example.com',
      date: new Date('2026-01-31T09:00:00Z'),
      importance: 'low',
      headers: [
        { name: 'return-path', value: '<Bounce@Example.com>' },
        { name: 'in-reply-to', value: '<parent@mailgate.example.com>' },
        { name: 'references', value: '<root@mailgate.example.com> <parent@mailgate.example.com>' },
        { name: 'auto-submitted', value: 'no' },
        { name: 'content-type', value: 'multipart/mixed; boundary="x"' },
      ],
      text: 'Thanks, that works.',
      html: null,
      attachments: [],
      report: null,
      contentType: 'multipart/mixed',
      problems: [],
    })
  })

  it('derives text from an html body', () => {
    const mail = fromGraphMessage({ body: { contentType: 'html', content: '<html><body><p>Hello <i>you</i></p><p>Bye &amp; thanks</p></body></html>' } })
    expect(mail.html).toContain('<i>you</i>')
    expect(mail.text).toContain('Hello you')
    expect(mail.text).toContain('Bye & thanks')
    expect(mail.contentType).toBe('text/html')
  })

  it('strips the tags of html nested too deep for html-to-text, quickly', () => {
    const started = performance.now()
    const mail = fromGraphMessage({ body: { contentType: 'html', content: `${'<b></i>'.repeat(200_000)}deep` } })
    expect(performance.now() - started).toBeLessThan(2000)
    expect(mail.text).toBe('deep')
    expect(mail.problems).toEqual(['html nested deeper than 1000 levels; tags stripped instead'])
  })

  it('hashes decoded attachments, keeps a returned message as an attachment only, and names bad base64', () => {
    const pdf = randomBytes(5000)
    const mail = fromGraphMessage({
      attachments: [
        { '@odata.type': '#microsoft.graph.fileAttachment', name: 'a.pdf', contentType: 'application/PDF', contentBytes: pdf.toString('base64'), size: 5100 },
        { name: '../../etc/passwd', contentType: 'text/plain', contentBytes: Buffer.from('root').toString('base64') },
        { name: 'logo.png', contentType: 'image/png', contentBytes: Buffer.from('png').toString('base64'), contentId: '<logo@x>', isInline: true },
        { contentType: 'message/rfc822', contentBytes: Buffer.from('Message-ID: <o@x>\r\n\r\nbody').toString('base64') },
        { name: 'broken.bin', contentType: null, contentBytes: 'not base64!!' },
      ],
    })
    expect(mail.attachments).toEqual([
      { name: 'a.pdf', contentType: 'application/pdf', size: 5000, sha256: sha256(pdf), contentId: null, inline: false },
      { name: 'passwd', contentType: 'text/plain', size: 4, sha256: sha256('root'), contentId: null, inline: false },
      { name: 'logo.png', contentType: 'image/png', size: 3, sha256: sha256('png'), contentId: 'logo@x', inline: true },
      { name: 'attachment-4.eml', contentType: 'message/rfc822', size: 25, sha256: sha256('Message-ID: <o@x>\r\n\r\nbody'), contentId: null, inline: false },
      { name: 'broken.bin', contentType: 'application/octet-stream', size: 0, sha256: EMPTY_SHA256, contentId: null, inline: false },
    ])
    expect(mail.report).toBeNull()
    expect(mail.contentType).toBe('multipart/mixed')
    expect(mail.problems).toEqual(['attachment broken.bin: contentBytes is not base64'])
  })

  it('reads an empty message, importance and dates from headers, and the null Return-Path', () => {
    expect(fromGraphMessage({})).toMatchObject({ subject: '', text: '', html: null, from: null, date: null, importance: 'normal', contentType: 'text/plain', problems: [] })
    const mail = fromGraphMessage({
      internetMessageHeaders: [
        { name: 'Return-Path', value: '<>' },
        { name: 'X-Priority', value: '5' },
        { name: 'Date', value: 'Tue, 1 Jul 2003 10:52:37 +0200' },
      ],
    })
    expect(mail).toMatchObject({ returnPath: '', importance: 'low' })
    expect(mail.date?.toISOString()).toBe('2003-07-01T08:52:37.000Z')
  })

  it('has a schema that refuses unknown fields, bad dates and overlong strings', () => {
    expect(validate({})).toBe(true)
    expect(validate({ attachments: [{ id: 'x', contentId: null, contentLocation: null, lastModifiedDateTime: '2026-01-01T00:00:00Z' }] })).toBe(true)
    expect(validate({ isRead: true })).toBe(false)
    expect(validate({ sentDateTime: 'yesterday' })).toBe(false)
    expect(validate({ internetMessageId: 'x'.repeat(5000) })).toBe(false)
    expect(validate({ body: { contentType: 'rtf', content: 'x' } })).toBe(false)
    expect(validate({ toRecipients: [{ emailAddress: { address: 'a@b', extra: 1 } }] })).toBe(false)
  })
})
