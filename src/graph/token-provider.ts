import { ConfidentialClientApplication, LogLevel, type Configuration } from '@azure/msal-node'
import type { Cloud } from '../../db/tables/integrations.ts'
import { graphScope, hostsFor, type HostOverrides } from './clouds.ts'

export type AppCredential =
  | { kind: 'clientSecret'; clientSecret: string }
  | { kind: 'certificate'; privateKeyPem: string; certificatePem: string; thumbprintSha256: string }

export interface AppRegistration {
  /** Cache key part: the integration and the hash of exactly this configuration. */
  integrationId: string
  configHash: string
  tenant: string
  clientId: string
  cloud: Cloud
  credential: AppCredential
}

export interface GraphToken {
  accessToken: string
  expiresOn: Date | null
  /** Application permissions granted to the app (the token's `roles` claim). */
  roles: string[]
}

export type TokenErrorCode =
  | 'TENANT_NOT_FOUND'
  | 'APP_NOT_FOUND'
  | 'INVALID_CLIENT_SECRET'
  | 'CLIENT_SECRET_EXPIRED'
  | 'CERTIFICATE_NOT_REGISTERED'
  | 'INVALID_CLIENT_ASSERTION'
  | 'IDENTITY_PROVIDER_ERROR'
  | 'NETWORK_ERROR'
  | 'TOKEN_TIMEOUT'
  | 'TOKEN_REQUEST_FAILED'

const HINTS: Record<TokenErrorCode, string> = {
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
    this.hint = HINTS[code]
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

export function rolesOf(accessToken: string): string[] {
  const payload = accessToken.split('.')[1]
  if (!payload) return []
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { roles?: unknown }
    return Array.isArray(claims.roles) ? claims.roles.filter((role): role is string => typeof role === 'string') : []
  } catch {
    return []
  }
}

export interface TokenProviderOptions {
  hostOverrides?: HostOverrides
  timeoutMs?: number
}

/**
 * Acquires app-only Graph tokens with MSAL. One confidential client per integration
 * configuration: MSAL caches tokens inside it, and a changed configuration gets a new one.
 */
export class TokenProvider {
  private readonly clients = new Map<string, { configHash: string; client: ConfidentialClientApplication }>()
  /** Operator overrides of the Microsoft hosts; Graph clients built on this provider use them too. */
  readonly hostOverrides: HostOverrides
  private readonly timeoutMs: number

  constructor(options: TokenProviderOptions = {}) {
    this.hostOverrides = options.hostOverrides ?? {}
    this.timeoutMs = options.timeoutMs ?? 10_000
  }

  /**
   * `fresh` asks Entra now, with a throwaway client: no cached token and no remembered
   * throttling answer. A connection test needs that to prove the credential works today.
   */
  async acquire(registration: AppRegistration, options: { fresh?: boolean } = {}): Promise<GraphToken> {
    const hosts = hostsFor(registration.cloud, this.hostOverrides)
    const client = options.fresh
      ? new ConfidentialClientApplication(this.configuration(registration))
      : this.clientFor(registration)
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new TokenError('TOKEN_TIMEOUT', `No answer from ${hosts.authority} within ${this.timeoutMs / 1000} s`)),
        this.timeoutMs,
      )
    })
    try {
      const result = await Promise.race([
        client.acquireTokenByClientCredential({ scopes: [graphScope(hosts)] }),
        timeout,
      ])
      if (!result?.accessToken) throw new TokenError('TOKEN_REQUEST_FAILED', 'Entra ID returned no access token')
      return { accessToken: result.accessToken, expiresOn: result.expiresOn, roles: rolesOf(result.accessToken) }
    } catch (error) {
      throw toTokenError(error)
    } finally {
      clearTimeout(timer)
    }
  }

  /** Drops the cached client (and its tokens) of an integration, e.g. after it changed. */
  forget(integrationId: string): void {
    for (const key of this.clients.keys()) if (key.startsWith(`${integrationId}:`)) this.clients.delete(key)
  }

  private clientFor(registration: AppRegistration): ConfidentialClientApplication {
    const key = `${registration.integrationId}:${registration.configHash}`
    const cached = this.clients.get(key)
    if (cached) return cached.client
    this.forget(registration.integrationId)
    const client = new ConfidentialClientApplication(this.configuration(registration))
    this.clients.set(key, { configHash: registration.configHash, client })
    return client
  }

  private configuration(registration: AppRegistration): Configuration {
    const { authority: authorityHost } = hostsFor(registration.cloud, this.hostOverrides)
    const authority = `https://${authorityHost}/${registration.tenant}`
    const credential = registration.credential
    return {
      auth: {
        clientId: registration.clientId,
        authority,
        // Metadata given up front: MSAL makes no discovery calls, and an unknown tenant is
        // reported by the token endpoint itself with its AADSTS code.
        authorityMetadata: JSON.stringify({
          token_endpoint: `${authority}/oauth2/v2.0/token`,
          authorization_endpoint: `${authority}/oauth2/v2.0/authorize`,
          issuer: `https://${authorityHost}/${registration.tenant}/v2.0`,
          jwks_uri: `https://${authorityHost}/${registration.tenant}/discovery/v2.0/keys`,
          end_session_endpoint: `${authority}/oauth2/v2.0/logout`,
        }),
        cloudDiscoveryMetadata: JSON.stringify({
          tenant_discovery_endpoint: `${authority}/v2.0/.well-known/openid-configuration`,
          'api-version': '1.1',
          metadata: [{ preferred_network: authorityHost, preferred_cache: authorityHost, aliases: [authorityHost] }],
        }),
        knownAuthorities: [authorityHost],
        ...(credential.kind === 'clientSecret'
          ? { clientSecret: credential.clientSecret }
          : {
              clientCertificate: {
                thumbprintSha256: credential.thumbprintSha256,
                privateKey: credential.privateKeyPem,
                x5c: credential.certificatePem,
              },
            }),
      },
      system: { loggerOptions: { piiLoggingEnabled: false, logLevel: LogLevel.Error, loggerCallback: () => {} } },
    }
  }
}
