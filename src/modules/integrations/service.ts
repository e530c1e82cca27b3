import type { ConnectionTestResult } from '../../../db/schema.ts'
import type { Db } from '../../database/index.ts'
import { TokenError } from '../../graph/errors.ts'
import type { AppCredential, TokenProvider } from '../../graph/token-provider.ts'
import { ConflictError, NotFoundError, ValidationError } from '../../lib/errors.ts'
import { newId } from '../../lib/ids.ts'
import { decodeCursor, toPage, type PageResult } from '../../lib/schemas.ts'
import { SecretUnreadableError, type SecretBox } from '../../lib/secret-box.ts'
import type { Actor, AuditService } from '../audit/service.ts'
import type { TestsOf } from '../connection-tests/service.ts'
import { presentTest, type TestResult } from '../connection-tests/schemas.ts'
import { CandidateTestRequiredError, type ConnectionTests } from '../connection-tests/service.ts'
import { TestSteps } from '../connection-tests/steps.ts'
import { parsePem, parsePfx, type ParsedCertificate } from './certificates.ts'
import { configHashOf, connectionOf, identityHashOf, type Connection, type ConnectionColumns } from './connection.ts'
import { openCredential, sealContext, UNREADABLE_CREDENTIAL_HINT } from './credentials.ts'
import type { IntegrationRepository, IntegrationRow, NewIntegration } from './repository.ts'
import type {
  CertificateInputType,
  ConnectionChangesInput,
  CreateIntegrationInput,
  Integration,
  ListIntegrationsInput,
  UpdateIntegrationInput,
} from './schemas.ts'

/** What connectors (a later module) tell integrations about their use. */
export interface IntegrationUsage {
  connectorCount(executor: Db, integrationId: string): Promise<{ total: number; enabled: number }>
}

export class IntegrationInUseError extends ConflictError {
  override readonly code = 'INTEGRATION_IN_USE'
  override readonly title = 'The integration is used by connectors'
}

const CONNECTION_FIELDS = ['tenant', 'clientId', 'cloud', 'authMethod', 'clientSecret', 'certificate'] as const

type NewCredential =
  | { kind: 'clientSecret'; clientSecret: string; fingerprint: string }
  | { kind: 'certificate'; certificate: ParsedCertificate; fingerprint: string }

interface Resolved {
  connection: Connection
  configHash: string
  /** Undefined: the saved credential stays. */
  credential?: NewCredential
}

export interface IntegrationState {
  verified: boolean
  identityHash: string
  /** Application permissions seen by the latest successful test of the saved configuration. */
  roles: string[]
}

function touchesConnection(changes: Record<string, unknown>): boolean {
  return CONNECTION_FIELDS.some((field) => changes[field] !== undefined)
}

const REQUIRED_ROLES = ['Mail.ReadWrite', 'Mail.Send'] as const

export interface IntegrationServiceDeps {
  db: Db
  repository: IntegrationRepository
  tests: ConnectionTests
  audit: AuditService
  secretBox: SecretBox
  tokens: TokenProvider
  usage?: IntegrationUsage
}

export class IntegrationService {
  private readonly deps: IntegrationServiceDeps

  constructor(deps: IntegrationServiceDeps) {
    this.deps = deps
  }

  async create(actor: Actor, input: CreateIntegrationInput): Promise<Integration> {
    const id = newId()
    const resolved = this.resolve(null, { ...input, cloud: input.cloud ?? 'global' })
    const row = await this.deps.db.transaction(async (tx) => {
      const created = await this.deps.repository.insert(tx, {
        id,
        name: input.name,
        ...resolved.connection,
        secretExpiresAt: input.secretExpiresAt ? new Date(input.secretExpiresAt) : null,
        // A certificate's own expiry overrides any given date.
        ...this.credentialColumns(id, resolved.credential!),
      })
      await this.deps.audit.record(tx, actor, {
        action: 'create',
        resourceType: 'integration',
        resourceId: id,
        after: auditSnapshot(created),
      })
      return created
    })
    return presentIntegration(row, undefined, undefined)
  }

  async list(query: ListIntegrationsInput): Promise<PageResult<Integration>> {
    const rows = await this.deps.repository.list(this.deps.db, { ...query, beforeId: decodeCursor(query.cursor) })
    const page = toPage(rows, query.limit)
    return { items: await this.present(this.deps.db, page.items), nextCursor: page.nextCursor }
  }

