import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { AppOptions } from '../../app.ts'
import type { AppModule } from '../module.ts'
import { eventRetentionCutoff } from '../../workers/housekeeping.ts'
import { eventResolvers } from './resolvers.ts'
import { eventRoutes } from './routes.ts'
import { EVENT_SCHEMAS, EventFeedPage, FeedEvent, PING_SCHEMA } from './schemas.ts'
import { EVENT_TYPES } from '../../../db/schema.ts'

/** The Standard Webhooks headers every delivery carries (https://www.standardwebhooks.com). */
const deliveryHeaders = [
  { name: 'webhook-id', description: "The event's id: the same on every retry and replay, so a receiver can drop copies", schema: { type: 'string', format: 'uuid' } },
  { name: 'webhook-timestamp', description: 'When this attempt was signed, in Unix seconds: refuse ones far from your clock', schema: { type: 'string', pattern: '^[0-9]+$' } },
  {
    name: 'webhook-signature',
    description: '`v1,<base64 HMAC-SHA256 of id.timestamp.body>` with the endpoint secret; two, space-separated, while a rotated secret overlaps. Verify with the standardwebhooks or svix libraries.',
    schema: { type: 'string' },
  },
].map((header) => ({ ...header, in: 'header', required: true }))

const delivery = (summary: string, description: string | undefined, component: string) => ({
  post: {
    summary,
    description,
    parameters: deliveryHeaders,
    requestBody: { required: true, content: { 'application/json': { schema: { $ref: `#/components/schemas/${component}` } } } },
    responses: {
      '2XX': { description: 'Delivered' },
      '410': { description: 'Gone: the endpoint is disabled at once' },
      default: { description: 'Anything else (or no answer in 10 s) is retried on the schedule in the README' },
    },
  },
})

/** OpenAPI 3.1 `webhooks`: what Mailgate POSTs to a webhook endpoint, one entry per event type and the ping. */
const webhooks = {
  ...Object.fromEntries(EVENT_SCHEMAS.map((schema, index) => [EVENT_TYPES[index]!, delivery(EVENT_TYPES[index]!, schema.description, schema.$id!)])),
  ping: delivery('ping', PING_SCHEMA.description, PING_SCHEMA.$id!),
}

/** Events older than EVENT_RETENTION_DAYS go, unless webhooks still need them. */
async function eventHousekeeping(app: FastifyInstance, options: AppOptions) {
  app.housekeeping.add('events', (now) => app.services.eventRetention.removeOlderThan(eventRetentionCutoff(now, options.housekeeping?.eventRetentionDays)))
}

export const eventsModule: AppModule = {
  name: 'events',
  tag: {
    name: 'Events',
    description: 'What Mailgate decided (work requested, replies appended, mail sent or failed, connectors disabled), as a feed to read in commit order',
  },
  schemas: [...EVENT_SCHEMAS, PING_SCHEMA, FeedEvent, EventFeedPage],
  routes: eventRoutes,
  resolvers: eventResolvers,
  webhooks,
  plugin: fp(eventHousekeeping, { name: 'events-housekeeping', fastify: '5.x', dependencies: ['services', 'workers'] }),
}
