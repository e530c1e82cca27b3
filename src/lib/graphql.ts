import { GraphQLScalarType, Kind, type ValueNode } from 'graphql'
import { ValidationError } from './errors.ts'
import { DATE_TIME_MESSAGE, MAX_JSON_DEPTH } from './text.ts'
import { isStorableDateTime } from './validation.ts'
import { jsonDepth } from './json-depth.ts'

/** Drops null arguments, which GraphQL clients send for "not given". */
export function withoutNulls<T extends Record<string, unknown>>(args: T): Partial<T> {
  return Object.fromEntries(Object.entries(args).filter(([, v]) => v !== null && v !== undefined)) as Partial<T>
}

/**
 * GraphQL sends null for "not given", nested objects too; REST schemas expect absence.
 * Values arrive depth-checked (the JSON scalar and the body parser bound nesting).
 */
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

function tooDeep(): ValidationError {
  return new ValidationError([{ field: 'JSON', message: `nests deeper than ${MAX_JSON_DEPTH} levels; flatten it` }])
}

function parseLiteral(ast: ValueNode, depth = 0): unknown {
  if (depth > MAX_JSON_DEPTH) throw tooDeep()
  switch (ast.kind) {
    case Kind.STRING:
    case Kind.BOOLEAN:
      return ast.value
    case Kind.INT:
    case Kind.FLOAT:
      return Number(ast.value)
    case Kind.OBJECT:
      return Object.fromEntries(ast.fields.map((f) => [f.name.value, parseLiteral(f.value, depth + 1)]))
    case Kind.LIST:
      return ast.values.map((item) => parseLiteral(item, depth + 1))
    default:
      return null
  }
}

export const JsonScalar = new GraphQLScalarType({
  name: 'JSON',
  serialize: (value) => value,
  parseValue: (value) => {
    if (jsonDepth(value) > MAX_JSON_DEPTH) throw tooDeep()
    return value
  },
  parseLiteral: (ast) => parseLiteral(ast),
})

function dateTime(value: unknown): string {
  if (typeof value !== 'string' || !isStorableDateTime(value)) {
    throw new ValidationError([{ field: 'DateTime', message: DATE_TIME_MESSAGE }])
  }
  return value
}

export const DateTimeScalar = new GraphQLScalarType({
  name: 'DateTime',
  serialize: (value) => (value instanceof Date ? value.toISOString() : value),
  parseValue: dateTime,
  parseLiteral: (ast) => dateTime(ast.kind === Kind.STRING ? ast.value : undefined),
})