  async get(id: string): Promise<Integration> {
    const row = await this.deps.repository.findById(this.deps.db, id)
    if (!row) throw new NotFoundError('integration', id)
    return (await this.present(this.deps.db, [row]))[0]!
  }

  async update(actor: Actor, id: string, input: UpdateIntegrationInput): Promise<Integration> {
    const row = await this.deps.db.transaction(async (tx) => {
      const existing = await this.deps.repository.findById(tx, id, { forUpdate: true })
      if (!existing) throw new NotFoundError('integration', id)
      const changes: Partial<NewIntegration> = { updatedAt: new Date() }
      if (input.name !== undefined) changes.name = input.name
      if (input.secretExpiresAt !== undefined) {
        changes.secretExpiresAt = input.secretExpiresAt ? new Date(input.secretExpiresAt) : null
      }
      if (touchesConnection(input)) {
        const resolved = this.resolve(existing, input)
        if (identityHashOf(resolved.connection) !== identityHashOf(existing)) {
          await this.refuseIdentityChangeIfInUse(tx, existing)
        }
        if (resolved.configHash !== configHashOf(connectionOf(existing))) {
          await this.requireCandidateTestIfInUse(tx, existing, resolved.configHash)
        }
        Object.assign(changes, resolved.connection)
        if (resolved.credential) Object.assign(changes, this.credentialColumns(id, resolved.credential))
      }
      const updated = await this.deps.repository.update(tx, id, changes)
      await this.deps.audit.record(tx, actor, {
        action: 'update',
        resourceType: 'integration',
        resourceId: id,
        before: auditSnapshot(existing),
        after: auditSnapshot(updated),
      })
      return updated
    })
    this.deps.tokens.forget(id)
    return (await this.present(this.deps.db, [row]))[0]!
  }

  async delete(actor: Actor, id: string): Promise<void> {
    await this.deps.db.transaction(async (tx) => {
      const existing = await this.deps.repository.findById(tx, id, { forUpdate: true })
      if (!existing) throw new NotFoundError('integration', id)
      const usage = await this.deps.usage?.connectorCount(tx, id)
      if (usage && usage.total > 0) {
        throw new IntegrationInUseError(
          `${usage.total} connector(s) use this integration. Delete them or move them to another integration first.`,
          { connectors: usage.total },
        )
      }
      await this.deps.repository.delete(tx, id)
      await this.deps.tests.deleteFor(tx, 'integration', id)
      await this.deps.audit.record(tx, actor, {
        action: 'delete',
        resourceType: 'integration',
        resourceId: id,
        before: auditSnapshot(existing),
      })
    })
    this.deps.tokens.forget(id)
  }

  /**
   * Tests the saved configuration, or the saved one with candidate changes applied (not
   * saved). The outcome is stored with the hash of the tested configuration either way.
   */
  async test(actor: Actor, id: string, changes: ConnectionChangesInput = {}): Promise<TestResult> {
    const row = await this.deps.repository.findById(this.deps.db, id)
    if (!row) throw new NotFoundError('integration', id)
    const currentHash = configHashOf(connectionOf(row))
    const resolved = touchesConnection(changes) ? this.resolve(row, changes) : { connection: connectionOf(row), configHash: currentHash }
    const candidate = resolved.configHash !== currentHash
    const outcome = await this.runTest(row, resolved)

    const test = await this.deps.db.transaction(async (tx) => {
      return this.deps.tests.record(tx, actor, {
        id: newId(),
        resourceType: 'integration',
        resourceId: id,
        configHash: resolved.configHash,
        candidate,
        outcome,
      })
    })
    return presentTest(test, currentHash)
  }

  async exists(executor: Db, integrationId: string): Promise<boolean> {
    return (await this.deps.repository.findById(executor, integrationId)) !== undefined
  }

  /**
   * Whether the integration's saved configuration passed its latest test, and its identity.
   * `forShare` holds the row against a concurrent change until the caller's transaction
   * ends, so an enable cannot slip past a credential change.
   */
  async state(executor: Db, integrationId: string, options: { forShare?: boolean } = {}): Promise<IntegrationState | undefined> {
    const row = await this.deps.repository.findById(executor, integrationId, options)
    if (!row) return undefined
    const latest = await this.deps.tests.latestOf(executor, 'integration', row.id, configHashOf(connectionOf(row)))
    return {
      verified: latest?.ok === true,
      identityHash: identityHashOf(row),
      roles: latest?.ok ? (latest.result.roles ?? []) : [],
    }
  }

