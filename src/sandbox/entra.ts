import { constants, createHmac, randomUUID, verify, X509Certificate } from 'node:crypto'
import type { TokenFault } from './faults.ts'

/**
 * Entra ID for the Microsoft stand-in: tenants in the national clouds, their app registrations
 * (secrets, certificates, granted application permissions), the client-credentials token
 * endpoint, and checking the tokens it issued.
 */

export interface FakeSecret {
  value: string
  expiresAt: Date
}

export interface FakeApp {
  clientId: string
  displayName: string
  secrets: FakeSecret[]
  /** PEM certificates registered under Certificates & secrets. */
  certificates: string[]
  /** Granted application permissions, e.g. Mail.ReadWrite, Mail.Send. */
  roles: string[]
}

/** Which national cloud a tenant lives in decides its sign-in, Graph and Outlook hosts. */
export type FakeCloud = 'global' | 'usgov' | 'usgovdod' | 'china'
export const CLOUD_HOSTS: Record<FakeCloud, { authority: string; graph: string; outlook: string }> = {
  global: { authority: 'login.microsoftonline.com', graph: 'graph.microsoft.com', outlook: 'outlook.office.com' },
  usgov: { authority: 'login.microsoftonline.us', graph: 'graph.microsoft.us', outlook: 'outlook.office365.us' },
  usgovdod: { authority: 'login.microsoftonline.us', graph: 'dod-graph.microsoft.us', outlook: 'outlook-dod.office365.us' },
  china: { authority: 'login.chinacloudapi.cn', graph: 'microsoftgraph.chinacloudapi.cn', outlook: 'partner.outlook.cn' },
}

export interface FakeTenant {
  id: string
  cloud: FakeCloud
  domains: string[]
  apps: Map<string, FakeApp>
}

export interface TokenRequestRecord {
  host: string
  tenant: string
  clientId: string | undefined
  grant: string | undefined
  method: 'secret' | 'assertion' | 'none'
  outcome: string
}

export interface TokenClaims {
  tid: string
  appid: string
  roles: string[]
  aud: string
  exp: number
}

/** What the token endpoint needs from the rest of the stand-in. */
export interface EntraHost {
  takeFault(): TokenFault | undefined
  /** The sign-in host a request to `host` is for: itself, or the cloud's host a stand-in host replaces. */
  authority(host: string): string
}

const TOKEN_SIGNING_KEY = 'fake-microsoft-token-signing-key'

function base64urlJson(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url')
}

function entraError(status: number, error: string, code: number, description: string) {
  const trace = randomUUID()
  return {
    status,
    body: {
      error,
      error_description: `AADSTS${code}: ${description}\r\nTrace ID: ${trace}\r\nCorrelation ID: ${randomUUID()}\r\nTimestamp: ${new Date().toISOString()}`,
      error_codes: [code],
      timestamp: new Date().toISOString(),
      trace_id: trace,
      correlation_id: randomUUID(),
      error_uri: `https://login.microsoftonline.com/error?code=${code}`,
    },
  }
}

export class FakeEntra {
  readonly tenants = new Map<string, FakeTenant>()
  readonly tokenRequests: TokenRequestRecord[] = []
  private readonly verifiedTokens = new Map<string, TokenClaims>()
  private readonly host: EntraHost

  constructor(host: EntraHost) {
    this.host = host
  }

  addTenant(options: { id?: string; domains?: string[]; cloud?: FakeCloud } = {}): FakeTenant {
    const tenant: FakeTenant = {
      id: options.id ?? randomUUID(),
      cloud: options.cloud ?? 'global',
      domains: options.domains ?? [],
      apps: new Map(),
    }
    this.tenants.set(tenant.id, tenant)
    return tenant
  }

  registerApp(
    tenant: FakeTenant,
    options: { clientId?: string; roles?: string[]; secrets?: FakeSecret[]; certificates?: string[] } = {},
  ): FakeApp {
    const app: FakeApp = {
      clientId: options.clientId ?? randomUUID(),
      displayName: 'Mailgate',
      secrets: options.secrets ?? [],
      certificates: options.certificates ?? [],
      roles: options.roles ?? ['Mail.ReadWrite', 'Mail.Send'],
    }
    tenant.apps.set(app.clientId, app)
    return app
  }

