import { GraphError } from '@microsoft/microsoft-graph-client'
import { TransportError } from './transport.ts'

/**
 * The vocabulary of everything that can go wrong talking to Microsoft: TokenError for Entra
 * ID, MailboxError for Graph. Codes are stable; hints say what an operator can do.
 */

const TLS_HINT =
  'Mailgate does not trust the certificate of this host. If it reaches Microsoft through a proxy or a local stand-in with a private CA, give that CA to Node: NODE_EXTRA_CA_CERTS=/path/to/ca.pem (or NODE_USE_SYSTEM_CA=1 to trust the system store), then restart.'

export type TokenErrorCode =
  | 'TENANT_NOT_FOUND'
  | 'APP_NOT_FOUND'
  | 'INVALID_CLIENT_SECRET'
  | 'CLIENT_SECRET_EXPIRED'
  | 'CERTIFICATE_NOT_REGISTERED'
  | 'INVALID_CLIENT_ASSERTION'
  | 'IDENTITY_PROVIDER_ERROR'
  | 'NETWORK_ERROR'
  | 'TLS_UNTRUSTED'
  | 'TOKEN_TIMEOUT'
  | 'TOKEN_REQUEST_FAILED'

const TOKEN_HINTS: Record<TokenErrorCode, string> = {
  TENANT_NOT_FOUND:
    'Entra ID does not know this tenant. Use the Directory (tenant) ID from the app registration overview, or a verified domain of the tenant, and check the cloud.',
  APP_NOT_FOUND:
    'No app with this Application (client) ID exists in the tenant. Copy the client ID from the app registration overview, and check that the app lives in this tenant.',
  INVALID_CLIENT_SECRET:
    'The client secret is wrong. Copy the secret Value (not the Secret ID) from Certificates & secrets, or create a new one.',
  CLIENT_SECRET_EXPIRED: 'The client secret has expired. Create a new secret in Certificates & secrets and update the integration.',
  CERTIFICATE_NOT_REGISTERED:
    'Entra ID does not know this certificate for the app. Upload its public part (.cer) under Certificates & secrets of the app registration; the thumbprints must match.',
  INVALID_CLIENT_ASSERTION: 'Entra ID rejected the signed client assertion. Check the certificate and the server clock.',
  IDENTITY_PROVIDER_ERROR: 'Entra ID answered with a server error. This is usually temporary: try again in a minute.',
  NETWORK_ERROR: 'Could not reach Entra ID. Check outbound HTTPS from this server to the sign-in host.',
  TLS_UNTRUSTED: TLS_HINT,
  TOKEN_TIMEOUT: 'Entra ID did not answer within 10 seconds. Check outbound network access, then try again.',
  TOKEN_REQUEST_FAILED: 'Entra ID refused the token request. The message has its reason.',
}

export class TokenError extends Error {
  readonly code: TokenErrorCode
  readonly hint: string
  /** The AADSTS code Entra gave, when it gave one. */
  readonly aadsts: string | undefined

  constructor(code: TokenErrorCode, message: string, aadsts?: string) {
    super(message)
    this.name = 'TokenError'
    this.code = code
    this.hint = TOKEN_HINTS[code]
    this.aadsts = aadsts
  }
}

const AADSTS_CODES: Record<string, TokenErrorCode> = {
  '90002': 'TENANT_NOT_FOUND',
  '900023': 'TENANT_NOT_FOUND',
  '700016': 'APP_NOT_FOUND',
  '7000215': 'INVALID_CLIENT_SECRET',
  '7000222': 'CLIENT_SECRET_EXPIRED',
  '700027': 'CERTIFICATE_NOT_REGISTERED',
  '700024': 'INVALID_CLIENT_ASSERTION',
  '5000224': 'TENANT_NOT_FOUND',
  '90033': 'IDENTITY_PROVIDER_ERROR',
}

/** Turns whatever MSAL threw into a stable code, without echoing anything secret. */
export function toTokenError(error: unknown): TokenError {
  if (error instanceof TokenError) return error
  const transport = (error as { transport?: unknown })?.transport
  if (transport instanceof TransportError) {
    if (transport.kind === 'tls') return new TokenError('TLS_UNTRUSTED', transport.message)
    if (transport.kind === 'timeout') return new TokenError('TOKEN_TIMEOUT', transport.message)
    return new TokenError('NETWORK_ERROR', `Could not reach the Entra ID sign-in host ${transport.host}`)
  }
  const err = error as { errorCode?: string; errorMessage?: string; message?: string; status?: number }
  const text = `${err.errorMessage ?? ''} ${err.message ?? ''}`
  const aadsts = /AADSTS(\d+)/.exec(text)?.[1]
  // Entra's own description, without MSAL's framing or trace ids.
  const description =
    /AADSTS\d+:.*?(?= - Correlation ID| - Trace ID|\r|\n|$)/.exec(text)?.[0]?.trim() ??
    (err.errorMessage || err.message || 'token request failed').split(/\r?\n/)[0]!.trim()
  if (aadsts && AADSTS_CODES[aadsts]) return new TokenError(AADSTS_CODES[aadsts], description, aadsts)
  // token_parsing_error: a gateway answered with HTML or nothing instead of Entra's JSON.
  if ((err.status ?? 0) >= 500 || /server_error|temporarily_unavailable|token_parsing_error/.test(err.errorCode ?? '')) {
    return new TokenError('IDENTITY_PROVIDER_ERROR', `Entra ID answered with a server error${err.status ? ` (${err.status})` : ''}`, aadsts)
  }
  if (err.errorCode === 'network_error' || /ECONNREFUSED|ENOTFOUND|ECONNRESET|EAI_AGAIN|fetch failed/i.test(text)) {
    return new TokenError('NETWORK_ERROR', 'Could not reach the Entra ID sign-in host')
  }
  return new TokenError('TOKEN_REQUEST_FAILED', description, aadsts)
}

