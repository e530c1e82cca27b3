import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { problemResponses } from '../../lib/schemas.ts'
import { EventFeedPage as EventFeedPageSchema, EventFeedQuery } from './schemas.ts'

const tags = ['Events']
const EventFeedPage = Type.Ref(EventFeedPageSchema)

export const eventRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const feed = app.services.eventFeed

  app.get(
    '/events',
    {
      config: { scopes: ['events:read'] },
      schema: {
        operationId: 'listEvents',
        tags,
        summary: 'Read the event feed',
        description:
          'Everything Mailgate decided, in commit order, after a cursor: pass the page’s `next` as `after` to read on; nothing is skipped, even an event whose transaction committed after later ones (the feed waits for it). `types` filters (`work_item.*,message.failed`); `wait=30s` waits for the next event when there is none yet (long poll). Events are kept EVENT_RETENTION_DAYS (30); a cursor into what was removed is 410 CURSOR_EXPIRED. Each type’s `data` is in the Event* components and the webhooks section.',
        querystring: EventFeedQuery,
        response: { 200: EventFeedPage, ...problemResponses(410) },
      },
    },
    async (request, reply) => {
      // A long poll ends early when its reader goes away (the connection closes before the answer).
      const gone = new AbortController()
      reply.raw.once('close', () => {
        if (!reply.raw.writableEnded) gone.abort()
      })
      return feed.read(request.query, gone.signal)
    },
  )
}
