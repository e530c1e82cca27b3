import type { Automated, BlockAction, InboundOutcome, PipelineStep } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'
import { newId } from '../../lib/ids.ts'
import type { DomainEvent, EventLog } from '../events/service.ts'
import { TEST_MESSAGE_HEADER } from '../connection-tests/test-message.ts'
import { MESSAGE_ID_HEADER as OWN_MESSAGE_HEADER } from '../outbound/send-policy.ts'
import { ownMailIds, type BounceReport, type OwnMailIds, type SentMessageRef } from '../outbound/sent-mail.ts'
import { bounceDetails, classifyAutomated } from './automated.ts'
import type { ParsedMail } from './parsed-mail.ts'
import type { InboundEmailRow, InboundRepository, NewWorkItemLink, WorkItemLinkRow } from './repository.ts'
import { resolveRoutes, withoutPlusTag, type IncomingRoute } from './routing.ts'
import type { KnownMessage, Threading, ThreadLookup } from './threading.ts'

/** The connector as the pipeline needs it. */
export interface IngestConnector {
  id: string
  direction: 'incoming' | 'outgoing'
  enabled: boolean
  primaryAddress: string
  testModeOnly: boolean
  disabledReason: string | null
}

/** Ports the pipeline reads other modules through. */
export interface PipelineDeps {
  repository: InboundRepository
  events: EventLog
  threading: Threading
  connectors: { find(executor: Db, id: string): Promise<IngestConnector | undefined> }
  routes: { incomingOf(executor: Db, connectorId: string): Promise<IncomingRoute[]> }
  blocked: { match(executor: Db, address: string): Promise<{ id: string; pattern: string; action: BlockAction } | undefined> }
  connectionTests: { exists(executor: Db, testId: string): Promise<boolean> }
  sentMail: {
    includesAny(executor: Db, mailgateIds: string[], messageIds: string[]): Promise<boolean>
    withWork(executor: Db, messageIds: string[]): Promise<SentMessageRef[]>
    knownRefs(executor: Db, lowerCaseRefs: string[]): Promise<Map<string, string>>
    recordBounce(tx: Db, report: BounceReport): Promise<string | null>
  }
}


export interface Decision {
  outcome: Exclude<InboundOutcome, 'received' | 'duplicate'>
  reason: string | null
  automated: Automated | null
  suppressAutomatedAnswer: boolean
  testMode: boolean
  steps: PipelineStep[]
  links: NewWorkItemLink[]
  blockedAddressId?: string
  threadWay?: string
  /** The routes requests were made through, for the events. */
  routes?: Map<string, IncomingRoute>
  /** A non-delivery report to record on the sent message it names. */
  bounce?: Omit<BounceReport, 'inboundEmailId'>
}

/** What processing needs of the stored email. */
export type PipelineRow = Pick<InboundEmailRow, 'id' | 'connectorId' | 'steps' | 'outcome' | 'outcomeReason' | 'fromAddress' | 'subject' | 'receivedAt'>

/** What processing wrote: the email's new state and the work links it added. */
export interface ProcessResult {
  outcome: InboundOutcome
  outcomeReason: string | null
  automated: Automated | null
  suppressAutomatedAnswer: boolean
  testMode: boolean
  steps: PipelineStep[]
  processedAt: Date
  links: WorkItemLinkRow[]
}

/** The email was no longer `received`: another instance processed it. */
class NotWaiting extends Error {}

/** The address sent mail's work came in through; for work that came by BCC, the sent mail's sender. */
function workAddress(address: string | undefined, sentFrom: string): string {
  return address === undefined || address === '*' ? sentFrom : address
}

function headerValues(mail: ParsedMail, name: string): string[] {
  return mail.headers.filter((header) => header.name === name).map((header) => header.value.trim().replace(/^<|>$/g, ''))
}

/**
 * Takes a stored email from `received` to its outcome, deciding step by step and recording
 * why, and commits the outcome with its events in one transaction. An email that is no
 * longer `received` (processed by another instance) is left alone, so each is done once.
 */
