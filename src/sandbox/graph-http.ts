import { randomUUID } from 'node:crypto'
import type { GraphFault } from './faults.ts'
import type { FakeMailbox } from './mail-store.ts'

/**
 * What the parts of the Microsoft stand-in share about requests and answers: their shapes,
 * Graph's error bodies, and small readers of paths, headers and bodies.
 */

/** A request body as it arrives: text (UTF-8, or latin1 for bytes), raw bytes, or JSON a test harness already parsed. */
export type RequestBody = string | Buffer | Record<string, unknown>

export type RequestHeaders = Record<string, string | string[] | undefined>

export interface FakeAnswer {
  status: number
  body?: unknown
  headers?: Record<string, string>
}

export interface GraphRequestRecord {
  host: string
  method: string
  path: string
  /** When it arrived (epoch ms). */
  at: number
  appId: string | undefined
  /** What the client got; -1 for a connection reset. */
  status: number
  /** The Prefer request header, when sent. */
  prefer?: string
  /** The query string (with its '?'), when there was one. */
  query?: string
  /** Outlook-host requests (upload URLs) only: whether an Authorization header came along. */
  hadAuthorization?: boolean
  /** The fault this request took, if any. */
  fault?: GraphFault['kind']
  /** lost-response faults: the status the request was really processed with. */
  processedStatus?: number
}

/** What a Graph mail route needs to know about the request it serves. */
export interface GraphContext {
  host: string
  url: URL
  mailbox: FakeMailbox
  appId: string
  roles: Set<string>
  preferImmutable: boolean
  /** The Prefer request header. */
  prefer: string | undefined
  body: RequestBody
}

export function reply(status: number, body: unknown = '', extra?: Record<string, string>): FakeAnswer {
  // Like Graph: an empty answer (202 from sendMail and send, 204) has no content type.
  return { status, body, headers: body === '' ? { ...extra } : { 'content-type': 'application/json', ...extra } }
}

export function graphError(status: number, code: string, message: string, extra?: Record<string, string>): FakeAnswer {
  return reply(status, { error: { code, message, innerError: { 'request-id': randomUUID(), date: new Date().toISOString() } } }, extra)
}

export const notFound = () => graphError(404, 'ErrorItemNotFound', 'The specified object was not found in the store.')
export const tooLarge = (message = 'The request body is larger than the maximum of 4 MB Microsoft Graph accepts.') =>
  graphError(413, 'RequestBodyTooLarge', message)
export const denied = () => graphError(403, 'ErrorAccessDenied', 'Access is denied. Check credentials and try again.')
export const unreadableJson = () =>
  graphError(400, 'BadRequest', 'Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.')
export const canRead = (roles: Set<string>) => [...roles].some((role) => /^Mail\.(Read|ReadWrite|ReadBasic)(\.All)?$/.test(role))
export const safeDecode = (segment: string) => {
  try {
    return decodeURIComponent(segment)
  } catch {
    return segment
  }
}
export const header = (headers: RequestHeaders, name: string) => {
  const value = headers[name] ?? headers[name.toLowerCase()]
  return Array.isArray(value) ? value.join(', ') : value
}

/** Splits OData key segments such as `mailFolders('AAMk...')` into `mailFolders`, `AAMk...`. */
export function keySegments(segments: string[]): string[] {
  return segments.flatMap((segment) => {
    const match = /^([A-Za-z.]+)\('(.*)'\)$/.exec(segment)
    return match ? [match[1]!, match[2]!.replaceAll("''", "'")] : [segment]
  })
}

export function requestBytes(body: RequestBody): number {
  if (typeof body === 'string') return Buffer.byteLength(body)
  // nock hands over JSON bodies already parsed; clients send JSON.stringify output, so this is the size sent.
  return body === undefined || body === null ? 0 : Buffer.byteLength(JSON.stringify(body))
}

export function jsonBody(body: RequestBody): Record<string, unknown> | undefined {
  if (typeof body !== 'string') return (body ?? {}) as Record<string, unknown>
  if (body === '') return {}
  try {
    return JSON.parse(body) as Record<string, unknown>
  } catch {
    return undefined
  }
}
