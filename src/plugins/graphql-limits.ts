import { createRequire } from 'node:module'
import type { ASTVisitor, DocumentNode, FragmentDefinitionNode, GraphQLSchema, SelectionNode, ValidationContext, ValidationRule } from 'graphql'
import { GraphqlRefusedError } from './graphql-errors.ts'
import type { ComplexityEstimator } from 'graphql-query-complexity'

/*
 * Mercurius is CommonJS and builds the schema with graphql's CommonJS build. Rules that look
 * at schema types must come from that same build: graphql-js refuses types "from another
 * realm" (and in production silently mismatches them), so these are loaded with require.
 */
const require = createRequire(import.meta.url)
const { GraphQLError, NoSchemaIntrospectionCustomRule } = require('graphql') as typeof import('graphql')
const { maxAliasesRule } = require('@escape.tech/graphql-armor-max-aliases') as typeof import('@escape.tech/graphql-armor-max-aliases')
const { maxDepthRule } = require('@escape.tech/graphql-armor-max-depth') as typeof import('@escape.tech/graphql-armor-max-depth')
const { maxDirectivesRule } = require('@escape.tech/graphql-armor-max-directives') as typeof import('@escape.tech/graphql-armor-max-directives')
const { getComplexity, simpleEstimator } = require('graphql-query-complexity') as typeof import('graphql-query-complexity')

/**
 * What one GraphQL request may ask for. Each is refused before execution, with
 * `extensions.code` GRAPHQL_VALIDATION_FAILED and HTTP 400. The reasons are in the README.
 */
export const GRAPHQL_LIMITS = {
  /** The deepest real query (connectors { items { lastTest { steps { ... } } } }) is 5. */
  depth: 10,
  /** The UI never aliases; a few let a dashboard fetch counts side by side. */
  aliases: 15,
  /** @include/@skip on a handful of fields. */
  directives: 20,
  /** Tokens of the query text; GraphiQL's introspection query is about 300. */
  tokens: 5_000,
  /** Fields times page sizes: one page of 200 integrations with every scalar field costs 2,601. */
  complexity: 10_000,
  /** Fields marked @callsMicrosoft (the connection tests) per request: each waits on Entra and Graph. */
  microsoftCalls: 1,
  /** Parsed, validated query texts kept for reuse. */
  cachedQueries: 64,
} as const

/** A list field's children are paid for once per item it may return (`limit`, or its default). */
const pageEstimator: ComplexityEstimator = ({ args, field, childComplexity }) => {
  const limitArgument = field.args.find((arg) => arg.name === 'limit')
  if (!limitArgument) return undefined
  const limit = typeof args.limit === 'number' ? args.limit : Number(limitArgument.defaultValue ?? 1)
  return 1 + Math.max(1, limit) * childComplexity
}

function refusal(message: string) {
  return new GraphQLError(message, { extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } })
}

/**
 * Counts, per mutation operation, the root fields whose schema definition carries
 * @callsMicrosoft, following fragments (a fragment spread twice runs its fields once).
 */
function microsoftCallsRule(limit: number): ValidationRule {
  return (context: ValidationContext): ASTVisitor => ({
    Document(document) {
      const mutation = context.getSchema().getMutationType()
      if (!mutation) return
      const fields = mutation.getFields()
      const callsMicrosoft = (name: string) => fields[name]?.astNode?.directives?.some((directive) => directive.name.value === 'callsMicrosoft') ?? false
      const fragments = new Map<string, FragmentDefinitionNode>()
      for (const definition of document.definitions) if (definition.kind === 'FragmentDefinition') fragments.set(definition.name.value, definition)
      for (const operation of document.definitions) {
        if (operation.kind !== 'OperationDefinition' || operation.operation !== 'mutation') continue
        let calls = 0
        const spread = new Set<string>()
        const count = (selections: readonly SelectionNode[]) => {
          for (const selection of selections) {
            if (selection.kind === 'Field') {
              if (callsMicrosoft(selection.name.value)) calls++
            } else if (selection.kind === 'InlineFragment') {
              count(selection.selectionSet.selections)
            } else if (!spread.has(selection.name.value)) {
              spread.add(selection.name.value)
              const fragment = fragments.get(selection.name.value)
              if (fragment) count(fragment.selectionSet.selections)
            }
          }
        }
        count(operation.selectionSet.selections)
        if (calls > limit) {
          context.reportError(refusal(`A request may run at most ${limit} connection test(s) (fields that call Microsoft); send them one at a time.`))
        }
      }
    },
  })
}

export interface GraphqlLimitOptions {
  introspection: boolean
}

/**
 * The validation rules, built once per app; only the cost rule is made per request, as it
 * needs the request's variables.
 */
/**
 * The rules that depend on the query text alone, built once per app. They run in validation,
 * so Mercurius may cache a query that passed them; the cost, which depends on each request's
 * variables (page sizes), is checked by checkCost before every execution.
 */
export function limitRules(options: GraphqlLimitOptions): ValidationRule[] {
  return [
    maxDepthRule({ n: GRAPHQL_LIMITS.depth, flattenFragments: true, exposeLimits: true }) as unknown as ValidationRule,
    maxAliasesRule({ n: GRAPHQL_LIMITS.aliases, exposeLimits: true }) as unknown as ValidationRule,
    maxDirectivesRule({ n: GRAPHQL_LIMITS.directives, exposeLimits: true }) as unknown as ValidationRule,
    microsoftCallsRule(GRAPHQL_LIMITS.microsoftCalls),
    ...(options.introspection ? [] : [NoSchemaIntrospectionCustomRule]),
  ]
}

const estimators = [pageEstimator, simpleEstimator({ defaultComplexity: 1 })]

/** Refuses a query whose fields, times the page sizes its variables ask for, cost too much. */
export function checkCost(schema: GraphQLSchema, document: DocumentNode, variables: Record<string, unknown> | undefined): void {
  let cost: number
  try {
    cost = getComplexity({ schema, query: document, variables: variables ?? {}, estimators })
  } catch {
    // Variables that do not fit the operation: execution refuses them before any field runs.
    return
  }
  if (cost > GRAPHQL_LIMITS.complexity) {
    throw new GraphqlRefusedError(`The query costs ${cost}, more than ${GRAPHQL_LIMITS.complexity}. Ask for smaller pages (limit) or fewer fields.`)
  }
}