export class InboundPipeline {
  private readonly deps: PipelineDeps

  constructor(deps: PipelineDeps) {
    this.deps = deps
  }

  /**
   * Processes a `received` email: decides from reads outside any transaction (prepared
   * statements), then commits the outcome only if the email is still `received`, with its
   * links and events, in one transaction. Undefined when another instance got there first.
   */
  async process(db: Db, row: PipelineRow, mail: ParsedMail): Promise<ProcessResult | undefined> {
    const decision = await this.decide(db, row, mail)
    try {
      return await db.transaction(async (tx) => {
        const result = await this.commit(tx, row, decision, row.steps, { onlyIfReceived: true })
        if (!result) throw new NotWaiting()
        return result
      })
    } catch (error) {
      if (error instanceof NotWaiting) return undefined
      throw error
    }
  }

  /**
   * Runs the pipeline again on a processed email (after a route or blocked-address change).
   * Work already requested or joined stays; only new requests and a changed outcome emit events.
   */
  async reprocess(
    db: Db,
    emailId: string,
    mail: ParsedMail,
    alsoInTransaction?: (tx: Db) => Promise<void>,
  ): Promise<{ before: InboundOutcome; after: InboundOutcome } | undefined> {
    return db.transaction(async (tx) => {
      const row = await this.deps.repository.lock(tx, emailId, { receivedOnly: false })
      if (!row || row.outcome === 'duplicate') return undefined
      const kept = row.steps.filter((step) => step.step === 'dedupe')
      const steps = [...kept, { step: 'reprocess', result: 'started', detail: `was ${row.outcome}${row.outcomeReason ? ` (${row.outcomeReason})` : ''}` }]
      const result = await this.commit(tx, row, await this.decide(tx, row, mail), steps, { onlyIfReceived: false })
      await alsoInTransaction?.(tx)
      return { before: row.outcome, after: result!.outcome }
    })
  }

  /** Records a duplicate's event, in the transaction that stored it. */
  async recordDuplicate(tx: Db, emailId: string, connectorId: string, duplicateOf: string, way: string): Promise<void> {
    await this.deps.events.record(tx, { type: 'email.duplicate', subjectType: 'inbound_email', subjectId: emailId, payload: { emailId, connectorId, duplicateOf, way } })
  }

  /** Ends an email that keeps failing to process as unhandled, so it is seen rather than retried forever. */
  async giveUp(db: Db, emailId: string, detail: string): Promise<boolean> {
    return db.transaction(async (tx) => {
      const row = await this.deps.repository.lock(tx, emailId, { receivedOnly: true })
      if (!row) return false
      const now = new Date()
      await this.deps.repository.update(tx, emailId, {
        outcome: 'unhandled',
        outcomeReason: 'processing_failed',
        processedAt: now,
        steps: [...row.steps, { step: 'recovery', result: 'gave_up', detail }],
      })
      await this.deps.events.record(tx, {
        type: 'email.unhandled',
        subjectType: 'inbound_email',
        subjectId: emailId,
        payload: { emailId, connectorId: row.connectorId, from: row.fromAddress, subject: row.subject, receivedAt: row.receivedAt.toISOString(), reason: 'processing_failed', automatedKind: null },
        occurredAt: now,
      })
      return true
    })
  }