  /** Several integrations as the API shows them, in two statements (absent ones are left out). */
  async getMany(ids: string[]): Promise<Integration[]> {
    return this.present(this.deps.db, await this.deps.repository.findMany(this.deps.db, ids))
  }

  identityHashOf(connection: Pick<IntegrationRow, 'tenant' | 'clientId' | 'cloud'>): string {
    return identityHashOf(connection)
  }

  configHashOf(connection: ConnectionColumns): string {
    return configHashOf(connectionOf(connection))
  }

  /** state() of several integrations in two statements, for presenting lists of what uses them. */
  async states(executor: Db, integrationIds: string[]): Promise<Map<string, IntegrationState>> {
    const rows = await this.deps.repository.connectionsOf(executor, integrationIds)
    const hashes = rows.map((row) => ({ resourceId: row.id, configHash: configHashOf(connectionOf(row)) }))
    const tests = await this.deps.tests.latestOfEach(executor, 'integration', hashes)
    return new Map(
      rows.map((row) => {
        const latest = tests.get(row.id)
        return [row.id, { verified: latest?.ok === true, identityHash: identityHashOf(row), roles: latest?.ok ? (latest.result.roles ?? []) : [] }]
      }),
    )
  }

  /**
   * Moves every sealed value to the current SECRETS_KEY. Each row is re-read under lock, so
   * a credential changed meanwhile by another instance is never overwritten; a value no
   * configured key opens is left as it is and reported (its connection test says what to do).
   */
  async resealSecrets(): Promise<{ resealed: number; unreadable: { integrationId: string; keyId: string | undefined }[] }> {
    const box = this.deps.secretBox
    const candidates = await this.deps.repository.sealedWithOtherKeys(this.deps.db, box.currentKeyId)
    let resealed = 0
    const unreadable: { integrationId: string; keyId: string | undefined }[] = []
    for (const candidate of candidates) {
      await this.deps.db.transaction(async (tx) => {
        const row = await this.deps.repository.findById(tx, candidate.id, { forUpdate: true })
        if (!row) return
        const changes: Partial<NewIntegration> = {}
        try {
          for (const [column, field] of [
            ['clientSecretSealed', 'clientSecret'],
            ['privateKeySealed', 'privateKey'],
          ] as const) {
            const sealed = row[column]
            if (sealed && !box.isCurrent(sealed)) {
              const context = sealContext(row.id, field)
              changes[column] = box.seal(box.open(sealed, context), context)
            }
          }
        } catch (error) {
          if (!(error instanceof SecretUnreadableError)) throw error
          unreadable.push({ integrationId: row.id, keyId: error.keyId })
          return
        }
        if (Object.keys(changes).length === 0) return
        await this.deps.repository.update(tx, row.id, changes)
        resealed += 1
      })
    }
    return { resealed, unreadable }
  }

  private async refuseIdentityChangeIfInUse(tx: Db, existing: IntegrationRow): Promise<void> {
    const usage = await this.deps.usage?.connectorCount(tx, existing.id)
    if (!usage || usage.enabled === 0) return
    throw new IntegrationInUseError(
      `${usage.enabled} enabled connector(s) reach their mailboxes through this app. Changing tenant, client id or cloud points them at another app: disable them first, or create a new integration.`,
      { enabledConnectors: usage.enabled },
    )
  }

  private async requireCandidateTestIfInUse(tx: Db, existing: IntegrationRow, newHash: string): Promise<void> {
    const usage = await this.deps.usage?.connectorCount(tx, existing.id)
    if (!usage || usage.enabled === 0) return
    const test = await this.deps.tests.latestOf(tx, 'integration', existing.id, newHash)
    if (test?.ok) return
    throw new CandidateTestRequiredError(
      `${usage.enabled} enabled connector(s) use this integration. Run POST /v1/integrations/${existing.id}/test with exactly these changes; once it succeeds, send this change again.`,
      { enabledConnectors: usage.enabled, lastCandidateTestOk: test ? test.ok : null },
    )
  }