  /** POST /{tenant}/oauth2/v2.0/token on `host` with the form `rawBody`. */
  async token(host: string, tenantKey: string, rawBody: string) {
    const form = Object.fromEntries(new URLSearchParams(rawBody))
    const record: TokenRequestRecord = {
      host,
      tenant: tenantKey,
      clientId: form.client_id,
      grant: form.grant_type,
      method: form.client_secret ? 'secret' : form.client_assertion ? 'assertion' : 'none',
      outcome: 'pending',
    }
    this.tokenRequests.push(record)
    const fault = this.host.takeFault()
    if (fault?.kind === 'delay') await new Promise((resolve) => setTimeout(resolve, fault.ms))
    if (fault?.kind === 'network') {
      record.outcome = 'network'
      return 'network' as const
    }
    if (fault?.kind === 'status') {
      record.outcome = `status ${fault.status}`
      return {
        status: fault.status,
        body: fault.body ?? { error: 'server_error', error_description: 'AADSTS90033: A transient error has occurred.' },
        contentType: fault.contentType,
      }
    }
    const outcome = this.issue(host, tenantKey, form)
    record.outcome = outcome.status === 200 ? 'issued' : String((outcome.body as { error_codes?: number[] }).error_codes?.[0])
    return outcome
  }

  /** The claims of a token this endpoint issued and that has not expired; null for any other. */
  verifyToken(token: string): TokenClaims | null {
    // Benchmarks send thousands of requests with the same few tokens: verify each only once.
    let claims = this.verifiedTokens.get(token)
    if (!claims) {
      const [header, payload, signature] = token.split('.')
      if (!header || !payload || !signature) return null
      const expected = createHmac('sha256', TOKEN_SIGNING_KEY).update(`${header}.${payload}`).digest('base64url')
      if (expected !== signature) return null
      claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as TokenClaims
      this.verifiedTokens.set(token, claims)
    }
    if (claims.exp * 1000 < Date.now()) return null
    return claims
  }

  /** Like Entra: a tenant exists only in its own cloud. */
  private findTenant(host: string, idOrDomain: string): FakeTenant | undefined {
    const key = idOrDomain.toLowerCase()
    for (const tenant of this.tenants.values()) {
      if (CLOUD_HOSTS[tenant.cloud].authority !== host) continue
      if (tenant.id === key || tenant.domains.some((domain) => domain.toLowerCase() === key)) return tenant
    }
    return undefined
  }

