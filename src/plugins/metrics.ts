import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { Type } from '@sinclair/typebox'
import { collectDefaultMetrics, Histogram, Registry } from 'prom-client'
import { apiKeyScope } from './auth.ts'
import { problemResponses } from '../lib/schemas.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** This app's own Prometheus registry: no process-wide default registry is used. */
    metrics: Registry
  }
}

async function metricsPlugin(app: FastifyInstance, options: { collectDefaults?: boolean }) {
  const registry = new Registry()
  if (options.collectDefaults !== false) collectDefaultMetrics({ register: registry, prefix: 'mailgate_' })
  app.decorate('metrics', registry)

  const duration = new Histogram({
    name: 'mailgate_http_request_duration_seconds',
    help: 'HTTP request duration by route and status',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  })

  // One child per label set, kept: observing through a labels object hashes the labels every time.
  const series = new Map<string, ReturnType<typeof duration.labels>>()
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched'
    const key = `${request.method} ${route} ${reply.statusCode}`
    let child = series.get(key)
    if (!child) series.set(key, (child = duration.labels({ method: request.method, route, status_code: String(reply.statusCode) })))
    child.observe(reply.elapsedTime / 1000)
  })

  await app.register(async (scope) => {
    await apiKeyScope(scope)
    scope.get(
      '/metrics',
      {
        logLevel: 'warn',
        config: { scopes: ['metrics:read'] },
        schema: {
          operationId: 'metrics',
          tags: ['Health'],
          summary: 'Prometheus metrics (scope metrics:read)',
          produces: ['text/plain'],
          response: { 200: Type.String({ description: 'Prometheus text exposition format' }), ...problemResponses() },
        },
      },
      async (_request, reply) => {
        reply.type(registry.contentType)
        return registry.metrics()
      },
    )
  })
}

export default fp(metricsPlugin, { name: 'metrics', fastify: '5.x', dependencies: ['auth', 'errors'] })