  private async runTest(row: IntegrationRow, resolved: Resolved): Promise<ConnectionTestResult> {
    const steps = new TestSteps()
    let credential: AppCredential
    try {
      credential = this.appCredential(row, resolved)
      steps.pass('secrets_readable', 'The stored credential can be read.')
    } catch (error) {
      if (!(error instanceof SecretUnreadableError)) throw error
      steps.fail('secrets_readable', {
        code: 'SECRETS_UNREADABLE',
        message: `The stored credential cannot be read: it was sealed with key ${error.keyId ?? 'unknown'}, which this server does not have.`,
        hint: UNREADABLE_CREDENTIAL_HINT,
      })
      return steps.finish(['token_acquired', 'roles_granted'])
    }

    let roles: string[]
    try {
      const { connection, configHash } = resolved
      const token = await this.deps.tokens.acquire(
        { integrationId: row.id, configHash, tenant: connection.tenant, clientId: connection.clientId, cloud: connection.cloud, credential },
        { fresh: true },
      )
      roles = token.roles
      steps.pass('token_acquired', 'Entra ID issued an app-only token for Microsoft Graph.')
    } catch (error) {
      if (!(error instanceof TokenError)) throw error
      steps.fail('token_acquired', error)
      return steps.finish(['roles_granted'])
    }

    const granted = REQUIRED_ROLES.filter((role) => roles.includes(role))
    const missing = REQUIRED_ROLES.filter((role) => !roles.includes(role))
    const purpose = { 'Mail.ReadWrite': 'read and file incoming mail', 'Mail.Send': 'send mail' }
    if (granted.length === 0) {
      steps.fail('roles_granted', {
        code: 'MAIL_PERMISSIONS_MISSING',
        message: `The app holds neither Mail.ReadWrite nor Mail.Send${roles.length ? ` (it has ${roles.join(', ')})` : ''}.`,
        hint: 'In the app registration, add the Microsoft Graph application permissions Mail.ReadWrite and Mail.Send, then grant admin consent.',
      })
    } else {
      steps.pass('roles_granted', `Granted: ${granted.join(', ')}.${missing.length ? ` Missing: ${missing.join(', ')}.` : ''}`, missing.length
        ? `Without ${missing.join(' and ')} the app cannot ${missing.map((role) => purpose[role]).join(' or ')}. Add it as an application permission and grant admin consent if you need that.`
        : undefined)
    }
    return steps.finish([], { roles })
  }

  private appCredential(row: IntegrationRow, resolved: Resolved): AppCredential {
    const fresh = resolved.credential
    if (fresh?.kind === 'clientSecret') return { kind: 'clientSecret', clientSecret: fresh.clientSecret }
    if (fresh?.kind === 'certificate') {
      const { privateKeyPem, certificatePem, thumbprintSha256 } = fresh.certificate
      return { kind: 'certificate', privateKeyPem, certificatePem, thumbprintSha256 }
    }
    return openCredential(this.deps.secretBox, row)
  }

  /** Applies changes to a saved row (or none) and checks the credential rules. */
  private resolve(
    row: IntegrationRow | null,
    changes: Partial<Pick<CreateIntegrationInput, (typeof CONNECTION_FIELDS)[number]>>,
  ): Resolved {
    const authMethod = changes.authMethod ?? row?.authMethod
    const tenant = changes.tenant ?? row?.tenant
    const clientId = changes.clientId ?? row?.clientId
    const cloud = changes.cloud ?? row?.cloud ?? 'global'
    if (!authMethod || !tenant || !clientId) {
      throw new ValidationError([{ field: 'authMethod', message: 'is required' }])
    }
    let credential: NewCredential | undefined
    let credentialFingerprint = row?.credentialFingerprint
    if (authMethod === 'clientSecret') {
      if (changes.certificate) {
        throw new ValidationError([
          { field: 'certificate', message: 'is not used with authMethod clientSecret; remove it, or set authMethod to certificate' },
        ])
      }
      if (changes.clientSecret !== undefined) {
        const unchanged =
          row?.authMethod === 'clientSecret' && this.deps.secretBox.fingerprintMatches(row.credentialFingerprint, changes.clientSecret)
        credentialFingerprint = unchanged ? row!.credentialFingerprint : this.deps.secretBox.fingerprint(changes.clientSecret)
        credential = { kind: 'clientSecret', clientSecret: changes.clientSecret, fingerprint: credentialFingerprint }
      } else if (row?.authMethod !== 'clientSecret') {
        throw new ValidationError([{ field: 'clientSecret', message: 'is required when authMethod is clientSecret' }])
      }
    } else {
      if (changes.clientSecret !== undefined) {
        throw new ValidationError([
          { field: 'clientSecret', message: 'is not used with authMethod certificate; remove it, or set authMethod to clientSecret' },
        ])
      }
      if (changes.certificate) {
        const certificate = parseCertificateInput(changes.certificate)
        credentialFingerprint = `x509:${certificate.thumbprintSha256}`
        credential = { kind: 'certificate', certificate, fingerprint: credentialFingerprint }
      } else if (row?.authMethod !== 'certificate') {
        throw new ValidationError([{ field: 'certificate', message: 'is required when authMethod is certificate' }])
      }
    }
    const connection: Connection = { tenant, clientId, cloud, authMethod, credentialFingerprint: credentialFingerprint! }
    return { connection, configHash: configHashOf(connection), credential }
  }

