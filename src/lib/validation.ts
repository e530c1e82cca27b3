import { Ajv, type ErrorObject, type Options as AjvOptions, type ValidateFunction } from 'ajv'
import addFormats from 'ajv-formats'
import type { Static, TSchema } from '@sinclair/typebox'
import { ValidationError, type InvalidField } from './errors.ts'
import { DATE_TIME_MESSAGE, EARLIEST_INSTANT, LATEST_INSTANT, patternMessages } from './text.ts'

const rfc3339DateTime = addFormats.default.get('date-time', 'full') as { validate: (value: string) => boolean } | ((value: string) => boolean)
const isRfc3339 = typeof rfc3339DateTime === 'function' ? rfc3339DateTime : rfc3339DateTime.validate

/**
 * RFC 3339, and an instant both JavaScript and PostgreSQL hold: no leap second (Date cannot
 * represent 23:59:60) and no year outside 0001..9999 once the offset is applied.
 */
export function isStorableDateTime(value: string): boolean {
  if (!isRfc3339(value)) return false
  const instant = Date.parse(value)
  return !Number.isNaN(instant) && instant >= EARLIEST_INSTANT && instant <= LATEST_INSTANT
}

const base: AjvOptions = { allErrors: true, removeAdditional: false, useDefaults: true, strict: false }

/**
 * The one validator configuration: REST bodies (no coercion), REST query/path/headers
 * (coerced from text) and GraphQL arguments all use it, so the same field obeys the same rules.
 */
export function createAjv(coerceTypes: false | 'array'): Ajv {
  const ajv = addFormats.default(new Ajv({ ...base, coerceTypes }))
  ajv.addFormat('date-time', { type: 'string', validate: isStorableDateTime })
  return ajv
}

interface AjvIssue {
  instancePath: string
  keyword: string
  message?: string
  params: Record<string, unknown>
}

function messageOf(issue: AjvIssue): string {
  switch (issue.keyword) {
    case 'required':
      return 'is required'
    case 'additionalProperties':
      return 'is not a known field; remove it or check its spelling'
    case 'enum':
      return `must be one of: ${(issue.params.allowedValues as unknown[]).join(', ')}`
    case 'pattern':
      return patternMessages.get(String(issue.params.pattern)) ?? issue.message ?? 'is invalid'
    case 'format':
      return issue.params.format === 'date-time' ? DATE_TIME_MESSAGE : (issue.message ?? 'is invalid')
    default:
      return issue.message ?? 'is invalid'
  }
}

/** Ajv's issues as the API names fields: `name`, `certificate.pfx`, `query.limit`. */
export function invalidFields(issues: readonly AjvIssue[], prefix: string, whole = '(body)'): InvalidField[] {
  const seen = new Set<string>()
  const fields: InvalidField[] = []
  for (const issue of issues) {
    let path = issue.instancePath.split('/').filter(Boolean).join('.')
    if (issue.keyword === 'required') path = [path, String(issue.params.missingProperty)].filter(Boolean).join('.')
    if (issue.keyword === 'additionalProperties') path = [path, String(issue.params.additionalProperty)].filter(Boolean).join('.')
    const message = messageOf(issue)
    const field = [prefix, path].filter(Boolean).join('.') || whole
    const key = `${field}|${message}`
    if (seen.has(key)) continue
    seen.add(key)
    fields.push({ field, message })
  }
  return fields
}

/**
 * Validates GraphQL arguments with the REST route's own TypeBox schema and the same ajv
 * configuration, so both APIs accept exactly the same input and name fields alike. Defaults
 * are applied to a copy. Schemas are compiled once (they are module constants).
 */
export class InputValidator {
  readonly #ajv = createAjv(false)
  readonly #compiled = new WeakMap<TSchema, ValidateFunction>()

  validate<T extends TSchema>(schema: T, value: unknown, prefix = ''): Static<T> {
    let check = this.#compiled.get(schema)
    if (!check) {
      check = this.#ajv.compile(schema)
      this.#compiled.set(schema, check)
    }
    const copy = structuredClone(value ?? {})
    if (!check(copy)) throw new ValidationError(invalidFields((check.errors ?? []) as ErrorObject[], prefix, '(input)'))
    return copy as Static<T>
  }
}
