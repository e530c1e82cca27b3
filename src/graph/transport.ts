/**
 * Every byte Mailgate sends to Microsoft (Entra, Graph, upload sessions) leaves through
 * `microsoftFetch`, so a failure to connect is classified once: a certificate this server
 * does not trust is told apart from an unreachable host and from a timeout.
 */

export type TransportFailureKind = 'tls' | 'timeout' | 'network'

/** Node's codes for a certificate chain or name it will not accept. */
const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'HOSTNAME_MISMATCH',
])

export class TransportError extends Error {
  readonly kind: TransportFailureKind
  /** Node's error code (e.g. SELF_SIGNED_CERT_IN_CHAIN, ECONNREFUSED), when there was one. */
  readonly causeCode: string | undefined
  readonly host: string

  constructor(kind: TransportFailureKind, host: string, causeCode: string | undefined, message: string) {
    super(message)
    this.name = 'TransportError'
    this.kind = kind
    this.host = host
    this.causeCode = causeCode
  }
}

function causes(error: unknown): { name?: string; code?: string; message?: string }[] {
  const chain: { name?: string; code?: string; message?: string }[] = []
  let current = error as { cause?: unknown } | undefined
  while (current && typeof current === 'object' && chain.length < 8) {
    chain.push(current as { name?: string; code?: string; message?: string })
    current = current.cause as { cause?: unknown } | undefined
  }
  return chain
}

/** What a failed fetch to `host` means for an operator. */
export function classifyTransportFailure(error: unknown, host: string): TransportError {
  if (error instanceof TransportError) return error
  const chain = causes(error)
  if (chain.some((link) => link.name === 'TimeoutError' || link.name === 'AbortError')) {
    return new TransportError('timeout', host, undefined, `No answer from ${host} in time`)
  }
  const tls = chain.find((link) => link.code && TLS_CODES.has(link.code))
  if (tls) {
    const why =
      tls.code === 'ERR_TLS_CERT_ALTNAME_INVALID' || tls.code === 'HOSTNAME_MISMATCH'
        ? 'its certificate is for another host name'
        : tls.code === 'CERT_HAS_EXPIRED' || tls.code === 'CERT_NOT_YET_VALID'
          ? 'its certificate is outside its validity period'
          : 'its certificate is not signed by an authority this server trusts'
    return new TransportError('tls', host, tls.code, `The TLS connection to ${host} was refused: ${why} (${tls.code})`)
  }
  const code = chain.map((link) => link.code).find((value) => typeof value === 'string' && value.length > 0)
  return new TransportError('network', host, code, `Could not reach ${host}${code ? ` (${code})` : ''}`)
}

/** fetch to a Microsoft host; a failure to connect is thrown as a classified TransportError. */
export async function microsoftFetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
  try {
    return await fetch(input, init)
  } catch (error) {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url
    throw classifyTransportFailure(error, hostOf(url))
  }
}

function hostOf(url: string): string {
  try {
    return new URL(url).host
  } catch {
    return 'the Microsoft host'
  }
}
