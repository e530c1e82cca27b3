import {
  getNamedType,
  isEnumType,
  isInputObjectType,
  isListType,
  isNonNullType,
  isObjectType,
  isScalarType,
  type GraphQLField,
  type GraphQLInputType,
  type GraphQLOutputType,
  type GraphQLSchema,
} from 'graphql'
import { HOSTILE_STRINGS, HOSTILE_VALUES, type Random } from './fuzz.ts'

export interface GraphqlFuzzRequest {
  query: string
  variables?: Record<string, unknown>
  key: string | null
}

function inputValue(type: GraphQLInputType, random: Random, integrationId: string, depth = 0): unknown {
  if (random.chance(0.12)) return random.chance(0.6) ? random.pick(HOSTILE_STRINGS) : random.pick(HOSTILE_VALUES)
  if (isNonNullType(type)) return inputValue(type.ofType, random, integrationId, depth)
  if (isListType(type)) return Array.from({ length: 1 + random.int(2) }, () => inputValue(type.ofType, random, integrationId, depth + 1))
  if (isEnumType(type)) return random.pick(type.getValues()).value
  if (isInputObjectType(type)) {
    if (depth > 4) return {}
    const value: Record<string, unknown> = {}
    for (const field of Object.values(type.getFields())) {
      if (isNonNullType(field.type) || random.chance(0.5)) value[field.name] = inputValue(field.type, random, integrationId, depth + 1)
    }
    return value
  }
  if (isScalarType(type)) {
    switch (type.name) {
      case 'ID':
        return random.chance(0.5) ? integrationId : random.pick(HOSTILE_STRINGS)
      case 'Int':
        return random.pick([1, 50, 200, 0, -1, 2 ** 31])
      case 'Boolean':
        return random.chance(0.5)
      case 'DateTime':
        return random.pick(['2026-01-31T09:00:00Z', '2020-12-31T23:59:60Z', '0000-01-01T00:00:00Z'])
      case 'JSON':
        return random.pick([{ 'x-a': 'b' }, { 'x-a': 'line\r\nbreak' }, ...HOSTILE_VALUES])
      default:
        return random.pick(['support@contoso.com', 'Inbox', 'plain', ...HOSTILE_STRINGS])
    }
  }
  return null
}

/** Scalar fields of the return type, one level into objects. */
function selection(type: GraphQLOutputType, depth = 0): string {
  const named = getNamedType(type)
  if (!isObjectType(named)) return ''
  const fields = Object.values(named.getFields())
    .filter((field) => field.args.length === 0)
    .map((field) => {
      const inner = getNamedType(field.type)
      if (isObjectType(inner)) return depth < 2 ? `${field.name} ${selection(field.type, depth + 1)}` : ''
      return field.name
    })
    .filter(Boolean)
  return `{ ${fields.join(' ') || '__typename'} }`
}

function callOf(kind: 'query' | 'mutation', field: GraphQLField<unknown, unknown>, random: Random, integrationId: string) {
  const args = field.args.filter((arg) => isNonNullType(arg.type) || random.chance(0.6))
  const variables = Object.fromEntries(args.map((arg) => [arg.name, inputValue(arg.type, random, integrationId)]))
  const definitions = args.map((arg) => `$${arg.name}: ${arg.type.toString()}`).join(', ')
  const callArgs = args.map((arg) => `${arg.name}: $${arg.name}`).join(', ')
  const query = `${kind}${definitions ? `(${definitions})` : ''} { ${field.name}${callArgs ? `(${callArgs})` : ''} ${selection(field.type)} }`
  return { query, variables }
}

export const HOSTILE_DOCUMENTS = [
  `{ viewer { keyId } }`,
  `query { ${Array.from({ length: 1_000 }, (_, i) => `a${i}: integrations(limit: 200) { items { id name } }`).join(' ')} }`,
  `{ ${'connectors { items { integration { '.repeat(30)}id${' } } }'.repeat(30)} }`,
  `{ viewer { keyId ${'@include(if: true) '.repeat(500)} } }`,
  `{ viewer { ${'keyId '.repeat(20_000)} } }`,
  '{"kind":"Document","definitions":[]}',
  '[1,2,3]',
  '"just a string"',
  '123',
  `{ integrations(limit: 200) { items { id } } a: integrations(limit: 200) { items { id } } }`,
  `mutation { a: testIntegration(id: "IID") { ok } b: testIntegration(id: "IID") { ok } }`,
  `mutation { sendMessage(input: { from: "a@b.co", subject: "s", body: { contentType: text, content: "c" }, headers: ${'{ a: '.repeat(3_000)}1${' }'.repeat(3_000)} }) { id } }`,
  `{ __schema { types { name fields { name type { ofType { ofType { ofType { ofType { name } } } } } } } } }`,
  `subscription { viewer { keyId } }`,
  `{ viewer { keyId } } { viewer { name } }`,
  `query A { viewer { keyId } } query B { viewer { name } }`,
  `{ auditEvents(filter: { since: "2020-12-31T23:59:60Z" }) { items { id } } }`,
  `{ auditEvents(filter: { resourceType: "a\\u0000b" }) { items { id } } }`,
  `mutation { createConnector(input: { integrationId: "IID", name: "n", direction: OUTGOING, primaryAddress: "<script>@evil.x" }) { id } }`,
  `mutation { createConnector(input: { integrationId: "IID", name: "n", direction: OUTGOING, primaryAddress: "a\\u0001<>\\"(),;:[]b@contoso.com" }) { id } }`,
  `mutation { sendMessage(input: { from: "a@b.co", subject: "s", body: { contentType: text, content: "c" } }, idempotencyKey: "a\\u0000b") { id } }`,
]

/**
 * Every root field of the schema called `perField` times with generated arguments (as
 * variables), then the hostile documents with inline values. Deterministic for a given seed.
 */
export function graphqlFuzzRequests(
  schema: GraphQLSchema,
  options: { adminKey: string; integrationId: string; random: Random; perField: number },
): GraphqlFuzzRequest[] {
  const { random } = options
  const requests: GraphqlFuzzRequest[] = []
  for (const [kind, type] of [['query', schema.getQueryType()], ['mutation', schema.getMutationType()]] as const) {
    for (const field of Object.values(type!.getFields())) {
      for (let i = 0; i < options.perField; i++) {
        const { query, variables } = callOf(kind, field, random, options.integrationId)
        requests.push({ query, variables, key: random.chance(0.9) ? options.adminKey : null })
      }
    }
  }
  for (const document of HOSTILE_DOCUMENTS) requests.push({ query: document.replaceAll('IID', options.integrationId), key: options.adminKey })
  return requests
}
