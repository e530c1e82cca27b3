import { randomBytes } from 'node:crypto'
import { graphError, reply, type FakeAnswer, type GraphContext } from './graph-http.ts'
import type { FakeFolder, FakeStoredMessage, MailStore } from './mail-store.ts'
import { DEFAULT_PAGE_SIZE, messageJson, readSelect } from './message-json.ts'

/** Per-folder delta queries of messages (GET mailFolders/{id}/messages/delta) over the mail store. */

interface DeltaOptions {
  /** Canonical property names from the first request's $select; every property when undefined. */
  select?: string[]
  changeType?: 'created' | 'updated' | 'deleted'
  filter?: { op: 'ge' | 'gt'; at: number }
  orderDesc: boolean
  /** odata.maxpagesize of the round's first request, used when a later request sends none. */
  pageSize?: number
}

/** One entry of a round's snapshot, rendered when its page is served. */
type DeltaEntry = { kind: 'item'; immutableId: string } | { kind: 'removed'; immutableId: string; restIds: string[] }

/** The changes of one round of delta requests for a folder, fixed when the round starts. */
interface DeltaRound {
  mailbox: string
  folderId: string
  options: DeltaOptions
  entries: DeltaEntry[]
  /** The change sequence number when the round started: the next round reports what came after. */
  watermark: number
}

/** What a $skiptoken or $deltatoken stands for. */
type DeltaToken = { epoch: number; mailbox: string; folderId: string } & (
  | { kind: 'skip'; round: DeltaRound; offset: number }
  | { kind: 'delta'; since: number; options: DeltaOptions }
)

/** Opaque state tokens, URL-safe as they stand. */
const newStateToken = () => randomBytes(30).toString('base64url')

/** The options of a round's first delta request, which its links keep. */
function readDeltaOptions(url: URL): DeltaOptions | { refusal: FakeAnswer } {
  const select = readSelect(url)
  if (select && 'refusal' in select) return select
  const options: DeltaOptions = { orderDesc: false, ...(select ? { select } : {}) }
  const refuse = (message: string) => ({ refusal: graphError(400, 'ErrorInvalidUrlQuery', message) })
  const changeType = url.searchParams.get('changeType')
  if (changeType !== null) {
    if (changeType !== 'created' && changeType !== 'updated' && changeType !== 'deleted') {
      return refuse(`The changeType '${changeType}' is not one of created, updated, deleted.`)
    }
    options.changeType = changeType
  }
  const filter = url.searchParams.get('$filter')
  if (filter !== null) {
    const match = /^\s*receivedDateTime\s+(ge|gt)\s+(\S+)\s*$/i.exec(filter)
    const at = match ? Date.parse(match[2]!) : Number.NaN
    if (!match || Number.isNaN(at)) return refuse('Delta of messages supports only $filter=receivedDateTime ge {value} or receivedDateTime gt {value}.')
    options.filter = { op: match[1]!.toLowerCase() as 'ge' | 'gt', at }
  }
  const orderBy = url.searchParams.get('$orderby')
  if (orderBy !== null) {
    if (!/^\s*receivedDateTime\s+desc\s*$/i.test(orderBy)) return refuse('Delta of messages supports only $orderby=receivedDateTime desc.')
    options.orderDesc = true
  }
  if (url.searchParams.has('$search')) return refuse('Delta of messages does not support $search.')
  return options
}

export class MessageDelta {
  private deltaTokens = new Map<string, DeltaToken>()
  /** By mailbox address: bumped by expireTokens, which voids every link handed out before. */
  private deltaEpochs = new Map<string, number>()
  /** Mailboxes whose next delta request repeats the page served before it. */
  private replayPending = new Set<string>()
  /** By `mailbox\nfolderId`: the items of the last delta page served, for replayNextPage. */
  private lastDeltaPage = new Map<string, unknown[]>()
  private readonly store: MailStore

  constructor(store: MailStore) {
    this.store = store
  }

  expireTokens(address: string): void {
    this.deltaEpochs.set(address, (this.deltaEpochs.get(address) ?? 0) + 1)
  }

  replayNextPage(address: string): void {
    this.replayPending.add(address)
  }