  private credentialColumns(id: string, credential: NewCredential): Partial<NewIntegration> {
    const box = this.deps.secretBox
    if (credential.kind === 'clientSecret') {
      return {
        clientSecretSealed: box.seal(credential.clientSecret, sealContext(id, 'clientSecret')),
        certificatePem: null,
        privateKeySealed: null,
        thumbprintSha1: null,
        thumbprintSha256: null,
        certificateSubject: null,
        certificateNotBefore: null,
        certificateNotAfter: null,
        credentialFingerprint: credential.fingerprint,
      }
    }
    const cert = credential.certificate
    return {
      clientSecretSealed: null,
      certificatePem: cert.certificatePem,
      privateKeySealed: box.seal(cert.privateKeyPem, sealContext(id, 'privateKey')),
      thumbprintSha1: cert.thumbprintSha1,
      thumbprintSha256: cert.thumbprintSha256,
      certificateSubject: cert.subject,
      certificateNotBefore: cert.notBefore,
      certificateNotAfter: cert.notAfter,
      credentialFingerprint: credential.fingerprint,
      secretExpiresAt: cert.notAfter,
    }
  }

  private async present(executor: Db, rows: IntegrationRow[]): Promise<Integration[]> {
    const hashes = new Map(rows.map((row) => [row.id, configHashOf(connectionOf(row))]))
    const tests = await this.deps.tests.testsOf('integration', [...hashes].map(([resourceId, configHash]) => ({ resourceId, configHash })))
    return rows.map((row) => presentIntegration(row, tests.get(row.id)?.latest, tests.get(row.id)?.ofCurrent))
  }
}

function presentIntegration(
  row: IntegrationRow,
  latestTest: TestsOf['latest'],
  latestTestOfCurrent: TestsOf['ofCurrent'],
): Integration {
  const currentHash = configHashOf(connectionOf(row))
  return {
    id: row.id,
    name: row.name,
    tenant: row.tenant,
    clientId: row.clientId,
    cloud: row.cloud,
    authMethod: row.authMethod,
    secretExpiresAt: row.secretExpiresAt?.toISOString() ?? null,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
    hasClientSecret: row.clientSecretSealed !== null,
    certificate:
      row.authMethod === 'certificate' && row.thumbprintSha256
        ? {
            thumbprintSha1: row.thumbprintSha1!,
            thumbprintSha256: row.thumbprintSha256,
            subject: row.certificateSubject ?? '',
            notBefore: row.certificateNotBefore!.toISOString(),
            notAfter: row.certificateNotAfter!.toISOString(),
          }
        : null,
    verified: latestTestOfCurrent?.ok === true,
    lastTest: latestTest ? presentTest(latestTest, currentHash) : null,
  }
}

function parseCertificateInput(input: CertificateInputType): ParsedCertificate {
  if (input.pfx !== undefined) {
    if (input.certificatePem !== undefined || input.privateKeyPem !== undefined) {
      throw new ValidationError([
        { field: 'certificate', message: 'give either pfx (with password) or certificatePem with privateKeyPem, not both' },
      ])
    }
    return parsePfx(input.pfx, input.password ?? '')
  }
  const missing = (['certificatePem', 'privateKeyPem'] as const).filter((field) => input[field] === undefined)
  if (missing.length > 0) {
    throw new ValidationError(
      missing.map((field) => ({ field: `certificate.${field}`, message: 'is required unless a pfx is given' })),
    )
  }
  return parsePem(input.certificatePem!, input.privateKeyPem!)
}

/** What the audit trail keeps of an integration: no secrets, but a marker when one changed. */
function auditSnapshot(row: IntegrationRow): Record<string, unknown> {
  return {
    name: row.name,
    tenant: row.tenant,
    clientId: row.clientId,
    cloud: row.cloud,
    authMethod: row.authMethod,
    clientSecret: row.authMethod === 'clientSecret' ? row.credentialFingerprint : null,
    certificateThumbprintSha256: row.thumbprintSha256,
    certificateNotAfter: row.certificateNotAfter,
    secretExpiresAt: row.secretExpiresAt,
  }
}
