import { sql } from 'drizzle-orm'
import { rowsOf, type Database } from '../../src/database/index.ts'

/** A small seeded PRNG (mulberry32): the same seed gives the same requests on every run. */
export class Random {
  #state: number

  constructor(seed: number) {
    this.#state = seed >>> 0
  }

  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0
    let t = this.#state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }

  int(max: number): number {
    return Math.floor(this.next() * max)
  }

  chance(p: number): boolean {
    return this.next() < p
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!
  }
}

function nested(depth: number): unknown {
  let value: unknown = 'bottom'
  for (let i = 0; i < depth; i++) value = i % 2 ? [value] : { a: value }
  return value
}

/** Text a stranger might send: each one has broken something somewhere. */
export const HOSTILE_STRINGS: readonly string[] = [
  '',
  ' ',
  '\u0000',
  'a\u0000b',
  'x\ud800y',
  '\udc00',
  'line\r\nInjected: header',
  'tab\tand\u0001control\u007f',
  '😀 emoji and ünïcödé 中文',
  'x'.repeat(5_000),
  '9'.repeat(400),
  '-1',
  'NaN',
  'null',
  'true',
  '<script>alert(1)</script>@evil.x',
  'a\u0001<>"(),;:[]b@contoso.com',
  "'; drop table integrations; --",
  '../../../../etc/passwd',
  '%00%ff%zz',
  '${jndi:ldap://x}',
  '{{7*7}}',
  '2020-12-31T23:59:60Z',
  '0000-01-01T00:00:00Z',
  '0001-01-01T00:00:00+01:00',
  '+275760-09-13T00:00:00Z',
  '9999-12-31T23:59:59Z',
  '2026-02-30T10:00:00Z',
  '0190f5e0-0000-7000-8000-000000000000',
  'ZZZZZZZZ-0000-7000-8000-000000000000',
  '*@*',
  'user@',
  '@contoso.com',
  'move:Inbox/\u0000',
  'Inbox//Sub',
]

export const HOSTILE_VALUES: readonly unknown[] = [
  null,
  true,
  0,
  -1,
  1.5,
  2 ** 53 + 2,
  -1e308,
  [],
  {},
  [null],
  JSON.parse('{"__proto__": {"polluted": true}}'),
  { constructor: { prototype: { polluted: true } } },
  nested(40),
  nested(8),
  Array.from({ length: 300 }, (_, i) => `item${i}`),
]

type JsonSchema = Record<string, unknown> & {
  type?: string | string[]
  properties?: Record<string, JsonSchema>
  required?: string[]
  items?: JsonSchema
  enum?: unknown[]
  anyOf?: JsonSchema[]
  oneOf?: JsonSchema[]
  format?: string
  default?: unknown
  minimum?: number
  maximum?: number
  $ref?: string
}

/** A plausible value for a schema, so that a mutation elsewhere reaches deeper code. */
export function plausible(schema: JsonSchema | undefined, random: Random, depth = 0): unknown {
  if (!schema || depth > 6) return null
  if (schema.enum) return random.pick(schema.enum)
  if ('const' in schema) return schema.const
  const variants = schema.anyOf ?? schema.oneOf
  if (variants) return plausible(random.pick(variants), random, depth + 1)
  if (schema.default !== undefined && random.chance(0.3)) return schema.default
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type
  switch (type) {
    case 'object': {
      const value: Record<string, unknown> = {}
      for (const [name, property] of Object.entries(schema.properties ?? {})) {
        if (schema.required?.includes(name) || random.chance(0.5)) value[name] = plausible(property, random, depth + 1)
      }
      return value
    }
    case 'array':
      return Array.from({ length: 1 + random.int(2) }, () => plausible(schema.items, random, depth + 1))
    case 'integer':
    case 'number':
      return typeof schema.minimum === 'number' ? schema.minimum + random.int(3) : random.int(10)
    case 'boolean':
      return random.chance(0.5)
    case 'string':
      switch (schema.format) {
        case 'uuid':
          return '0190f5e0-0000-7000-8000-00000000000' + random.int(10)
        case 'email':
          return random.pick(['support@contoso.com', 'sales@contoso.com', 'x@fabrikam.com'])
        case 'date-time':
          return '2026-01-31T09:00:00Z'
      }
      return random.pick(['plain', 'Inbox', 'markRead', 'contoso.com', 'x-custom', 'a-b_c.d'])
    default:
      return null
  }
}

/** The three values that reach PostgreSQL or a header and break it if a rule is missing. */
export const CRITICAL_STRINGS = ['a\u0000b', 'x\ud800y', 'one\r\nInjected: two'] as const

/** A value with every optional field present, for sweeping each string field in turn. */
export function complete(schema: JsonSchema | undefined, random: Random, depth = 0): unknown {
  if (!schema || depth > 6) return null
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type
  if (type === 'object' && schema.properties) {
    return Object.fromEntries(Object.entries(schema.properties).map(([name, property]) => [name, complete(property, random, depth + 1)]))
  }
  if (type === 'array' && schema.items) return [complete(schema.items, random, depth + 1)]
  const variants = schema.anyOf ?? schema.oneOf
  if (variants) return complete(variants.find((variant) => variant.type !== 'null') ?? variants[0], random, depth + 1)
  return plausible(schema, random, depth)
}