  /** Writes a decision: the bounce it reports, the outcome, the work links and the events. */
  private async commit(tx: Db, row: PipelineRow, decision: Decision, steps: PipelineStep[], options: { onlyIfReceived: boolean }): Promise<ProcessResult | undefined> {
    const decided = [...decision.steps]
    if (decision.bounce) {
      // The email's row first, then the sent message's, in every path that takes both (reprocess holds the email's already).
      if (!(await this.deps.repository.lock(tx, row.id, { receivedOnly: options.onlyIfReceived }))) return undefined
      const messageId = await this.deps.sentMail.recordBounce(tx, { ...decision.bounce, inboundEmailId: row.id })
      const at = decided.findIndex((step) => step.step === 'automated') + 1
      decided.splice(
        at,
        0,
        messageId
          ? { step: 'bounce', result: 'recorded', detail: `recorded on sent message ${messageId}${decision.bounce.status ? ` (status ${decision.bounce.status})` : ''}` }
          : { step: 'bounce', result: 'unmatched', detail: 'the report names no message Mailgate sent to that recipient' },
      )
    }
    const processedAt = new Date()
    const changes = {
      outcome: decision.outcome,
      outcomeReason: decision.reason,
      automated: decision.automated,
      suppressAutomatedAnswer: decision.suppressAutomatedAnswer,
      testMode: decision.testMode,
      steps: [...steps, ...decided],
      processedAt,
    }
    if (!(await this.deps.repository.finish(tx, row.id, changes, options))) return undefined
    const inserted = await this.deps.repository.insertLinks(tx, decision.links)
    const changed = row.outcome !== decision.outcome || row.outcomeReason !== decision.reason
    await this.deps.events.recordAll(tx, this.events(row, decision, inserted, changed, processedAt))
    return { ...changes, links: inserted }
  }

  /**
   * The decision for a new email, from reads only (prepared statements): intake stores the
   * email already decided, in one statement, when the decision writes nothing elsewhere.
   * Whether it is Mailgate's own mail is left to that statement, which stores nothing when
   * a sent message has one of `ownMail`'s ids (the email then takes the other path).
   */
  async decideNew(
    db: Db,
    row: PipelineRow,
    mail: ParsedMail,
    connector?: IngestConnector,
  ): Promise<{ decision: Decision; result: ProcessResult; events: DomainEvent[]; ownMail: OwnMailIds }> {
    const decision = await this.decide(db, row, mail, connector, { ownMailLeftToStore: true })
    const processedAt = new Date()
    const links: WorkItemLinkRow[] = decision.links.map((link) => ({
      routeId: null,
      workItemRef: null,
      automated: false,
      testMode: false,
      confirmedAt: null,
      ...link,
      id: link.id!,
      createdAt: processedAt,
    }))
    const result: ProcessResult = {
      outcome: decision.outcome,
      outcomeReason: decision.reason,
      automated: decision.automated,
      suppressAutomatedAnswer: decision.suppressAutomatedAnswer,
      testMode: decision.testMode,
      steps: [...row.steps, ...decision.steps],
      processedAt,
      links,
    }
    return { decision, result, events: this.events(row, decision, links, true, processedAt), ownMail: ownMailIds(headerValues(mail, OWN_MESSAGE_HEADER), mail.messageId ? [mail.messageId] : []) }
  }

