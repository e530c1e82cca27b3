import { hash, randomBytes } from 'node:crypto'
import type { Db } from '../../database/index.ts'
import { ConflictError, NotFoundError, UnauthenticatedError } from '../../lib/errors.ts'
import { newId } from '../../lib/ids.ts'
import { withIsoDates } from '../../lib/serialize.ts'
import { decodeCursor, toPage, type PageResult } from '../../lib/schemas.ts'
import type { Actor, AuditService } from '../audit/service.ts'
import { KeyCache, type CachedKey } from './key-cache.ts'
import type { ApiKeyRepository, ApiKeyRow } from './repository.ts'
import type { ApiKey, CreateApiKeyInput, ListApiKeysInput } from './schemas.ts'
import type { Scope } from './scopes.ts'

export interface Principal {
  keyId: string
  name: string
  scopes: Scope[]
}

const KEY_PREFIX = 'mgk_'
/** lastUsedAt is advisory; writing it at most once a minute keeps reads from turning into writes. */
const TOUCH_INTERVAL_MS = 60_000

export function hashKey(key: string): string {
  return hash('sha256', key)
}

function generateKey(): string {
  return KEY_PREFIX + randomBytes(32).toString('base64url')
}

/** Enough to tell keys apart; an operator-chosen key shows less, as it may be weaker. */
function displayPrefix(key: string): string {
  return key.startsWith(KEY_PREFIX) ? key.slice(0, 12) : key.slice(0, 4)
}

export function toApiKey(row: ApiKeyRow): ApiKey {
  const { keyHash: _keyHash, ...visible } = row
  return { ...withIsoDates(visible), scopes: visible.scopes as Scope[] }
}

export class LastAdminKeyError extends ConflictError {
  override readonly code = 'LAST_ADMIN_KEY'
  override readonly title = 'The last admin key cannot be revoked'
}

export class ApiKeyService {
  private readonly db: Db
  private readonly repository: ApiKeyRepository
  private readonly audit: AuditService
  private readonly findForAuth: ReturnType<ApiKeyRepository['prepareFindForAuth']>
  private readonly recentKeys = new KeyCache()
  private readonly keysBeingRead = new Map<string, Promise<CachedKey | undefined>>()

  constructor(db: Db, repository: ApiKeyRepository, audit: AuditService) {
    this.db = db
    this.repository = repository
    this.audit = audit
    this.findForAuth = repository.prepareFindForAuth(db)
  }

  async create(actor: Actor, input: CreateApiKeyInput): Promise<{ apiKey: ApiKey; key: string }> {
    const key = generateKey()
    const row = await this.db.transaction(async (tx) => {
      const created = await this.repository.insert(tx, {
        id: newId(),
        name: input.name,
        keyHash: hashKey(key),
        prefix: displayPrefix(key),
        scopes: [...input.scopes],
        createdByKeyId: actor.keyId,
      })
      await this.audit.record(tx, actor, {
        action: 'create',
        resourceType: 'api_key',
        resourceId: created.id,
        after: toApiKey(created),
      })
      return created
    })
    return { apiKey: toApiKey(row), key }
  }

  async list(query: ListApiKeysInput): Promise<PageResult<ApiKey>> {
    const rows = await this.repository.list(this.db, {
      includeRevoked: query.includeRevoked,
      beforeId: decodeCursor(query.cursor),
      limit: query.limit,
    })
    const page = toPage(rows, query.limit)
    return { items: page.items.map(toApiKey), nextCursor: page.nextCursor }
  }

  async get(id: string): Promise<ApiKey> {
    const row = await this.repository.findById(this.db, id)
    if (!row) throw new NotFoundError('API key', id)
    return toApiKey(row)
  }

  /** Revoking twice is harmless; revoking the last active admin key would lock everyone out. */
  async revoke(actor: Actor, id: string): Promise<void> {
    await this.db.transaction(async (tx) => {
      await this.repository.lockKeyTable(tx)
      const existing = await this.repository.findById(tx, id)
      if (!existing) throw new NotFoundError('API key', id)
      if (existing.revokedAt) return
      if (existing.scopes.includes('admin') && (await this.repository.countActiveAdmins(tx)) <= 1) {
        throw new LastAdminKeyError('Create another admin key first, then revoke this one.')
      }
      const revoked = await this.repository.revoke(tx, id, new Date())
      // Before the commit as well as after: no request on this instance may pass once it has.
      this.forgetKeys()
      await this.audit.record(tx, actor, {
        action: 'revoke',
        resourceType: 'api_key',
        resourceId: id,
        before: toApiKey(existing),
        after: toApiKey(revoked!),
      })
    })
    this.forgetKeys()
  }

  /** Drops what this instance remembers of keys, and reads that began before now. */
  private forgetKeys(): void {
    this.recentKeys.clear()
    this.keysBeingRead.clear()
  }

  /** Resolves an `Authorization` header value to the calling key. */
  async authenticate(authorization: string | undefined): Promise<Principal> {
    if (!authorization) {
      throw new UnauthenticatedError('Send an API key as `Authorization: Bearer <key>`.')
    }
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization)
    if (!match) {
      throw new UnauthenticatedError('The Authorization header must have the form `Bearer <key>`.')
    }
    const keyHash = hashKey(match[1]!)
    const row = this.recentKeys.get(keyHash) ?? (await this.readKey(keyHash))
    if (!row) throw new UnauthenticatedError('The API key is not valid.')
    if (row.revokedAt) throw new UnauthenticatedError('The API key has been revoked.')
    const now = new Date()
    if (!row.lastUsedAt || now.getTime() - row.lastUsedAt.getTime() > TOUCH_INTERVAL_MS) {
      row.lastUsedAt = now
      await this.repository.touch(this.db, row.id, now)
    }
    return { keyId: row.id, name: row.name, scopes: row.scopes as Scope[] }
  }

  /** One read per key at a time: requests that arrive while it runs share it. */
  private readKey(keyHash: string): Promise<CachedKey | undefined> {
    let reading = this.keysBeingRead.get(keyHash)
    if (!reading) {
      const readAt = this.recentKeys.startOfRead()
      reading = this.findForAuth(keyHash)
        .then((row) => {
          if (row) this.recentKeys.set(keyHash, row, readAt)
          return row
        })
        .finally(() => {
          if (this.keysBeingRead.get(keyHash) === reading) this.keysBeingRead.delete(keyHash)
        })
      this.keysBeingRead.set(keyHash, reading)
    }
    return reading
  }

  /**
   * On a database with no keys at all, creates the first admin key: the configured one, or a
   * generated one that is returned so the caller can show it once. Safe across instances.
   */
  async ensureInitialAdminKey(configuredKey: string | undefined): Promise<{ generatedKey?: string } | null> {
    return this.db.transaction(async (tx) => {
      await this.repository.lockKeyTable(tx)
      if ((await this.repository.countAll(tx)) > 0) return null
      const key = configuredKey ?? generateKey()
      const created = await this.repository.insert(tx, {
        id: newId(),
        name: configuredKey ? 'admin (ADMIN_API_KEY)' : 'admin (generated at first start)',
        keyHash: hashKey(key),
        prefix: displayPrefix(key),
        scopes: ['admin'],
      })
      await this.audit.record(tx, { keyId: null }, {
        action: 'create',
        resourceType: 'api_key',
        resourceId: created.id,
        after: toApiKey(created),
      })
      return configuredKey ? {} : { generatedKey: key }
    })
  }
}
