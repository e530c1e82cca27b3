import type { TSchema, Static } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { GraphQLScalarType, Kind, type ValueNode } from 'graphql'
import { ValidationError } from './errors.ts'
import { registerFormats } from './formats.ts'

/**
 * Checks GraphQL arguments against the same TypeBox schema the REST route uses, so both
 * APIs accept exactly the same input and report the same field names.
 */
export function validateInput<T extends TSchema>(schema: T, value: unknown, prefix = ''): Static<T> {
  registerFormats()
  const withDefaults = Value.Default(schema, Value.Clone(value ?? {}))
  const errors = [...Value.Errors(schema, withDefaults)]
  if (errors.length > 0) {
    const seen = new Set<string>()
    const fields = []
    for (const error of errors) {
      const path = error.path.split('/').filter(Boolean).join('.')
      const field = [prefix, path].filter(Boolean).join('.') || '(input)'
      if (seen.has(field)) continue
      seen.add(field)
      fields.push({ field, message: error.message })
    }
    throw new ValidationError(fields)
  }
  return withDefaults as Static<T>
}

/** Drops null arguments, which GraphQL clients send for "not given". */
export function withoutNulls<T extends Record<string, unknown>>(args: T): Partial<T> {
  return Object.fromEntries(Object.entries(args).filter(([, v]) => v !== null && v !== undefined)) as Partial<T>
}

/** GraphQL sends null for "not given", nested objects too; REST schemas expect absence. */
export function deepWithoutNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(deepWithoutNulls)
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([, v]) => v !== null && v !== undefined)
        .map(([k, v]) => [k, deepWithoutNulls(v)]),
    )
  }
  return value
}

function parseLiteral(ast: ValueNode): unknown {
  switch (ast.kind) {
    case Kind.STRING:
    case Kind.BOOLEAN:
      return ast.value
    case Kind.INT:
    case Kind.FLOAT:
      return Number(ast.value)
    case Kind.OBJECT:
      return Object.fromEntries(ast.fields.map((f) => [f.name.value, parseLiteral(f.value)]))
    case Kind.LIST:
      return ast.values.map(parseLiteral)
    default:
      return null
  }
}

export const JsonScalar = new GraphQLScalarType({
  name: 'JSON',
  serialize: (value) => value,
  parseValue: (value) => value,
  parseLiteral,
})

export const DateTimeScalar = new GraphQLScalarType({
  name: 'DateTime',
  serialize: (value) => (value instanceof Date ? value.toISOString() : value),
  parseValue: (value) => {
    if (typeof value !== 'string' || Number.isNaN(Date.parse(value))) {
      throw new ValidationError([{ field: 'DateTime', message: 'must be an ISO 8601 date-time' }])
    }
    return value
  },
  parseLiteral: (ast) => {
    if (ast.kind !== Kind.STRING || Number.isNaN(Date.parse(ast.value))) {
      throw new ValidationError([{ field: 'DateTime', message: 'must be an ISO 8601 date-time' }])
    }
    return ast.value
  },
})
