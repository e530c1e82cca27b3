import { createHash } from 'node:crypto'
import type { FastifyReply } from 'fastify'
import type { LeanSql } from './db.ts'

/**
 * API-key authentication as Mailgate does it, a SHA-256 hash lookup, but as a CTE that every
 * lean statement starts with, so that authenticating costs no statement of its own. `$1` is
 * always the key hash. last_used_at is written at most once a minute, as Mailgate writes it:
 * by a statement of its own when the key row says it is due (see touchIfDue).
 */
export const KEY_CTE = `key as (select id, scopes, revoked_at, last_used_at from api_keys where key_hash = $1)`

/** The key columns every lean statement returns (no row at all: no such key). */
export const KEY_COLUMNS = `key.id as "keyId", key.scopes, key.revoked_at as "revokedAt", key.last_used_at as "lastUsedAt"`

export interface KeyColumns {
  keyId: string
  scopes: string[]
  revokedAt: Date | null
  lastUsedAt: Date | null
}

const TOUCH_INTERVAL_MS = 60_000

/** Records the key's use, at most once a minute (the key row came back with the statement). */
export async function touchIfDue(sql: LeanSql, key: KeyColumns | undefined): Promise<void> {
  if (!key || key.revokedAt || (key.lastUsedAt && Date.now() - key.lastUsedAt.getTime() <= TOUCH_INTERVAL_MS)) return
  await sql.query('update api_keys set last_used_at = now() where id = $1', [key.keyId])
}

/** The granted scopes that carry each required one (admin carries all, config:write carries config:read). */
export const GRANTING = {
  'mail:send': ['mail:send', 'admin'],
  'config:read': ['config:read', 'config:write', 'admin'],
} as const

export type RequiredScope = keyof typeof GRANTING

/** The hash to look up, or undefined when the header is missing or malformed. */
export function keyHashOf(authorization: string | undefined): string | undefined {
  const match = authorization ? /^Bearer\s+(\S+)\s*$/i.exec(authorization) : null
  return match ? createHash('sha256').update(match[1]!).digest('hex') : undefined
}

export function problem(reply: FastifyReply, status: number, title: string, detail: string) {
  return reply.code(status).type('application/problem+json').send({ type: 'about:blank', title, status, detail })
}

/**
 * Answers 401 or 403 and returns true when the key (the statement's first row) may not make
 * this request; returns false when it may. A valid key's use is recorded either way, as Mailgate does.
 */
export async function refused(sql: LeanSql, reply: FastifyReply, key: KeyColumns | undefined, required: RequiredScope): Promise<boolean> {
  await touchIfDue(sql, key)
  if (!key) problem(reply, 401, 'Unauthenticated', 'The API key is not valid.')
  else if (key.revokedAt) problem(reply, 401, 'Unauthenticated', 'The API key has been revoked.')
  else if (!key.scopes.some((scope) => (GRANTING[required] as readonly string[]).includes(scope))) {
    problem(reply, 403, 'Forbidden', `This operation needs the scope ${required}.`)
  } else return false
  return true
}
