import type { IngestSettings } from '../../config.ts'
import type { ParsedMail } from './parsed-mail.ts'
import { withoutPlusTag } from './routing.ts'

/** A stored message that belongs to known work: mail taken in, or mail Mailgate sent. */
export interface KnownMessage {
  messageId: string
  workItemRef: string
  /** The address the work came in through (for sent mail: the work's address, else the sender). */
  address: string
  source: 'inbound' | 'outbound'
}

/** What threading asks of storage, in as few reads as there are ways to try. */
export interface ThreadLookup {
  messages(messageIds: string[], options: { inboundOnly: boolean }): Promise<KnownMessage[]>
  /**
   * The references among these that Mailgate knows (confirmed work, or sent mail's
   * references), keyed lower case (addresses arrive lower case) to the reference as stored.
   */
  knownRefs(refs: string[]): Promise<Map<string, string>>
}

export interface ThreadMatch {
  workItemRef: string
  way: 'plus_address' | 'in_reply_to' | 'references' | 'subject_token' | 'body_token'
  detail: string
}

/** Only the start of a body is searched: a reference sits near the top, and hostile text can be long. */
const BODY_SEARCH_CHARS = 64 * 1024
const MAX_TOKENS = 20

export class Threading {
  private readonly mode: IngestSettings['threadingMode']
  private readonly pattern: RegExp

  constructor(settings: Pick<IngestSettings, 'threadingMode' | 'referencePattern'>) {
    this.mode = settings.threadingMode
    this.pattern = new RegExp(settings.referencePattern, 'g')
  }

  /**
   * The known work a mail replies to, first hit wins: a plus address among the recipients
   * (mixed and plus_only); In-Reply-To, then References, naming a message of known work whose
   * address is still among To/Cc (plus_only: mail taken in only); then a reference token in
   * the subject, then in the body (standard and mixed).
   */
  async match(mail: ParsedMail, routeAddresses: Set<string>, lookup: ThreadLookup): Promise<{ match: ThreadMatch | null; tried: string[] }> {
    const tried: string[] = []
    if (this.mode !== 'standard') {
      const plusRefs = plusReferences(mail, routeAddresses)
      if (plusRefs.length > 0) {
        const known = await lookup.knownRefs(plusRefs.map((entry) => entry.ref))
        const hit = plusRefs.find((entry) => known.has(entry.ref))
        if (hit) return { match: { workItemRef: known.get(hit.ref)!, way: 'plus_address', detail: `plus address ${hit.address}` }, tried }
        tried.push(`plus address with unknown reference ${plusRefs[0]!.ref}`)
      }
    }
    const headerMatch = await this.byHeaders(mail, lookup, tried)
    if (headerMatch) return { match: headerMatch, tried }
    if (this.mode === 'plus_only') return { match: null, tried }

    const subjectRefs = this.tokens(mail.subject)
    const bodyRefs = this.tokens(mail.text.slice(0, BODY_SEARCH_CHARS))
    if (subjectRefs.length + bodyRefs.length === 0) return { match: null, tried }
    const known = await lookup.knownRefs([...new Set([...subjectRefs, ...bodyRefs])])
    const inSubject = subjectRefs.find((ref) => known.has(ref.toLowerCase()))
    if (inSubject) return { match: { workItemRef: known.get(inSubject.toLowerCase())!, way: 'subject_token', detail: `reference ${inSubject} in the subject` }, tried }
    const inBody = bodyRefs.find((ref) => known.has(ref.toLowerCase()))
    if (inBody) return { match: { workItemRef: known.get(inBody.toLowerCase())!, way: 'body_token', detail: `reference ${inBody} in the body` }, tried }
    tried.push(`unknown reference ${subjectRefs[0] ?? bodyRefs[0]}`)
    return { match: null, tried }
  }

  private async byHeaders(mail: ParsedMail, lookup: ThreadLookup, tried: string[]): Promise<ThreadMatch | null> {
    // The newest reference is the last one: try it first.
    const references = [...mail.references].reverse().filter((id) => id !== mail.inReplyTo)
    const ids = [...(mail.inReplyTo ? [mail.inReplyTo] : []), ...references]
    if (ids.length === 0) return null
    const known = await lookup.messages(ids, { inboundOnly: this.mode === 'plus_only' })
    if (known.length === 0) return null
    const addressed = new Set([...mail.to, ...mail.cc].map(withoutPlusTag))
    for (const id of ids) {
      for (const message of known.filter((entry) => entry.messageId === id)) {
        const way = id === mail.inReplyTo ? 'in_reply_to' : 'references'
        const header = way === 'in_reply_to' ? 'In-Reply-To' : 'References'
        // Work that came in by BCC (through a wildcard route) has no address to look for.
        if (message.address === '*' || addressed.has(message.address)) {
          return { workItemRef: message.workItemRef, way, detail: `${header} names ${message.source} message <${id}> of ${message.workItemRef}` }
        }
        tried.push(`${header} names <${id}> of ${message.workItemRef}, but ${message.address}, through which that work came in, is no longer among To/Cc`)
      }
    }
    return null
  }

  private tokens(text: string): string[] {
    const refs: string[] = []
    this.pattern.lastIndex = 0
    for (const found of text.matchAll(this.pattern)) {
      const ref = found.groups?.['ref'] ?? found[1]
      if (ref && !refs.includes(ref)) refs.push(ref)
      if (refs.length >= MAX_TOKENS) break
    }
    return refs
  }
}

/** References in plus addresses among the recipients, for addresses this connector routes. */
function plusReferences(mail: ParsedMail, routeAddresses: Set<string>): { ref: string; address: string }[] {
  const found: { ref: string; address: string }[] = []
  for (const address of [...mail.to, ...mail.cc, ...mail.bcc]) {
    const at = address.lastIndexOf('@')
    const plus = address.indexOf('+')
    if (plus <= 0 || plus > at) continue
    if (!routeAddresses.has(withoutPlusTag(address))) continue
    const ref = address.slice(plus + 1, at)
    if (ref.length > 0 && ref.length <= 100) found.push({ ref, address })
  }
  return found
}
