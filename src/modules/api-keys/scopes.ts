import { ValidationError } from '../../lib/errors.ts'

export const SCOPES = ['config:read', 'config:write', 'mail:send', 'mail:read', 'mail:ingest', 'events:read', 'metrics:read', 'admin'] as const
export type Scope = (typeof SCOPES)[number]

/** Scopes a granted scope carries with it: admin carries all, writing config carries reading it. */
const IMPLIED: Record<Scope, readonly Scope[]> = {
  admin: SCOPES,
  'config:write': ['config:write', 'config:read'],
  'config:read': ['config:read'],
  'mail:send': ['mail:send'],
  'mail:read': ['mail:read'],
  'mail:ingest': ['mail:ingest'],
  'events:read': ['events:read'],
  'metrics:read': ['metrics:read'],
}

export function effectiveScopes(granted: readonly string[]): Set<Scope> {
  const result = new Set<Scope>()
  for (const scope of granted) for (const implied of IMPLIED[scope as Scope] ?? []) result.add(implied)
  return result
}

export function missingScopes(granted: readonly string[], required: readonly Scope[]): Scope[] {
  const effective = effectiveScopes(granted)
  return required.filter((scope) => !effective.has(scope))
}

/** GraphQL enum value (CONFIG_READ) <-> scope (config:read). */
export function scopeFromEnum(value: string): Scope {
  const scope = value.toLowerCase().replace('_', ':') as Scope
  if (!SCOPES.includes(scope)) throw new ValidationError([{ field: 'scopes', message: `unknown scope ${value}` }])
  return scope
}

export function scopeToEnum(scope: string): string {
  return scope.replace(':', '_').toUpperCase()
}
