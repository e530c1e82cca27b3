import { constants, createHmac, randomUUID, verify, X509Certificate } from 'node:crypto'
import nock from 'nock'

/**
 * A stateful stand-in for Microsoft's cloud: tenants with app registrations (secrets,
 * certificates, granted application permissions) behind the Entra token endpoint of every
 * national cloud. Requests are intercepted with nock, so no traffic leaves the machine.
 * Later features extend it with mailboxes and Graph mail endpoints.
 */

export const AUTHORITY_HOSTS = ['login.microsoftonline.com', 'login.microsoftonline.us', 'login.chinacloudapi.cn']
export const GRAPH_HOSTS = ['graph.microsoft.com', 'graph.microsoft.us', 'dod-graph.microsoft.us', 'microsoftgraph.chinacloudapi.cn']

export interface FakeFolder {
  id: string
  displayName: string
  wellKnownName?: string
  children: FakeFolder[]
}

export interface FakeSentMessage {
  from: string
  sender: string
  to: string[]
  subject: string
  headers: { name: string; value: string }[]
  savedToSentItems: boolean
}

export interface FakeMailbox {
  id: string
  address: string
  tenantId: string
  displayName: string
  folders: FakeFolder[]
  /** Aliases the mailbox may send as (Send As rights). */
  sendAs: Set<string>
  /** When set, an application access policy lets only these app ids in. */
  allowedApps?: Set<string>
  /** Messages sent from this mailbox, and messages delivered to it. */
  sent: FakeSentMessage[]
  received: FakeSentMessage[]
}

export type GraphFault =
  | { kind: 'status'; status: number; code?: string; message?: string; retryAfter?: number }
  | { kind: 'network' }
  | { kind: 'delay'; ms: number }

export interface GraphRequestRecord {
  host: string
  method: string
  path: string
  appId: string | undefined
  status: number
}

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

/** Which national cloud a tenant lives in decides its sign-in and Graph hosts. */
export type FakeCloud = 'global' | 'usgov' | 'usgovdod' | 'china'
const CLOUD_HOSTS: Record<FakeCloud, { authority: string; graph: string }> = {
  global: { authority: 'login.microsoftonline.com', graph: 'graph.microsoft.com' },
  usgov: { authority: 'login.microsoftonline.us', graph: 'graph.microsoft.us' },
  usgovdod: { authority: 'login.microsoftonline.us', graph: 'dod-graph.microsoft.us' },
  china: { authority: 'login.chinacloudapi.cn', graph: 'microsoftgraph.chinacloudapi.cn' },
}

export interface FakeTenant {
  id: string
  cloud: FakeCloud
  domains: string[]
  apps: Map<string, FakeApp>
}

export type TokenFault =
  | { kind: 'status'; status: number; body?: unknown; contentType?: string }
  | { kind: 'network' }
  | { kind: 'delay'; ms: number }

export interface TokenRequestRecord {
  host: string
  tenant: string
  clientId: string | undefined
  grant: string | undefined
  method: 'secret' | 'assertion' | 'none'
  outcome: string
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

export class FakeMicrosoft {
  readonly tenants = new Map<string, FakeTenant>()
  readonly tokenRequests: TokenRequestRecord[] = []
  readonly mailboxes = new Map<string, FakeMailbox>()
  readonly graphRequests: GraphRequestRecord[] = []
  private tokenFaults: TokenFault[] = []
  private graphFaults: GraphFault[] = []
  private scopes: nock.Scope[] = []