/** Paths of the string leaves of a value (object keys and array indexes). */
export function stringPaths(value: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  if (typeof value === 'string') return [prefix]
  if (!value || typeof value !== 'object') return []
  return Object.entries(value).flatMap(([key, child]) => stringPaths(child, [...prefix, Array.isArray(value) ? Number(key) : key]))
}

/** A copy of value with the leaf at path replaced. */
export function withLeaf(value: unknown, path: (string | number)[], leaf: unknown): unknown {
  const copy = structuredClone(value) as Record<string | number, unknown>
  let parent = copy
  for (const key of path.slice(0, -1)) parent = parent[key] as Record<string | number, unknown>
  parent[path.at(-1)!] = leaf
  return copy
}

function hostile(random: Random): unknown {
  // A copy: a later mutation may write inside it, and the shared values must stay as they are.
  return random.chance(0.6) ? random.pick(HOSTILE_STRINGS) : structuredClone(random.pick(HOSTILE_VALUES))
}

/** The object paths of a value, for choosing where to put something hostile. */
function pathsOf(value: unknown, prefix: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(prefix)
  if (prefix.length < 6 && value && typeof value === 'object') {
    for (const [key, child] of Object.entries(value)) {
      // Hostile keys stay as they are; assigning through them would change the prototype.
      if (key !== '__proto__' && key !== 'constructor') pathsOf(child, [...prefix, Array.isArray(value) ? Number(key) : key], out)
    }
  }
  return out
}

/** A plausible value with one or two places made hostile: a bad value, an unknown field, a missing one. */
export function mutate(value: unknown, random: Random): unknown {
  let result = structuredClone(value)
  for (let round = 0; round < 1 + random.int(2); round++) {
    const paths = pathsOf(result)
    const path = random.pick(paths)
    if (path.length === 0) {
      result = random.chance(0.7) && result && typeof result === 'object' ? { ...result, unknownField: hostile(random) } : hostile(random)
      continue
    }
    let parent = result as Record<string | number, unknown>
    for (const key of path.slice(0, -1)) parent = parent[key] as Record<string | number, unknown>
    const last = path.at(-1)!
    if (random.chance(0.15) && !Array.isArray(parent)) delete parent[last]
    else parent[last] = hostile(random)
  }
  return result
}

/** Raw bodies that are not what any operation expects. */
export const RAW_BODIES: readonly { contentType: string | undefined; payload: string | Buffer }[] = [
  { contentType: 'application/json', payload: '{' },
  { contentType: 'application/json', payload: '' },
  { contentType: 'application/json', payload: '[' .repeat(5_000) + ']'.repeat(5_000) },
  { contentType: 'application/json', payload: '{"a":'.repeat(3_000) + '1' + '}'.repeat(3_000) },
  { contentType: 'application/json', payload: '"\\u0000"' },
  { contentType: 'application/json', payload: '{"name": "\\ud800"}' },
  { contentType: 'application/json', payload: Buffer.from([0x7b, 0x22, 0x6e, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]) },
  { contentType: 'application/json; charset=utf-16', payload: '{}' },
  { contentType: 'text/plain', payload: 'hello' },
  { contentType: 'application/xml', payload: '<a/>' },
  { contentType: 'application/x-www-form-urlencoded', payload: 'a=1&b=2' },
  { contentType: 'multipart/form-data; boundary=x', payload: '--x\r\nContent-Disposition: form-data; name="message"\r\n\r\n{}\r\n--x--' },
  { contentType: 'multipart/form-data', payload: 'garbage' },
  { contentType: undefined, payload: 'no content type' },
]

/**
 * A fingerprint of every table's rows, to prove a refused request changed nothing.
 * api_keys.last_used_at is advisory and written on authentication, so it is left out.
 */
export async function stateFingerprint(database: Database): Promise<string> {
  const tables = rowsOf<{ name: string }>(
    await database.db.execute(
      sql`select table_name as name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE' order by table_name`,
    ),
  ).map((row) => row.name)
  const parts = tables.map(
    (table) =>
      sql`select ${table} as name, count(*)::int as n, coalesce(md5(string_agg((to_jsonb(t) - 'last_used_at')::text, '|' order by (to_jsonb(t) - 'last_used_at')::text)), '') as digest from ${sql.identifier(table)} t`,
  )
  const rows = rowsOf<{ name: string; n: number; digest: string }>(await database.db.execute(sql.join(parts, sql` union all `)))
  return rows.map((row) => `${row.name}:${row.n}:${row.digest}`).join(',')
}

/**
 * Percent-encodes any string, including unpaired surrogates (as their WTF-8 bytes, which is
 * what a careless client sends), where encodeURIComponent would throw.
 */
export function percentEncode(value: string): string {
  let out = ''
  for (const char of value) {
    const code = char.codePointAt(0)!
    if (code >= 0xd800 && code <= 0xdfff) {
      out += [0xe0 | (code >> 12), 0x80 | ((code >> 6) & 0x3f), 0x80 | (code & 0x3f)].map((byte) => `%${byte.toString(16).toUpperCase()}`).join('')
    } else {
      out += encodeURIComponent(char)
    }
  }
  return out
}

/** Counts answers by status, for the summary a fuzz test prints. */
export function histogram(statuses: number[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const status of statuses) counts[status] = (counts[status] ?? 0) + 1
  return counts
}