  private issue(host: string, tenantKey: string, form: Record<string, string>) {
    if (form.grant_type !== 'client_credentials') {
      return entraError(400, 'unsupported_grant_type', 70003, 'The app requested an unsupported grant type.')
    }
    const tenant = this.findTenant(this.host.authority(host), tenantKey)
    if (!tenant) {
      return entraError(400, 'invalid_request', 90002, `Tenant '${tenantKey}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.`)
    }
    const app = form.client_id ? tenant.apps.get(form.client_id.toLowerCase()) : undefined
    if (!app) {
      return entraError(400, 'unauthorized_client', 700016, `Application with identifier '${form.client_id}' was not found in the directory '${tenant.id}'.`)
    }
    if (form.client_secret !== undefined) {
      const secret = app.secrets.find((candidate) => candidate.value === form.client_secret)
      if (!secret) {
        return entraError(401, 'invalid_client', 7000215, 'Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.')
      }
      if (secret.expiresAt <= new Date()) {
        return entraError(401, 'invalid_client', 7000222, `The provided client secret keys for app '${app.clientId}' are expired.`)
      }
    } else if (form.client_assertion !== undefined) {
      const problem = this.checkAssertion(host, tenantKey, app, form)
      if (problem) return problem
    } else {
      return entraError(401, 'invalid_client', 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
    }
    // Tokens are for the Graph host of the tenant's cloud and no other.
    if (form.scope !== `https://${CLOUD_HOSTS[tenant.cloud].graph}/.default`) {
      return entraError(400, 'invalid_scope', 1002012, `The provided value for scope ${form.scope} is not valid.`)
    }
    const now = Math.floor(Date.now() / 1000)
    const header = base64urlJson({ alg: 'HS256', typ: 'JWT' })
    const payload = base64urlJson({
      aud: form.scope.replace('/.default', ''),
      iss: `https://sts.windows.net/${tenant.id}/`,
      iat: now,
      nbf: now,
      exp: now + 3599,
      appid: app.clientId,
      tid: tenant.id,
      roles: app.roles,
    })
    const signature = createHmac('sha256', TOKEN_SIGNING_KEY).update(`${header}.${payload}`).digest('base64url')
    return {
      status: 200,
      body: { token_type: 'Bearer', expires_in: 3599, ext_expires_in: 3599, access_token: `${header}.${payload}.${signature}` },
    }
  }

  /** Verifies a certificate client assertion the way Entra does, short of revocation. */
  private checkAssertion(host: string, tenantKey: string, app: FakeApp, form: Record<string, string>) {
    const invalid = (description: string) => entraError(401, 'invalid_client', 700027, description)
    if (form.client_assertion_type !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') {
      return entraError(400, 'invalid_request', 90014, 'The client_assertion_type is missing or wrong.')
    }
    const [headerPart, payloadPart, signaturePart] = form.client_assertion!.split('.')
    if (!headerPart || !payloadPart || !signaturePart) return invalid('Client assertion is not a JWT.')
    const header = JSON.parse(Buffer.from(headerPart, 'base64url').toString()) as Record<string, string>
    const claims = JSON.parse(Buffer.from(payloadPart, 'base64url').toString()) as Record<string, unknown>
    const thumbprint = header['x5t#S256']
      ? { sha256: Buffer.from(header['x5t#S256'], 'base64url').toString('hex').toUpperCase() }
      : header.x5t
        ? { sha1: Buffer.from(header.x5t, 'base64url').toString('hex').toUpperCase() }
        : null
    if (!thumbprint) return invalid('Client assertion has no certificate thumbprint (x5t#S256).')
    const registered = app.certificates
      .map((pem) => new X509Certificate(pem))
      .find((cert) =>
        thumbprint.sha256
          ? cert.fingerprint256.replaceAll(':', '') === thumbprint.sha256
          : cert.fingerprint.replaceAll(':', '') === thumbprint.sha1,
      )
    if (!registered) {
      return invalid(`Client assertion failed signature validation. Reason - The key was not found. Thumbprint of key used by client: '${thumbprint.sha256 ?? thumbprint.sha1}'.`)
    }
    const data = Buffer.from(`${headerPart}.${payloadPart}`)
    const signature = Buffer.from(signaturePart, 'base64url')
    const key = registered.publicKey
    const valid =
      header.alg === 'PS256'
        ? verify('sha256', data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, signature)
        : header.alg === 'RS256'
          ? verify('sha256', data, key, signature)
          : false
    if (!valid) return invalid('Client assertion failed signature validation.')
    const audience = `https://${host}/${tenantKey}/oauth2/v2.0/token`
    if (claims.aud !== audience) {
      return entraError(401, 'invalid_client', 700021, `Client assertion audience claim does not match Realm issuer. Expected ${audience}, got ${String(claims.aud)}.`)
    }
    if (claims.iss !== app.clientId || claims.sub !== app.clientId) {
      return entraError(401, 'invalid_client', 700023, 'Client assertion issuer and subject must be the client id.')
    }
    if (typeof claims.exp !== 'number' || claims.exp * 1000 <= Date.now()) {
      return entraError(401, 'invalid_client', 700024, 'Client assertion is not within its valid time range.')
    }
    if (new Date(registered.validTo) <= new Date()) return invalid('The certificate registered for the app has expired.')
    return null
  }
}
