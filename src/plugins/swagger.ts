import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'

const description = `Connects Microsoft 365 shared mailboxes to a work-management system through Microsoft Graph.

Every endpoint except /health and /docs needs an API key:
\`Authorization: Bearer <key>\`. Errors are RFC 9457 problem+json; their \`code\` is stable and
equals the GraphQL \`extensions.code\`.`

export interface SwaggerPluginOptions {
  version: string
  /** The modules' tags, in order; Health is added last. */
  tags: { name: string; description: string }[]
  /** OpenAPI 3.1 `webhooks`: the requests Mailgate sends (event deliveries). */
  webhooks?: Record<string, unknown>
}

async function swaggerPlugin(app: FastifyInstance, options: SwaggerPluginOptions) {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Mailgate API', version: options.version, description },
      components: {
        securitySchemes: {
          apiKey: { type: 'http', scheme: 'bearer', description: 'A Mailgate API key (mgk_...)' },
        },
      },
      security: [{ apiKey: [] }],
      tags: [...options.tags, { name: 'Health', description: 'Probes and metrics' }],
      ...(options.webhooks && Object.keys(options.webhooks).length > 0 ? { webhooks: options.webhooks as never } : {}),
    },
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`),
    },
    transform: ({ schema, url, route }) => {
      const transformed = { ...schema } as Record<string, unknown>
      if (!route.config?.scopes) transformed.security = []
      return { schema: transformed as typeof schema, url }
    },
    transformObject: (documentObject) => ('openapiObject' in documentObject ? optionalWhenDefaulted(documentObject.openapiObject as OpenApiDocument) : documentObject.swaggerObject),
  })
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    uiConfig: { docExpansion: 'list', deepLinking: true },
    staticCSP: true,
  })
}

interface OpenApiDocument {
  paths?: Record<string, Record<string, { parameters?: { in: string; required?: boolean; schema?: { default?: unknown } }[] }>>
}

/** A query parameter with a default (`limit`) is filled in when left out, so it is not required. */
function optionalWhenDefaulted<T extends OpenApiDocument>(document: T): T {
  for (const operations of Object.values(document.paths ?? {})) {
    for (const operation of Object.values(operations)) {
      for (const parameter of operation.parameters ?? []) if (parameter.in === 'query' && parameter.schema?.default !== undefined) parameter.required = false
    }
  }
  return document
}

export default fp(swaggerPlugin, { name: 'swagger', fastify: '5.x' })