  /** Every step's decision, from reads only: run outside a transaction it uses prepared statements. */
  private async decide(tx: Db, row: PipelineRow, mail: ParsedMail, known?: IngestConnector, options: { ownMailLeftToStore?: boolean } = {}): Promise<Decision> {
    const connector = known ?? (await this.deps.connectors.find(tx, row.connectorId))
    const steps: PipelineStep[] = []
    const decision = (rest: Partial<Decision> & Pick<Decision, 'outcome' | 'reason'>): Decision => ({
      automated: null,
      suppressAutomatedAnswer: false,
      testMode: false,
      links: [],
      ...rest,
      steps,
    })

    // Own mail: an outbox id or Message-ID of mail Mailgate sent, or a connection test.
    const ownIds = headerValues(mail, OWN_MESSAGE_HEADER)
    if (!options.ownMailLeftToStore && (await this.deps.sentMail.includesAny(tx, ownIds, mail.messageId ? [mail.messageId] : []))) {
      steps.push({ step: 'own_mail', result: 'ignored', detail: ownIds.length > 0 ? `${OWN_MESSAGE_HEADER} names a message Mailgate sent` : `Message-ID <${mail.messageId}> is a message Mailgate sent` })
      return decision({ outcome: 'ignored', reason: 'own_mail' })
    }
    // Only an id of a test that was run: anyone can write the header.
    const testId = headerValues(mail, TEST_MESSAGE_HEADER)[0]
    if (testId !== undefined && (await this.deps.connectionTests.exists(tx, testId))) {
      steps.push({ step: 'own_mail', result: 'ignored', detail: `connection-test message (${TEST_MESSAGE_HEADER}: ${testId.slice(0, 64)})` })
      return decision({ outcome: 'ignored', reason: 'test_message' })
    }
    steps.push({ step: 'own_mail', result: 'not_own', detail: 'not a message Mailgate sent' })

    // Blocked senders.
    let blockedSuppress = false
    const senders = [...new Set([mail.from?.address, mail.sender?.address].filter((address): address is string => Boolean(address)))]
    const blocks = (await Promise.all(senders.map((address) => this.deps.blocked.match(tx, address)))).filter((match) => match !== undefined)
    // From and Sender may match different entries: the strictest action wins.
    const blocked = blocks.find((match) => match.action !== 'no_automated_replies') ?? blocks[0]
    if (blocked && blocked.action !== 'no_automated_replies') {
      steps.push({ step: 'blocked_address', result: blocked.action, detail: `sender matches blocked address ${blocked.pattern}` })
      return decision({ outcome: 'discarded', reason: blocked.action === 'spam' ? 'spam' : 'blocked', blockedAddressId: blocked.id })
    }
    if (blocked) {
      blockedSuppress = true
      steps.push({ step: 'blocked_address', result: 'no_automated_replies', detail: `sender matches ${blocked.pattern}: no automated answers` })
    } else {
      steps.push({ step: 'blocked_address', result: 'not_blocked', detail: senders.length > 0 ? 'sender is not blocked' : 'the mail names no sender' })
    }

    // Automated mail.
    const verdict = classifyAutomated(mail)
    const automated = verdict.automated
    const suppressAutomatedAnswer = verdict.suppressAutomatedAnswer || blockedSuppress
    steps.push(
      automated
        ? { step: 'automated', result: automated.kind, detail: automated.evidence.join('; ') }
        : { step: 'automated', result: 'human', detail: verdict.suppressReasons.length > 0 ? `not automated; no automated answer: ${verdict.suppressReasons.join('; ')}` : 'no sign of automated mail' },
    )
    const details = automated?.kind === 'bounce' ? bounceDetails(mail) : null
    const bounce = details
      ? { mailgateId: details.originalMailgateId, messageId: details.originalMessageId, recipient: details.recipient, status: details.status, diagnostic: details.diagnostic }
      : undefined

    const routes = connector ? await this.deps.routes.incomingOf(tx, connector.id) : []
    const primaryAddress = connector?.primaryAddress ?? ''
    const routeAddresses = new Set([primaryAddress, ...routes.filter((route) => route.kind === 'specific').map((route) => route.emailAddress)])
    const addressed = [...mail.to, ...mail.cc].map(withoutPlusTag).find((address) => routeAddresses.has(address)) ?? primaryAddress
    const base = { automated, suppressAutomatedAnswer, bounce }

    // Replies to known work.
    const thread = await this.deps.threading.match(mail, routeAddresses, this.lookup(tx))
    if (thread.match) {
      steps.push({ step: 'threading', result: thread.match.way, detail: thread.match.detail })
      return decision({
        ...base,
        outcome: 'appended',
        reason: null,
        threadWay: thread.match.way,
        links: [{ id: newId(), emailId: row.id, kind: 'appended', address: addressed, workItemRef: thread.match.workItemRef, automated: automated !== null }],
      })
    }
    steps.push({ step: 'threading', result: 'none', detail: thread.tried.length > 0 ? thread.tried.join('; ') : 'refers to no known work' })
    if (automated) {
      steps.push({ step: 'routing', result: 'skipped', detail: 'automated mail never creates work' })
      return decision({ ...base, outcome: 'unhandled', reason: 'automated' })
    }

    // Route resolution.
    const matches = resolveRoutes(routes, primaryAddress, mail)
    if (matches.length === 0) {
      steps.push({ step: 'routing', result: 'no_route', detail: routes.length === 0 ? 'the connector has no enabled incoming route' : 'no route matches the recipients and rules' })
      return decision({ ...base, outcome: 'unhandled', reason: 'no_route' })
    }
    const links = matches.map(({ route, address }) => ({
      id: newId(),
      emailId: row.id,
      kind: 'requested' as const,
      routeId: route.id,
      address,
      testMode: route.testModeOnly || Boolean(connector?.testModeOnly),
    }))
    steps.push({ step: 'routing', result: 'matched', detail: matches.map(({ route, address }) => `${address} -> ${route.kind} route "${route.name}"`).join('; ') })
    const byId = new Map(matches.map(({ route }) => [route.id, route]))
    return decision({ ...base, outcome: 'requested', reason: null, links, routes: byId, testMode: links.some((link) => link.testMode) })
  }