/** Token failures that say nothing about the credential: the next attempt may well work. */
const TRANSIENT_TOKEN_CODES: ReadonlySet<string> = new Set(['IDENTITY_PROVIDER_ERROR', 'NETWORK_ERROR', 'TLS_UNTRUSTED', 'TOKEN_TIMEOUT'])

export type GraphErrorCode =
  | 'MAILBOX_NOT_FOUND'
  | 'ACCESS_POLICY_BLOCKED'
  | 'PERMISSION_MISSING'
  | 'SEND_AS_DENIED'
  | 'FOLDER_NOT_FOUND'
  | 'SYNC_STATE_EXPIRED'
  | 'THROTTLED'
  | 'GRAPH_UNAVAILABLE'
  | 'NETWORK_ERROR'
  | 'TLS_UNTRUSTED'
  | 'GRAPH_TIMEOUT'
  | 'AUTHENTICATION_FAILED'
  | 'GRAPH_REQUEST_FAILED'
  | 'REQUEST_SLOTS_UNAVAILABLE'

const MAILBOX_HINTS: Record<GraphErrorCode, string> = {
  MAILBOX_NOT_FOUND:
    'Exchange Online has no mailbox with this address in the tenant. Check the address, and that the shared mailbox exists and is licensed for Exchange Online.',
  ACCESS_POLICY_BLOCKED:
    'An application access policy or RBAC for Applications scope keeps this app away from the mailbox. Add the mailbox to the group the policy allows (New-ApplicationAccessPolicy / management scope), then test again; changes can take up to an hour.',
  PERMISSION_MISSING:
    'The app lacks the Graph application permission for this. Grant Mail.ReadWrite (incoming) or Mail.Send (outgoing) with admin consent.',
  SEND_AS_DENIED:
    'The mailbox may not send as this address. Give the mailbox Send As rights on the alias in Exchange, or use an address of the mailbox itself.',
  FOLDER_NOT_FOUND: 'No folder with this path exists in the mailbox. Folder names are matched case-insensitively, level by level.',
  SYNC_STATE_EXPIRED: 'Graph no longer knows this delta link: the folder is read again from the start (mail already taken in is recognised as duplicate).',
  THROTTLED: 'Microsoft Graph is throttling this app for the mailbox. Wait for the Retry-After period and try again.',
  GRAPH_UNAVAILABLE: 'Microsoft Graph answered with a server error. This is usually temporary: try again shortly.',
  NETWORK_ERROR: 'Could not reach Microsoft Graph. Check outbound HTTPS from this server to the Graph host.',
  TLS_UNTRUSTED: TLS_HINT,
  GRAPH_TIMEOUT: 'Microsoft Graph did not answer in time. Try again.',
  AUTHENTICATION_FAILED: 'No token could be acquired for the integration. Test the integration for details.',
  GRAPH_REQUEST_FAILED: 'Microsoft Graph refused the request. The message has its reason.',
  REQUEST_SLOTS_UNAVAILABLE:
    "The database that keeps each mailbox's Graph request slots could not be reached, so no request was sent. It is tried again later; check the database if this persists.",
}

export class MailboxError extends Error {
  readonly code: GraphErrorCode
  readonly hint: string
  readonly status: number | undefined
  readonly graphCode: string | undefined
  readonly retryAfterSeconds: number | undefined
  /** For AUTHENTICATION_FAILED: the token error's code (or SECRETS_UNREADABLE). */
  readonly tokenCode: string | undefined

