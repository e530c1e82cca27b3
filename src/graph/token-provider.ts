import {
  AuthError,
  ConfidentialClientApplication,
  LogLevel,
  type Configuration,
  type INetworkModule,
  type NetworkRequestOptions,
  type NetworkResponse,
} from '@azure/msal-node'
import type { Cloud } from '../../db/tables/integrations.ts'
import { graphScope, hostsFor, type HostOverrides } from './clouds.ts'
import { TokenError, toTokenError } from './errors.ts'
import { microsoftFetch, TransportError } from './transport.ts'

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

/** MSAL rethrows an AuthError from its network module as it is: this one carries the classified failure. */
class TransportAuthError extends AuthError {
  readonly transport: TransportError

  constructor(transport: TransportError) {
    super('network_error', transport.message)
    this.transport = transport
  }
}

/**
 * MSAL's HTTP through microsoftFetch, so that an untrusted certificate or a dead host reaches
 * toTokenError as such instead of as MSAL's bare "network request failed".
 */
const networkClient: INetworkModule = {
  sendGetRequestAsync: (url, options, timeout) => send(url, 'GET', options, timeout),
  sendPostRequestAsync: (url, options) => send(url, 'POST', options),
}

async function send<T>(url: string, method: 'GET' | 'POST', options?: NetworkRequestOptions, timeout?: number): Promise<NetworkResponse<T>> {
  let response: Response
  try {
    response = await microsoftFetch(url, {
      method,
      headers: options?.headers,
      ...(method === 'POST' ? { body: options?.body ?? '' } : {}),
      ...(timeout ? { signal: AbortSignal.timeout(timeout) } : {}),
    })
  } catch (error) {
    throw error instanceof TransportError ? new TransportAuthError(error) : error
  }
  const headers: Record<string, string> = {}
  response.headers.forEach((value, key) => (headers[key] = value))
  try {
    return { headers, body: (await response.json()) as T, status: response.status }
  } catch {
    throw new AuthError('token_parsing_error', `Entra ID answered ${response.status} with a body that is not JSON`)
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
        client.acquireTokenByClientCredential({ scopes: [graphScope(registration.cloud, this.hostOverrides)] }),
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

  /** A provider with the same settings and nothing cached, as another instance has. */
  sibling(): TokenProvider {
    return new TokenProvider({ hostOverrides: this.hostOverrides, timeoutMs: this.timeoutMs })
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
      system: {
        networkClient,
        loggerOptions: { piiLoggingEnabled: false, logLevel: LogLevel.Error, loggerCallback: () => {} },
      },
    }
  }
}