  /**
   * GET mailFolders/{id}/messages/delta. A round starts without a token (every message in the
   * folder) or from a deltaLink (what changed since: new, moved-in and updated messages as
   * items, moved-out and deleted ones as @removed), is fixed when it starts, and is served in
   * pages of odata.maxpagesize (default 10) linked by nextLinks; its last page carries the
   * deltaLink for the next round. The links keep $select and the other first-request options.
   */
  serve(context: GraphContext, folder: FakeFolder): FakeAnswer {
    const { url, mailbox, host } = context
    const epoch = this.deltaEpochs.get(mailbox.address) ?? 0
    const skipToken = url.searchParams.get('$skiptoken')
    const deltaToken = url.searchParams.get('$deltatoken')
    const gone = () =>
      graphError(410, 'SyncStateNotFound', `The sync state generation is not found; generation=${epoch};[highest=${epoch}]. Start a new delta round without a state token.`)
    let round: DeltaRound
    let offset = 0
    if (skipToken !== null || deltaToken !== null) {
      if (skipToken !== null && deltaToken !== null) return graphError(400, 'ErrorInvalidUrlQuery', 'Only one of $skiptoken and $deltatoken may be given.')
      const state = this.deltaTokens.get((skipToken ?? deltaToken)!)
      if (!state || state.kind !== (skipToken !== null ? 'skip' : 'delta') || state.epoch !== epoch) return gone()
      if (state.mailbox !== mailbox.address || state.folderId !== folder.id) {
        return graphError(400, 'ErrorInvalidUrlQuery', 'The state token belongs to another mailbox or folder.')
      }
      if (state.kind === 'skip') {
        round = state.round
        offset = state.offset
      } else {
        round = this.startRound(mailbox.address, folder.id, { ...state.options }, state.since)
      }
    } else {
      const options = readDeltaOptions(url)
      if ('refusal' in options) return options.refusal
      round = this.startRound(mailbox.address, folder.id, options, undefined)
    }
    const requested = /odata\.maxpagesize\s*=\s*"?(\d+)"?/i.exec(context.prefer ?? '')?.[1]
    const requestedSize = requested ? Number(requested) : undefined
    const pageSize = requestedSize && requestedSize > 0 ? requestedSize : (round.options.pageSize ?? DEFAULT_PAGE_SIZE)
    if (offset === 0 && requestedSize && requestedSize > 0) round.options.pageSize = requestedSize

    const value: unknown[] = []
    for (const entry of round.entries.slice(offset, offset + pageSize)) {
      const current = this.store.messages.get(entry.immutableId)
      const here = current?.parentFolderId === round.folderId ? current : undefined
      if (entry.kind === 'item') {
        // Gone since the round started: the next round reports the removal.
        if (here) value.push(messageJson(here, this.store.changeKey(here), context, round.options.select, false))
        continue
      }
      const ids = context.preferImmutable ? (here ? [] : [entry.immutableId]) : entry.restIds.filter((id) => id !== here?.restId)
      for (const id of ids) value.push({ '@odata.type': '#microsoft.graph.message', id, '@removed': { reason: 'deleted' } })
    }

    const pageKey = `${mailbox.address}\n${folder.id}`
    const replayed = this.replayPending.has(mailbox.address) ? this.lastDeltaPage.get(pageKey) : undefined
    if (replayed) this.replayPending.delete(mailbox.address)
    this.lastDeltaPage.set(pageKey, value)

    const more = offset + pageSize < round.entries.length
    const token = newStateToken()
    const owner = { epoch, mailbox: mailbox.address, folderId: folder.id }
    this.deltaTokens.set(
      token,
      more ? { ...owner, kind: 'skip', round, offset: offset + pageSize } : { ...owner, kind: 'delta', since: round.watermark, options: round.options },
    )
    // Graph's links name the user as the request did and the folder by id, in key syntax.
    const user = url.pathname.split('/')[3]
    const link = `https://${host}/v1.0/users/${user}/mailFolders('${folder.id}')/messages/delta?${more ? '$skiptoken' : '$deltatoken'}=${token}`
    const body = {
      '@odata.context': `https://${host}/v1.0/$metadata#Collection(message)`,
      [more ? '@odata.nextLink' : '@odata.deltaLink']: link,
      value: [...(replayed ?? []), ...value],
    }
    return reply(200, body, requestedSize && requestedSize > 0 ? { 'preference-applied': `odata.maxpagesize=${requestedSize}` } : undefined)
  }

  /** The entries of a round: everything in the folder (`since` undefined) or what changed after `since`. */
  private startRound(mailbox: string, folderId: string, options: DeltaOptions, since: number | undefined): DeltaRound {
    const stateOf = (message: FakeStoredMessage) => this.store.changeState.get(message.immutableId)!
    let items = this.store.messagesIn(mailbox, folderId)
    if (since !== undefined) {
      items = items.filter((message) => stateOf(message).changed > since)
      if (options.changeType === 'created') items = items.filter((message) => stateOf(message).entered > since)
      if (options.changeType === 'updated') items = items.filter((message) => stateOf(message).entered <= since)
      if (options.changeType === 'deleted') items = []
    }
    const filter = options.filter
    if (filter) items = items.filter((message) => (filter.op === 'ge' ? Date.parse(message.receivedDateTime) >= filter.at : Date.parse(message.receivedDateTime) > filter.at))
    items.sort(
      options.orderDesc
        ? (a, b) => b.receivedDateTime.localeCompare(a.receivedDateTime)
        : (a, b) => stateOf(a).changed - stateOf(b).changed,
    )
    const removed = new Map<string, string[]>()
    if (since !== undefined && (options.changeType === undefined || options.changeType === 'deleted')) {
      for (const removal of this.store.removals.get(mailbox) ?? []) {
        if (removal.folderId !== folderId || removal.seq <= since) continue
        const restIds = removed.get(removal.immutableId) ?? []
        if (!restIds.includes(removal.restId)) restIds.push(removal.restId)
        removed.set(removal.immutableId, restIds)
      }
    }
    return {
      mailbox,
      folderId,
      options,
      entries: [
        ...[...removed].map(([immutableId, restIds]): DeltaEntry => ({ kind: 'removed', immutableId, restIds })),
        ...items.map((message): DeltaEntry => ({ kind: 'item', immutableId: message.immutableId })),
      ],
      watermark: this.store.changeSeq,
    }
  }
}