  constructor(
    code: GraphErrorCode,
    message: string,
    details: { status?: number; graphCode?: string; retryAfterSeconds?: number; hint?: string; tokenCode?: string; cause?: unknown } = {},
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause })
    this.name = 'MailboxError'
    this.code = code
    this.hint = details.hint ?? MAILBOX_HINTS[code]
    this.status = details.status
    this.graphCode = details.graphCode
    this.retryAfterSeconds = details.retryAfterSeconds
    this.tokenCode = details.tokenCode
  }

  /** Authentication and unreachable-mailbox failures count toward automatic disable. */
  get countsTowardDisable(): boolean {
    return ['AUTHENTICATION_FAILED', 'MAILBOX_NOT_FOUND', 'ACCESS_POLICY_BLOCKED', 'PERMISSION_MISSING'].includes(this.code)
  }

  /** An authentication failure that says nothing about the credential (Entra down, no network). */
  get transientAuthentication(): boolean {
    return this.code === 'AUTHENTICATION_FAILED' && TRANSIENT_TOKEN_CODES.has(this.tokenCode ?? '')
  }
}

function retryAfterOf(value: string | null | undefined): number | undefined {
  const seconds = Number(value)
  return Number.isFinite(seconds) && seconds > 0 ? seconds : undefined
}

/** A Graph answer with an error status, in this vocabulary. */
function mailboxErrorFromStatus(
  status: number,
  answer: { graphCode?: string; message?: string; retryAfter?: string | null },
): MailboxError {
  const { graphCode } = answer
  const message = answer.message || `Graph answered ${status}`
  const details = { status, graphCode, retryAfterSeconds: retryAfterOf(answer.retryAfter) }
  if (status === 410 || /^(SyncStateNotFound|SyncStateInvalid|resyncRequired)$/i.test(graphCode ?? '')) return new MailboxError('SYNC_STATE_EXPIRED', message, details)
  if (status === 404 && /ErrorInvalidUser|MailboxNotEnabledForRESTAPI|ResourceNotFound|ErrorNonExistentMailbox/i.test(graphCode ?? '')) {
    return new MailboxError('MAILBOX_NOT_FOUND', message, details)
  }
  if (status === 404) return new MailboxError('FOLDER_NOT_FOUND', message, details)
  if (status === 403 && /RAOP|AccessPolicy|Access to OData is disabled|management scope/i.test(message)) {
    return new MailboxError('ACCESS_POLICY_BLOCKED', message, details)
  }
  if (status === 403 && graphCode === 'ErrorSendAsDenied') return new MailboxError('SEND_AS_DENIED', message, details)
  if (status === 401) return new MailboxError('AUTHENTICATION_FAILED', message, details)
  if (status === 403) return new MailboxError('PERMISSION_MISSING', message, details)
  if (status === 429) return new MailboxError('THROTTLED', message, details)
  if (status >= 500) return new MailboxError('GRAPH_UNAVAILABLE', message, details)
  return new MailboxError('GRAPH_REQUEST_FAILED', message, details)
}

/**
 * An upload-session PUT that failed. Its URL is pre-authorised and names no mailbox or
 * folder, so only throttling and outages are told apart.
 */
export function uploadSessionError(status: number, text: string, retryAfter: string | null): MailboxError {
  let graphCode: string | undefined
  let message = `The attachment upload answered ${status}`
  try {
    const parsed = JSON.parse(text) as { error?: { code?: string; message?: string } }
    graphCode = parsed.error?.code
    if (parsed.error?.message) message = parsed.error.message
  } catch {
    // Not JSON: keep the status line.
  }
  const details = { status, graphCode, retryAfterSeconds: retryAfterOf(retryAfter) }
  if (status === 429) return new MailboxError('THROTTLED', message, details)
  if (status >= 500) return new MailboxError('GRAPH_UNAVAILABLE', message, details)
  return new MailboxError('GRAPH_REQUEST_FAILED', message, details)
}

export function toMailboxError(error: unknown): MailboxError {
  if (error instanceof MailboxError) return error
  if (error instanceof TokenError) {
    return new MailboxError('AUTHENTICATION_FAILED', `${error.code}: ${error.message}`, { hint: error.hint, tokenCode: error.code, cause: error })
  }
  if (error instanceof TransportError) {
    if (error.kind === 'tls') return new MailboxError('TLS_UNTRUSTED', error.message)
    if (error.kind === 'timeout') return new MailboxError('GRAPH_TIMEOUT', 'No answer from Microsoft Graph in time')
    return new MailboxError('NETWORK_ERROR', 'Could not reach Microsoft Graph')
  }
  if (error instanceof GraphError && error.statusCode > 0) {
    return mailboxErrorFromStatus(error.statusCode, {
      graphCode: error.code ?? undefined,
      message: error.message,
      retryAfter: error.headers?.get?.('retry-after'),
    })
  }
  // The SDK wraps other failures in a GraphError with statusCode -1 and the cause's name as code.
  const err = error as { name?: string; code?: string | null }
  if (err?.name === 'TimeoutError' || err?.name === 'AbortError' || err?.code === 'TimeoutError' || err?.code === 'AbortError') {
    return new MailboxError('GRAPH_TIMEOUT', 'No answer from Microsoft Graph in time')
  }
  return new MailboxError('NETWORK_ERROR', 'Could not reach Microsoft Graph')
}
