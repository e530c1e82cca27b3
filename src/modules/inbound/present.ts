import sanitizeHtml from 'sanitize-html'
import { nestsDeeperThan } from './html-text.ts'
import type { ParsedMail } from './parsed-mail.ts'
import type { InboundEmailRow, WorkItemLinkRow } from './repository.ts'
import type { InboundEmail, InboundEmailSummary } from './schemas.ts'

/**
 * Mail HTML is written by strangers: only formatting survives. Images only from the message
 * itself (cid:) or inline data, so that opening a mail does not call a tracker.
 */
const SANITIZE_OPTIONS: sanitizeHtml.IOptions = {
  allowedTags: [...sanitizeHtml.defaults.allowedTags, 'img', 'font', 'center', 'span'],
  allowedAttributes: {
    ...sanitizeHtml.defaults.allowedAttributes,
    img: ['src', 'alt', 'width', 'height'],
    td: ['colspan', 'rowspan', 'align', 'valign'],
    th: ['colspan', 'rowspan', 'align', 'valign'],
    font: ['color', 'size'],
  },
  allowedSchemesByTag: { img: ['cid', 'data'] },
  allowedSchemes: ['http', 'https', 'mailto', 'tel'],
  allowProtocolRelative: false,
  transformTags: { a: sanitizeHtml.simpleTransform('a', { rel: 'noopener noreferrer nofollow', target: '_blank' }) },
}

function presentLink(link: WorkItemLinkRow) {
  return {
    id: link.id,
    kind: link.kind,
    routeId: link.routeId,
    address: link.address,
    workItemRef: link.workItemRef,
    automated: link.automated,
    testMode: link.testMode,
    createdAt: link.createdAt.toISOString(),
    confirmedAt: link.confirmedAt?.toISOString() ?? null,
  }
}

export function presentSummary(row: InboundEmailRow, links: WorkItemLinkRow[]): InboundEmailSummary {
  return {
    id: row.id,
    connectorId: row.connectorId,
    outcome: row.outcome,
    outcomeReason: row.outcomeReason,
    duplicateOf: row.duplicateOf,
    internetMessageId: row.internetMessageId,
    inReplyTo: row.inReplyTo,
    references: row.references,
    subject: row.subject,
    from: row.fromAddress ? { address: row.fromAddress, name: row.fromName } : null,
    sender: row.senderAddress,
    returnPath: row.returnPath,
    to: row.toAddresses,
    cc: row.ccAddresses,
    bcc: row.bccAddresses,
    replyTo: row.replyTo,
    importance: row.importance,
    sentAt: row.sentAt?.toISOString() ?? null,
    receivedAt: row.receivedAt.toISOString(),
    processedAt: row.processedAt?.toISOString() ?? null,
    automated: row.automated ?? null,
    suppressAutomatedAnswer: row.suppressAutomatedAnswer,
    testMode: row.testMode,
    steps: row.steps,
    attachments: row.attachments.map((attachment, index) => ({ index, ...attachment })),
    source: { format: row.sourceFormat, size: row.sourceSize },
    parseProblems: row.parseProblems,
    workItems: links.map(presentLink),
    graphMessageId: row.graphMessageId,
    afterAction: row.afterAction,
  }
}

/** sanitize-html slows down sharply with nesting depth: deeper HTML than real mail has is not shown. */
const MAX_SHOWN_NESTING = 500

/** The HTML body made safe to show, or null when it is nested too deep to sanitise in time (the text body stands). */
function safeHtml(html: string | null): string | null {
  if (html === null || nestsDeeperThan(html, MAX_SHOWN_NESTING)) return null
  return sanitizeHtml(html, SANITIZE_OPTIONS)
}

/** One email as the API shows it: the row, its work links, and the headers and bodies of its parsed source. */
export function presentEmail(row: InboundEmailRow, links: WorkItemLinkRow[], mail: Pick<ParsedMail, 'headers' | 'text' | 'html'>): InboundEmail {
  return {
    ...presentSummary(row, links),
    headers: mail.headers,
    textBody: mail.text,
    htmlBody: safeHtml(mail.html),
  }
}
