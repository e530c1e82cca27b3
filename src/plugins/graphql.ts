import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance, FastifyPluginAsync } from 'fastify'
import fp from 'fastify-plugin'
import type { DirectiveNode, GraphQLError } from 'graphql'
import mercurius, { type IResolvers, type MercuriusContext } from 'mercurius'
import mercuriusAuthModule, { type MercuriusAuthOptions } from 'mercurius-auth'
import { DomainError, InternalError, UnauthenticatedError } from '../lib/errors.ts'
import { DateTimeScalar, JsonScalar } from '../lib/graphql.ts'
import { scopeFromEnum } from '../modules/api-keys/scopes.ts'
import type { Principal } from '../modules/api-keys/service.ts'
import { assertScopes } from './auth.ts'
import { toDomainError } from './errors.ts'

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


/**
 * graphql-js repeats the submitted value in input-coercion messages ("got invalid value
 * {...}"), which can hold a secret. Keep the reason, drop the value.
 */
export function withoutInputValues(message: string): string {
  return message
    .replace(/got invalid value .*?(?=; | at "|$)/s, 'got an invalid value')
    .replace(/Value ".*?" does not/g, 'The value does not')
    .replace(/(non string|non-string|non integer|non-integer|non boolean|non-boolean) value: .*$/s, '$1 value')
}

function graphqlCode(error: GraphQLError): { code: string; extensions: Record<string, unknown>; message: string } {
  const original = error.originalError as (Error & { errors?: GraphQLError[]; statusCode?: number }) | undefined
  if (original instanceof DomainError) {
    return { code: original.code, extensions: original.extensions, message: original.message }
  }
  if (!original) {
    // Parse and validation errors of the query itself carry no original error.
    return { code: 'GRAPHQL_VALIDATION_FAILED', extensions: {}, message: withoutInputValues(error.message) }
  }
  if (Array.isArray(original.errors)) {
    // Mercurius gathers the query's validation errors into one.
    const messages = original.errors.map((inner) => withoutInputValues(inner.message))
    return { code: 'GRAPHQL_VALIDATION_FAILED', extensions: { errors: messages }, message: messages.join(' ') }
  }
  const mapped = toDomainError(original)
  if (!(mapped instanceof InternalError)) return { code: mapped.code, extensions: mapped.extensions, message: mapped.message }
  if ((original.statusCode ?? 500) < 500) {
    return { code: 'GRAPHQL_BAD_REQUEST', extensions: {}, message: withoutInputValues(original.message) }
  }
  const internal = new InternalError()
  return { code: internal.code, extensions: {}, message: internal.message }
}

/** The modules' resolvers; their types are schema/*.graphql. */
export interface GraphqlPluginOptions {
  resolvers: IResolvers[]
}

async function graphqlPlugin(app: FastifyInstance, options: GraphqlPluginOptions) {
  const schema = await loadSchema()
  // Encapsulated so that hiding GraphQL's routes from OpenAPI touches no other route.
  await app.register(async (scope) => {
    scope.addHook('onRoute', (route) => {
      route.schema = { ...route.schema, hide: true }
    })

    await scope.register(mercurius, {
      schema,
      resolvers: mergeResolvers({ DateTime: DateTimeScalar, JSON: JsonScalar } as unknown as IResolvers, ...options.resolvers),
      graphiql: true,
      path: '/graphql',
      errorFormatter: (execution, context) => {
        const formatted = mercurius.defaultErrorFormatter(execution, context)
        const errors = (execution.errors ?? []).map((error) => {
          const { code, extensions, message } = graphqlCode(error)
          if (code === 'INTERNAL') {
            ;(context as MercuriusContext).reply?.request.log.error({ err: error.originalError ?? error }, 'graphql error')
          }
          return {
            message,
            locations: error.locations,
            path: error.path,
            extensions: { ...extensions, code, requestId: (context as MercuriusContext).reply?.request.id },
          }
        })
        return { statusCode: formatted.statusCode, response: { data: execution.data ?? null, errors } }
      },
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
