import { graphError, header, type FakeAnswer, type RequestHeaders } from './graph-http.ts'

/**
 * What can go wrong for a client of the Microsoft stand-in: faults tests queue for the next
 * Graph, Outlook and token requests, and Graph's own throttling per mailbox.
 */

export type GraphFault =
  /** Answered before the request is processed: nothing changes (a throttled send does not send). */
  | { kind: 'status'; status: number; code?: string; message?: string; retryAfter?: number }
  /** Connection reset before the request is processed. */
  | { kind: 'network' }
  | { kind: 'delay'; ms: number }
  /**
   * The request is processed (a send does send), then its answer is lost: the client sees a
   * connection reset or, with `status`, that error (e.g. 504) instead of the real answer.
   */
  | { kind: 'lost-response'; status?: number; code?: string; message?: string; retryAfter?: number }

export interface GraphFaultMatch {
  /** HTTP method, e.g. 'POST'. Any method when left out. */
  method?: string
  /** Tested against the URL pathname, e.g. /\/send$/. Any path when left out. */
  path?: RegExp
}

export type TokenFault =
  | { kind: 'status'; status: number; body?: unknown; contentType?: string }
  | { kind: 'network' }
  | { kind: 'delay'; ms: number }

export function faultAnswer(fault: { status: number; code?: string; message?: string; retryAfter?: number }): FakeAnswer {
  const [code, message] =
    fault.status === 429
      ? ['ApplicationThrottled', 'Application is over its MailboxConcurrency limit.']
      : fault.status === 504
        ? ['GatewayTimeout', 'The gateway did not receive a timely response from the upstream server.']
        : ['ServiceUnavailable', 'Service unavailable']
  return graphError(fault.status, fault.code ?? code, fault.message ?? message, fault.retryAfter !== undefined ? { 'retry-after': String(fault.retryAfter) } : undefined)
}

/** The faults queued for requests to come; FakeMicrosoft's fail* methods fill them. */
export class FaultQueues {
  private tokenFaults: TokenFault[] = []
  private graphFaults: GraphFault[] = []
  private targetedFaults: { match: GraphFaultMatch; faults: GraphFault[] }[] = []

  failNextGraphRequests(faults: GraphFault[]): void {
    this.graphFaults.push(...faults)
  }

  failGraphRequests(match: GraphFaultMatch, faults: GraphFault[]): void {
    if (faults.length) this.targetedFaults.push({ match: { ...match, method: match.method?.toUpperCase() }, faults: [...faults] })
  }

  failNextTokenRequests(faults: TokenFault[]): void {
    this.tokenFaults.push(...faults)
  }

  pending(): { graph: number; token: number } {
    return { graph: this.graphFaults.length + this.targetedFaults.reduce((sum, { faults }) => sum + faults.length, 0), token: this.tokenFaults.length }
  }

  clear(): void {
    this.graphFaults = []
    this.targetedFaults = []
    this.tokenFaults = []
  }

  /** The fault a Graph or Outlook request takes: the first matching targeted one, else the next queued. */
  takeGraphFault(method: string, path: string): GraphFault | undefined {
    for (const [index, targeted] of this.targetedFaults.entries()) {
      const { method: wanted, path: pattern } = targeted.match
      if (wanted && wanted !== method) continue
      if (pattern) {
        pattern.lastIndex = 0 // a /g or /y pattern would otherwise remember the last match
        if (!pattern.test(path)) continue
      }
      const fault = targeted.faults.shift()
      if (!targeted.faults.length) this.targetedFaults.splice(index, 1)
      return fault
    }
    return this.graphFaults.shift()
  }

  takeTokenFault(): TokenFault | undefined {
    return this.tokenFaults.shift()
  }
}

export interface MailboxLimitSettings {
  /** 0: no limit. */
  concurrencyLimit: number
  /** 0: no limit. */
  requestsPer10Minutes: number
}

/**
 * Graph's throttling per mailbox: requests in flight at once (MailboxConcurrency) and requests
 * per app in 10 minutes (MailboxRequests). Mailboxes are keyed by lowercase address.
 */
export class MailboxLimits {
  readonly maxConcurrentPerMailbox = new Map<string, number>()
  readonly concurrencyRefusals = new Map<string, number>()
  private readonly inFlight = new Map<string, number>()
  /** When each app's recent requests to each mailbox came (by `appId\nmailbox`), for requestsPer10Minutes. */
  private readonly recentRequests = new Map<string, number[]>()
  private readonly settings: () => MailboxLimitSettings
  private readonly appIdOf: (token: string) => string | undefined

  constructor(settings: () => MailboxLimitSettings, appIdOf: (token: string) => string | undefined) {
    this.settings = settings
    this.appIdOf = appIdOf
  }

  /** Counts a request to the mailbox in; how many are in flight with it. Every enter needs a leave. */
  enter(mailboxKey: string): number {
    const inFlight = (this.inFlight.get(mailboxKey) ?? 0) + 1
    this.inFlight.set(mailboxKey, inFlight)
    if (inFlight > (this.maxConcurrentPerMailbox.get(mailboxKey) ?? 0)) this.maxConcurrentPerMailbox.set(mailboxKey, inFlight)
    return inFlight
  }

  leave(mailboxKey: string): void {
    const left = this.inFlight.get(mailboxKey)! - 1
    if (left > 0) this.inFlight.set(mailboxKey, left)
    else this.inFlight.delete(mailboxKey)
  }

  /** The 429 for a request that came with `inFlight` requests to its mailbox in flight, when that is over the limit. */
  overConcurrency(mailboxKey: string, inFlight: number): FakeAnswer | undefined {
    const limit = this.settings().concurrencyLimit
    if (mailboxKey && limit > 0 && inFlight > limit) {
      this.concurrencyRefusals.set(mailboxKey, (this.concurrencyRefusals.get(mailboxKey) ?? 0) + 1)
      return faultAnswer({ status: 429, retryAfter: 1 })
    }
    return undefined
  }

  /** Counts the request against its app's 10-minute budget for the mailbox; the refusal once it is spent. */
  overRequestBudget(mailboxKey: string, headers: RequestHeaders): FakeAnswer | undefined {
    const budget = this.settings().requestsPer10Minutes
    if (budget <= 0) return undefined
    const token = header(headers, 'authorization')?.replace(/^Bearer\s+/i, '')
    const key = `${(token && this.appIdOf(token)) ?? 'anonymous'}\n${mailboxKey}`
    const now = Date.now()
    const recent = this.recentRequests.get(key) ?? []
    while (recent.length > 0 && recent[0]! <= now - 600_000) recent.shift()
    if (recent.length >= budget) {
      return faultAnswer({ status: 429, message: 'Application is over its MailboxRequests limit.', retryAfter: Math.max(1, Math.ceil((recent[0]! + 600_000 - now) / 1000)) })
    }
    recent.push(now)
    this.recentRequests.set(key, recent)
    return undefined
  }
}
