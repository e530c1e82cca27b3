import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { ForbiddenError } from '../lib/errors.ts'
import type { Principal } from '../modules/api-keys/service.ts'
import { missingScopes, type Scope } from '../modules/api-keys/scopes.ts'
import type { Actor } from '../modules/audit/service.ts'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Scopes the calling API key needs. Every route inside an apiKeyScope must declare it. */
    scopes?: readonly Scope[]
  }
  interface FastifyRequest {
    principal: Principal | null
    /** The calling key as the audit trail records it. */
    actor(): Actor
  }
}

async function authPlugin(app: FastifyInstance) {
  app.decorateRequest('principal', null)
  app.decorateRequest('actor', function actor(this: FastifyRequest): Actor {
    return { keyId: this.principal?.keyId ?? null, requestId: this.id }
  })
}

export default fp(authPlugin, { name: 'auth', fastify: '5.x', dependencies: ['services'] })

export function assertScopes(principal: Principal, required: readonly Scope[]): void {
  const missing = missingScopes(principal.scopes, required)
  if (missing.length > 0) {
    throw new ForbiddenError(`This operation needs the scope ${missing.join(', ')}; the API key has ${principal.scopes.join(', ')}.`, {
      requiredScopes: required,
      missingScopes: missing,
    })
  }
}

/**
 * An encapsulated scope for API-key routes. Registering routes inside it is what makes them
 * protected; each route states in `config.scopes` what it needs (an empty list: any valid key).
 */
export async function apiKeyScope(app: FastifyInstance) {
  app.addHook('onRoute', (route) => {
    if (!route.config?.scopes) {
      throw new Error(`${route.method} ${route.url} is in the API-key scope but declares no config.scopes`)
    }
  })
  app.addHook('onRequest', async (request) => {
    const principal = await app.services.apiKeys.authenticate(request.headers.authorization)
    request.principal = principal
    assertScopes(principal, request.routeOptions.config.scopes ?? [])
  })
}