  private lookup(tx: Db): ThreadLookup {
    const { repository, sentMail } = this.deps
    return {
      messages: async (ids, options) => {
        const inbound: KnownMessage[] = (await repository.knownMessages(tx, ids)).map((entry) => ({ ...entry, source: 'inbound' }))
        if (options.inboundOnly) return inbound
        const sent = await sentMail.withWork(tx, ids)
        if (sent.length === 0) return inbound
        const work = await repository.knownRefs(tx, sent.map((entry) => entry.workItemRef.toLowerCase()))
        return [
          ...inbound,
          ...sent.map((entry) => ({
            messageId: entry.messageId,
            workItemRef: entry.workItemRef,
            address: workAddress(work.get(entry.workItemRef.toLowerCase())?.address, entry.fromAddress),
            source: 'outbound' as const,
          })),
        ]
      },
      knownRefs: async (refs) => {
        const lower = [...new Set(refs.map((ref) => ref.toLowerCase()))]
        const known = new Map([...(await repository.knownRefs(tx, lower))].map(([key, value]) => [key, value.ref]))
        const missing = lower.filter((ref) => !known.has(ref))
        for (const [key, ref] of await sentMail.knownRefs(tx, missing)) known.set(key, ref)
        return known
      },
    }
  }

  /** The events of a decision: one per link it added, and the outcome's when it changed. */
  private events(row: PipelineRow, decision: Decision, inserted: WorkItemLinkRow[], changed: boolean, now: Date): DomainEvent[] {
    const email = { emailId: row.id, connectorId: row.connectorId, from: row.fromAddress, subject: row.subject, receivedAt: row.receivedAt.toISOString() }
    const common = { subjectType: 'inbound_email', subjectId: row.id, occurredAt: now }
    const events: DomainEvent[] = inserted.map((link) => {
      if (link.kind === 'appended') {
        return {
          ...common,
          type: 'work_item.message_appended',
          payload: { ...email, workItemRef: link.workItemRef, automated: link.automated, automatedKind: decision.automated?.kind ?? null, matchedBy: decision.threadWay ?? null },
        }
      }
      const route = decision.routes?.get(link.routeId!)
      return {
        ...common,
        type: 'work_item.requested',
        payload: {
          ...email,
          requestId: link.id,
          routeId: link.routeId,
          address: link.address,
          workItemType: route?.workItemType ?? null,
          processId: route?.processId ?? null,
          ticketCategory: route?.ticketCategory ?? null,
          forAttention: route?.forAttention ?? false,
          sendAutomatedEmails: (route?.sendAutomatedEmails ?? true) && !decision.suppressAutomatedAnswer,
          testMode: link.testMode,
          suppressAutomatedAnswer: decision.suppressAutomatedAnswer,
        },
      }
    })
    if (changed && decision.outcome === 'unhandled') {
      events.push({ ...common, type: 'email.unhandled', payload: { ...email, reason: decision.reason, automatedKind: decision.automated?.kind ?? null } })
    } else if (changed && decision.outcome === 'discarded') {
      events.push({ ...common, type: 'email.discarded', payload: { ...email, reason: decision.reason, blockedAddressId: decision.blockedAddressId ?? null } })
    }
    return events
  }
}
