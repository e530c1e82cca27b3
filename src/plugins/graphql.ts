import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance, FastifyPluginAsync } from 'fastify'
import fp from 'fastify-plugin'
import type { DirectiveNode } from 'graphql'
import mercurius, { type IResolvers, type MercuriusContext, type MercuriusLoaders } from 'mercurius'
import mercuriusAuthModule, { type MercuriusAuthOptions } from 'mercurius-auth'
import { DomainError, UnauthenticatedError } from '../lib/errors.ts'
import { DateTimeScalar, JsonScalar } from '../lib/graphql.ts'
import { InputValidator } from '../lib/validation.ts'
import { scopeFromEnum } from '../modules/api-keys/scopes.ts'
import type { Principal } from '../modules/api-keys/service.ts'
import { assertScopes } from './auth.ts'
import { GraphqlRefusedError, formatGraphqlErrors } from './graphql-errors.ts'
import { checkCost, GRAPHQL_LIMITS, limitRules } from './graphql-limits.ts'

// The package is CommonJS whose module.exports is the plugin itself.
const mercuriusAuth = mercuriusAuthModule as unknown as FastifyPluginAsync<MercuriusAuthOptions>

const schemaDir = fileURLToPath(new URL('../../schema', import.meta.url))

export async function loadSchema(): Promise<string> {
  const files = (await readdir(schemaDir)).filter((file) => file.endsWith('.graphql')).sort()
  const parts = await Promise.all(files.map((file) => readFile(join(schemaDir, file), 'utf8')))
  return parts.join('\n')
}

function mergeResolvers(...sets: IResolvers[]): IResolvers {
  const merged: Record<string, Record<string, unknown>> = {}
  for (const set of sets) {
    for (const [type, fields] of Object.entries(set)) merged[type] = { ...merged[type], ...(fields as object) }
  }
  return merged as IResolvers
}

interface AuthOutcome {
  principal: Principal | null
  failure: DomainError | null
}

export interface GraphqlPluginOptions {
  /** The modules' resolvers; their types are schema/*.graphql. */
  resolvers: IResolvers[]
  /** The modules' batched field resolvers. */
  loaders?: MercuriusLoaders
  /** Whether the schema can be introspected (GRAPHQL_INTROSPECTION); GraphiQL needs it. */
  introspection?: boolean
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Validates GraphQL arguments with the REST routes' schemas and rules. */
    inputs: InputValidator
  }
}

/**
 * Mercurius takes a query that is not GraphQL but parses as JSON for a ready-made AST, which
 * would bypass the token limit and feed graphql-js malformed nodes. No GraphQL document is
 * valid JSON, so such a source is refused as a syntax error.
 */
function refuseJsonSource(source: string): void {
  try {
    JSON.parse(source)
  } catch {
    return
  }
  throw new GraphqlRefusedError('Syntax Error: the query must be GraphQL text, not JSON.')
}

async function graphqlPlugin(app: FastifyInstance, options: GraphqlPluginOptions) {
  const schema = await loadSchema()
  const validationRules = limitRules({ introspection: options.introspection ?? true })
  app.decorate('inputs', new InputValidator())
  // Encapsulated so that hiding GraphQL's routes from OpenAPI touches no other route.
  await app.register(async (scope) => {
    scope.addHook('onRoute', (route) => {
      route.schema = { ...route.schema, hide: true }
    })

    await scope.register(mercurius, {
      schema,
      resolvers: mergeResolvers({ DateTime: DateTimeScalar, JSON: JsonScalar } as unknown as IResolvers, ...options.resolvers),
      loaders: options.loaders,
      // The offline GraphiQL page is the graphiql plugin's.
      graphiql: false,
      path: '/graphql',
      // A few parsed and validated queries are kept (the UI sends the same handful); few, as
      // every distinct hostile query would take a place (at most 5,000 tokens each).
      cache: GRAPHQL_LIMITS.cachedQueries,
      graphql: { parseOptions: { maxTokens: GRAPHQL_LIMITS.tokens } },
      validationRules,
      errorFormatter: formatGraphqlErrors,
    })

    scope.graphql.addHook('preParsing', async (_schema, source) => {
      refuseJsonSource(source)
    })
    scope.graphql.addHook('preExecution', async (schema, document, _context, variables) => {
      checkCost(schema, document, variables)
    })

    await scope.register(mercuriusAuth, {
      authDirective: 'auth',
      async authContext(context: MercuriusContext) {
        try {
          const principal = await app.services.apiKeys.authenticate(context.reply.request.headers.authorization)
          context.reply.request.principal = principal
          return { principal, failure: null }
        } catch (error) {
          if (error instanceof DomainError) return { principal: null, failure: error }
          throw error
        }
      },
      async applyPolicy(directive: DirectiveNode, _parent: unknown, _args: unknown, context: MercuriusContext) {
        const outcome = context.auth as unknown as AuthOutcome
        if (!outcome.principal) throw outcome.failure ?? new UnauthenticatedError('API key required.')
        const argument = directive.arguments?.find((arg) => arg.name.value === 'scopes')
        const values = argument?.value.kind === 'ListValue' ? argument.value.values : []
        const required = values.map((value) => scopeFromEnum((value as { value: string }).value))
        assertScopes(outcome.principal, required)
        return true
      },
    })
  })
}

export default fp(graphqlPlugin, { name: 'graphql', fastify: '5.x', dependencies: ['services', 'auth'] })