  /** Starts intercepting the Microsoft hosts. Call stop() in afterAll. */
  start(): this {
    nock.disableNetConnect()
    nock.enableNetConnect((host) => host.startsWith('127.0.0.1') || host.startsWith('localhost'))
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- nock binds `this` to the request
    const fake = this
    for (const host of AUTHORITY_HOSTS) {
      const scope = nock(`https://${host}`)
        .persist()
        .post(/^\/[^/]+\/oauth2\/v2\.0\/token$/)
        .query(true)
        // Throwing from the reply function reaches the client as a network error.
        .reply(async (uri: string, body: nock.Body) => {
          const tenant = uri.split('?')[0]!.split('/')[1]!
          const result = await this.token(host, tenant, typeof body === 'string' ? body : new URLSearchParams(body as Record<string, string>).toString())
          if (result === 'network') throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })
          const contentType = 'contentType' in result && result.contentType ? result.contentType : 'application/json; charset=utf-8'
          return [result.status, result.body as nock.Body, { 'content-type': contentType }]
        })
      this.scopes.push(scope)
    }
    for (const host of GRAPH_HOSTS) {
      for (const method of ['get', 'post', 'patch', 'delete'] as const) {
        const base = nock(`https://${host}`).persist()
        const scope = base
          .intercept(/^\/v1\.0\//, method.toUpperCase())
          .query(true)
          .reply(async function (this: nock.ReplyFnContext, uri: string, body: nock.Body) {
            const result = await fake.graph(host, method.toUpperCase(), uri, body, this.req.headers)
            if (result === 'network') throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })
            return [result.status, result.body as nock.Body, result.headers ?? {}]
          })
        this.scopes.push(scope)
      }
    }
    return this
  }

  stop(): void {
    for (const scope of this.scopes) scope.persist(false)
    nock.cleanAll()
    nock.enableNetConnect()
    this.scopes = []
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

  /**
   * A shared mailbox with the usual well-known folders and, to exercise paging, more
   * top-level folders than Graph returns in one page.
   */
  addMailbox(tenant: FakeTenant, address: string, options: { aliases?: string[]; extraTopLevel?: number } = {}): FakeMailbox {
    const folder = (displayName: string, wellKnownName?: string): FakeFolder => ({
      id: `AAMk${randomUUID().replaceAll('-', '')}`,
      displayName,
      wellKnownName,
      children: [],
    })
    const folders = [
      folder('Inbox', 'inbox'),
      folder('Sent Items', 'sentitems'),
      folder('Deleted Items', 'deleteditems'),
      folder('Drafts', 'drafts'),
      folder('Junk Email', 'junkemail'),
      folder('Archive', 'archive'),
      folder('Outbox', 'outbox'),
    ]
    for (let i = 1; i <= (options.extraTopLevel ?? 6); i++) folders.push(folder(`Project ${i}`))
    const mailbox: FakeMailbox = {
      id: randomUUID(),
      address: address.toLowerCase(),
      tenantId: tenant.id,
      displayName: address.split('@')[0]!,
      folders,
      sendAs: new Set((options.aliases ?? []).map((alias) => alias.toLowerCase())),
      sent: [],
      received: [],
    }
    this.mailboxes.set(mailbox.address, mailbox)
    return mailbox
  }

  /** Creates the folders of a path such as `Inbox/Invoices/2026` (existing ones are reused). */
  addFolder(mailbox: FakeMailbox, path: string): FakeFolder {
    let siblings = mailbox.folders
    let current: FakeFolder | undefined
    for (const name of path.split('/')) {
      current = siblings.find((f) => f.displayName.toLowerCase() === name.toLowerCase())
      if (!current) {
        current = { id: `AAMk${randomUUID().replaceAll('-', '')}`, displayName: name, children: [] }
        siblings.push(current)
      }
      siblings = current.children
    }
    return current!
  }

  /** The next Graph requests fail this way, in order; one fault per request. */
  failNextGraphRequests(...faults: GraphFault[]): void {
    this.graphFaults.push(...faults)
  }

  /** The next token requests fail this way, in order; one fault per request. */
  failNextTokenRequests(...faults: TokenFault[]): void {
    this.tokenFaults.push(...faults)
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

  private async token(host: string, tenantKey: string, rawBody: string) {
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
    const fault = this.tokenFaults.shift()
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

  private issue(host: string, tenantKey: string, form: Record<string, string>) {
    if (form.grant_type !== 'client_credentials') {
      return entraError(400, 'unsupported_grant_type', 70003, 'The app requested an unsupported grant type.')
    }
    const tenant = this.findTenant(host, tenantKey)
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

  private async graph(
    host: string,
    method: string,
    uri: string,
    rawBody: nock.Body,
    headers: Record<string, string | string[] | undefined>,
  ): Promise<'network' | { status: number; body?: unknown; headers?: Record<string, string> }> {
    const url = new URL(uri, 'https://graph.local')
    const record: GraphRequestRecord = { host, method, path: url.pathname, appId: undefined, status: 0 }
    this.graphRequests.push(record)
    const done = (status: number, body?: unknown, extra?: Record<string, string>) => {
      record.status = status
      // Like Graph: an empty answer (202 from sendMail) has no content type.
      return { status, body, headers: body === '' ? { ...extra } : { 'content-type': 'application/json', ...extra } }
    }
    const error = (status: number, code: string, message: string, extra?: Record<string, string>) =>
      done(status, { error: { code, message, innerError: { 'request-id': randomUUID(), date: new Date().toISOString() } } }, extra)

    const fault = this.graphFaults.shift()
    if (fault?.kind === 'delay') await new Promise((resolve) => setTimeout(resolve, fault.ms))
    if (fault?.kind === 'network') {
      record.status = -1
      return 'network'
    }
    if (fault?.kind === 'status') {
      return error(
        fault.status,
        fault.code ?? (fault.status === 429 ? 'ApplicationThrottled' : 'ServiceUnavailable'),
        fault.message ?? (fault.status === 429 ? 'Application is over its MailboxConcurrency limit.' : 'Service unavailable'),
        fault.retryAfter !== undefined ? { 'retry-after': String(fault.retryAfter) } : undefined,
      )
    }

    const authorization = String(headers.authorization ?? headers.Authorization ?? '')
    const claims = this.verifyToken(authorization.replace(/^Bearer /, ''))
    if (!claims) return error(401, 'InvalidAuthenticationToken', 'Access token validation failure.')
    if (claims.aud !== `https://${host}`) {
      return error(401, 'InvalidAuthenticationToken', 'Access token validation failure. Invalid audience.')
    }
    record.appId = claims.appid

    const segments = url.pathname.replace(/^\/v1\.0\//, '').split('/').map(decodeURIComponent)
    if (segments[0] !== 'users' || !segments[1]) return error(400, 'BadRequest', 'Resource not found for the segment.')
    const mailbox = [...this.mailboxes.values()].find(
      (candidate) => candidate.address === segments[1]!.toLowerCase() || candidate.id === segments[1],
    )
    if (!mailbox || mailbox.tenantId !== claims.tid) {
      return error(404, 'ErrorInvalidUser', `The requested user '${segments[1]}' is invalid.`)
    }
    if (mailbox.allowedApps && !mailbox.allowedApps.has(claims.appid)) {
      return error(403, 'ErrorAccessDenied', 'Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings.')
    }
    const canRead = claims.roles.some((role) => /^Mail\.(Read|ReadWrite|ReadBasic)(\.All)?$/.test(role))
    const denied = () => error(403, 'ErrorAccessDenied', 'Access is denied. Check credentials and try again.')

    if (method === 'GET' && segments[2] === 'mailFolders') {
      if (!canRead) return denied()
      const page = (items: FakeFolder[], base: string) => {
        const top = Number(url.searchParams.get('$top') ?? 10)
        const skip = Number(url.searchParams.get('$skip') ?? 0)
        const slice = items.slice(skip, skip + top)
        const body: Record<string, unknown> = { value: slice.map((f) => this.folderJson(f)) }
        if (skip + top < items.length) body['@odata.nextLink'] = `https://${url.host === 'graph.local' ? 'graph.microsoft.com' : url.host}${base}?$top=${top}&$skip=${skip + top}`
        return done(200, body)
      }
      if (!segments[3]) return page(mailbox.folders, url.pathname)
      const target = this.findFolder(mailbox.folders, segments[3])
      if (!target) return error(404, 'ErrorItemNotFound', 'The specified object was not found in the store.')
      if (segments[4] === 'childFolders') return page(target.children, url.pathname)
      if (!segments[4]) return done(200, this.folderJson(target))
    }

    if (method === 'POST' && segments[2] === 'sendMail') {
      if (!claims.roles.includes('Mail.Send')) return denied()
      const body = (typeof rawBody === 'string' ? JSON.parse(rawBody) : rawBody) as {
        message?: {
          subject?: string
          from?: { emailAddress?: { address?: string } }
          toRecipients?: { emailAddress?: { address?: string } }[]
          internetMessageHeaders?: { name: string; value: string }[]
        }
        saveToSentItems?: boolean
      }
      const message = body.message
      if (!message?.toRecipients?.length) return error(400, 'ErrorInvalidRecipients', 'At least one recipient is not valid.')
      const badHeader = message.internetMessageHeaders?.find((header) => !/^x-/i.test(header.name))
      if (badHeader) {
        return error(400, 'InvalidInternetMessageHeader', `The internet message header name '${badHeader.name}' should start with 'x-' or 'X-'.`)
      }
      const from = message.from?.emailAddress?.address?.toLowerCase() ?? mailbox.address
      if (from !== mailbox.address && !mailbox.sendAs.has(from)) {
        return error(403, 'ErrorSendAsDenied', 'The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account.')
      }
      const sent: FakeSentMessage = {
        from,
        sender: mailbox.address,
        to: message.toRecipients.map((r) => r.emailAddress?.address ?? ''),
        subject: message.subject ?? '',
        headers: message.internetMessageHeaders ?? [],
        savedToSentItems: body.saveToSentItems !== false,
      }
      mailbox.sent.push(sent)
      for (const address of sent.to) this.mailboxes.get(address.toLowerCase())?.received.push(sent)
      return done(202, '')
    }
    return error(400, 'BadRequest', `The fake does not serve ${method} ${url.pathname}.`)
  }

  private findFolder(folders: FakeFolder[], idOrWellKnown: string): FakeFolder | undefined {
    for (const folder of folders) {
      if (folder.id === idOrWellKnown || folder.wellKnownName === idOrWellKnown.toLowerCase()) return folder
      const nested = this.findFolder(folder.children, idOrWellKnown)
      if (nested) return nested
    }
    return undefined
  }

  private folderJson(folder: FakeFolder) {
    return { id: folder.id, displayName: folder.displayName, childFolderCount: folder.children.length, parentFolderId: null }
  }

  private verifyToken(token: string): { tid: string; appid: string; roles: string[]; aud: string } | null {
    const [header, payload, signature] = token.split('.')
    if (!header || !payload || !signature) return null
    const expected = createHmac('sha256', TOKEN_SIGNING_KEY).update(`${header}.${payload}`).digest('base64url')
    if (expected !== signature) return null
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as {
      tid: string
      appid: string
      roles: string[]
      aud: string
      exp: number
    }
    if (claims.exp * 1000 < Date.now()) return null
    return claims
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
