import { capabilitiesOf, type MailCapabilities } from '../../graph/limits.ts'
import { MailboxClient } from '../../graph/mailbox-client.ts'
import { MailboxError, toMailboxError } from '../../graph/errors.ts'
import type { AppRegistration, TokenProvider } from '../../graph/token-provider.ts'
import type { Db } from '../../database/index.ts'
import { NotFoundError } from '../../lib/errors.ts'
import { SecretUnreadableError, type SecretBox } from '../../lib/secret-box.ts'
import { openCredential, UNREADABLE_CREDENTIAL_HINT } from './credentials.ts'
import type { IntegrationRepository } from './repository.ts'
import { configHashOf, connectionOf } from './connection.ts'
import { SharedMailboxGate } from './mailbox-gate.ts'

/** A way into the mailboxes an integration's app can reach. */
export interface MailboxAccess {
  client: MailboxClient
  /** Application permissions in the token (its `roles` claim). */
  roles: string[]
  capabilities: MailCapabilities
}

export interface MailboxAccessDeps {
  db: Db
  repository: IntegrationRepository
  secretBox: SecretBox
  tokens: TokenProvider
  /** How long a Graph request may take (30 s by default). */
  graphTimeoutMs?: number
  /** The time pauses and slot holds are measured in (tests move it). */
  clock?: () => Date
  /** The instance whose request slots these are (freed at once should it die); a new id unless given. */
  instanceId?: string
}

interface Opened {
  configHash: string
  registration: AppRegistration
  client: MailboxClient
}

/**
 * The one door to a mailbox: turns an integration into a Graph client with its token's
 * roles. Connection tests, aliases and the dispatcher (and, once built, the mailbox sync)
 * come through here, so the error mapping, the timeout and the cache exist once.
 *
 * The cache keeps one client per integration configuration. Every open reads the
 * integration's connection settings (one indexed row), so a changed credential, tenant or
 * app, saved by this instance or any other, is used from the next open on.
 */
export class Mailboxes {
  private readonly deps: MailboxAccessDeps
  private readonly opened = new Map<string, Opened>()
  private readonly findConnection: ReturnType<IntegrationRepository['prepareFindConnection']>
  /** Every client of this door, of any integration, counts its mailbox requests here. */
  private readonly gate: SharedMailboxGate
  private readonly now: () => number

  constructor(deps: MailboxAccessDeps) {
    this.deps = deps
    this.findConnection = deps.repository.prepareFindConnection(deps.db)
    const clock = deps.clock
    this.now = clock ? () => clock().getTime() : Date.now
    const timeoutMs = deps.graphTimeoutMs ?? 30_000
    this.gate = new SharedMailboxGate(deps.db, { clock: { now: this.now }, holdMs: timeoutMs * 2, waitMs: timeoutMs, instanceId: deps.instanceId })
  }

  /** Another door with the same settings and nothing cached, as another instance has. */
  separate(): Mailboxes {
    return new Mailboxes({ ...this.deps, tokens: this.deps.tokens.sibling(), instanceId: undefined })
  }

  /**
   * `fresh` takes a new token from Entra instead of a cached one: a connection test proves
   * the credential works now. Failures are MailboxErrors: AUTHENTICATION_FAILED with the
   * token error's code in `tokenCode` (SECRETS_UNREADABLE when no key opens the credential).
   */
  async open(integrationId: string, options: { fresh?: boolean } = {}): Promise<MailboxAccess> {
    const { registration, client } = await this.clientFor(integrationId)
    try {
      const token = await this.deps.tokens.acquire(registration, options)
      return { client, roles: token.roles, capabilities: capabilitiesOf(token.roles) }
    } catch (error) {
      throw toMailboxError(error)
    }
  }

  private async clientFor(integrationId: string): Promise<Opened> {
    const connection = await this.findConnection(integrationId)
    if (!connection) {
      this.opened.delete(integrationId)
      throw new NotFoundError('integration', integrationId)
    }
    const cached = this.opened.get(integrationId)
    if (cached?.configHash === configHashOf(connection)) return cached

    const row = await this.deps.repository.findById(this.deps.db, integrationId)
    if (!row) throw new NotFoundError('integration', integrationId)
    const configHash = configHashOf(connectionOf(row))
    let registration: AppRegistration
    try {
      registration = { integrationId, configHash, tenant: row.tenant, clientId: row.clientId, cloud: row.cloud, credential: openCredential(this.deps.secretBox, row) }
    } catch (error) {
      if (!(error instanceof SecretUnreadableError)) throw error
      throw new MailboxError('AUTHENTICATION_FAILED', `The integration's credential cannot be read (key ${error.keyId ?? 'unknown'}).`, {
        tokenCode: 'SECRETS_UNREADABLE',
        hint: UNREADABLE_CREDENTIAL_HINT,
      })
    }
    const opened = {
      configHash,
      registration,
      client: new MailboxClient(this.deps.tokens, registration, { timeoutMs: this.deps.graphTimeoutMs, gate: this.gate, clock: this.now }),
    }
    this.opened.set(integrationId, opened)
    return opened
  }
}
