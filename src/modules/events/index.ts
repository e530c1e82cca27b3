import type { AppModule } from '../module.ts'
import { eventResolvers } from './resolvers.ts'
import { eventRoutes } from './routes.ts'
import { EVENT_SCHEMAS, EventFeedPage, FeedEvent, eventComponentName } from './schemas.ts'
import { EVENT_TYPES } from '../../../db/schema.ts'

/** OpenAPI 3.1 `webhooks`: what Mailgate POSTs to a webhook endpoint, one entry per event type. */
const webhooks = Object.fromEntries(
  EVENT_TYPES.map((type) => [
    type,
    {
      post: {
        summary: `${type}`,
        description: EVENT_SCHEMAS.find((schema) => schema.$id === eventComponentName(type))?.description,
        requestBody: { required: true, content: { 'application/json': { schema: { $ref: `#/components/schemas/${eventComponentName(type)}` } } } },
        responses: { '2XX': { description: 'Delivered; any other answer is retried' } },
      },
    },
  ]),
)

export const eventsModule: AppModule = {
  name: 'events',
  tag: {
    name: 'Events',
    description: 'What Mailgate decided (work requested, replies appended, mail sent or failed, connectors disabled), as a feed to read in commit order',
  },
  schemas: [...EVENT_SCHEMAS, FeedEvent, EventFeedPage],
  routes: eventRoutes,
  resolvers: eventResolvers,
  webhooks,
}
