import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { TSchema } from '@sinclair/typebox'
import type { FastifyPluginAsync } from 'fastify'
import type { IResolvers, MercuriusContext, MercuriusLoaders } from 'mercurius'
import type { AppOptions } from '../app.ts'

/**
 * What a domain module adds to the app. app.ts, the GraphQL plugin and the swagger plugin
 * take the list in src/modules/index.ts; none of them names a module's parts. A module's
 * services are wired in src/modules/services.ts, its tables in db/, its GraphQL types in
 * schema/<module>.graphql.
 */
export interface AppModule {
  name: string
  /** The OpenAPI tag of its REST operations. */
  tag?: { name: string; description: string }
  /** Schemas with an `$id` that responses refer to; they become OpenAPI components. */
  schemas?: TSchema[]
  /** REST routes, registered under /v1 behind API keys. */
  routes?: FastifyPluginAsyncTypebox
  /** OpenAPI 3.1 `webhooks`: requests Mailgate makes to its users' endpoints. */
  webhooks?: Record<string, unknown>
  /** GraphQL resolvers for its part of the schema. */
  resolvers?: IResolvers<unknown, MercuriusContext>
  /** GraphQL fields resolved in batches (one call per field per request, not one per parent). */
  loaders?: MercuriusLoaders
  /**
   * Anything else it adds once the core plugins are in place: background loops, housekeeping
   * chores, decorations. Wrap it with fastify-plugin when it decorates the app.
   */
  plugin?: FastifyPluginAsync<AppOptions>
}
