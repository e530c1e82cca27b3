import { setTimeout as delay } from 'node:timers/promises'
import { Type } from '@sinclair/typebox'
import type { FastifyBaseLogger, FastifyPluginAsync } from 'fastify'
import { ValidationError } from '../../lib/errors.ts'
import { problemResponses } from '../../lib/schemas.ts'
import { createAjv, invalidFields } from '../../lib/validation.ts'
import type { FolderSubscriptions, NotificationItem } from './subscriptions.ts'

/** Graph wants a change notification answered within 3 s: the answer does not wait longer than this for the database (the rest is the network's). */
const ANSWER_WITHIN_MS = 2_000
const BODY_LIMIT = 256 * 1024

const TOKEN_MAX_LENGTH = 4096
const ValidationQuery = Type.Object({ validationToken: Type.Optional(Type.String({ maxLength: TOKEN_MAX_LENGTH })) })

/** Printable text: what Graph sends in these fields (ids, the clientState we made, event names). */
const PRINTABLE = '^[\\x20-\\x7e]*$'

const NotificationBody = Type.Object({
  value: Type.Array(
    Type.Object({
      subscriptionId: Type.String({ minLength: 1, maxLength: 256, pattern: PRINTABLE }),
      // Graph sends null for a subscription made without one (never ours: such items are not believed).
      clientState: Type.Optional(Type.Union([Type.String({ maxLength: 256, pattern: PRINTABLE }), Type.Null()])),
      lifecycleEvent: Type.Optional(Type.String({ maxLength: 64, pattern: PRINTABLE })),
    }),
    { maxItems: 1000 },
  ),
})

export interface NotificationDeps {
  subscriptions: FolderSubscriptions
  /** Makes these folders due now and wakes this instance's sync. */
  wake(folders: { connectorId: string; folderPath: string }[]): Promise<void>
  /** Counts notification items by what became of them (a metric). */
  counted(kind: 'change' | 'lifecycle', result: 'accepted' | 'rejected', n: number): void
  log: FastifyBaseLogger
}

type Item = NotificationItem & { lifecycleEvent?: string }

/**
 * Microsoft's calls: `POST /v1/graph/notifications` (change notifications) and
 * `POST /v1/graph/lifecycle` (lifecycle notifications). No API key: Graph cannot send one.
 * Each answers the validation handshake with the token as text/plain, and otherwise believes
 * only items whose subscription is ours and whose clientState matches; those only wake the
 * folder's sync (what changed is read through delta). The answer (202) never waits more
 * than 2.5 s for the database; what is not done by then goes on after it.
 */
export function notificationRoutes(deps: NotificationDeps): FastifyPluginAsync {
  const validBody = createAjv(false).compile(NotificationBody)
  return async (app) => {
    for (const kind of ['notifications', 'lifecycle'] as const) {
      app.post(
        `/${kind}`,
        {
          bodyLimit: BODY_LIMIT,
          // The handshake is answered before the body is parsed: whatever its content type or
          // body (Graph sends text/plain and none), the token alone matters. A repeated or
          // over-long token goes on to the query schema, which refuses it.
          onRequest: async (request, reply) => {
            const token = (request.query as Record<string, unknown>).validationToken
            if (typeof token === 'string' && token.length <= TOKEN_MAX_LENGTH) {
              return reply.code(200).type('text/plain; charset=utf-8').header('x-content-type-options', 'nosniff').send(token)
            }
          },
          schema: {
            operationId: kind === 'notifications' ? 'receiveGraphNotifications' : 'receiveGraphLifecycleNotifications',
            tags: ['Mailbox sync'],
            summary: kind === 'notifications' ? 'Microsoft Graph change notifications (called by Graph)' : 'Microsoft Graph lifecycle notifications (called by Graph)',
            description:
              'For Microsoft Graph only, without an API key. With `validationToken`: answers it as text/plain (the subscription handshake). Otherwise 202; items whose subscription or clientState does not match are dropped and counted, never acted on. A body that is not a notification collection (`value`: up to 1,000 items with a printable `subscriptionId`) is 400 and counted as rejected.',
            querystring: ValidationQuery,
            response: {
              200: Type.String({ description: 'The validation token' }),
              202: Type.Null({ description: 'Received' }),
              ...problemResponses(400, 413, 415),
            },
          },
        },
        async (request, reply) => {
          const body = request.body
          if (!validBody(body)) {
            // Not what Graph sends: nothing in it is looked at.
            deps.counted(kind === 'notifications' ? 'change' : 'lifecycle', 'rejected', 1)
            throw new ValidationError(invalidFields(validBody.errors ?? [], 'body'))
          }
          const items = (body as { value: Item[] }).value.map((item) => ({ subscriptionId: item.subscriptionId, clientState: item.clientState ?? '', lifecycleEvent: item.lifecycleEvent }))
          const work = (kind === 'notifications' ? changes(deps, items) : lifecycle(deps, items)).catch((error: unknown) =>
            deps.log.error({ err: error }, 'handling Graph notifications failed; the folders are read at their next poll'),
          )
          await Promise.race([work, delay(ANSWER_WITHIN_MS)])
          return reply.code(202).send(null)
        },
      )
    }
  }
}

async function changes(deps: NotificationDeps, items: Item[]): Promise<void> {
  const believed = await deps.subscriptions.verify(items)
  deps.counted('change', 'accepted', believed.length)
  deps.counted('change', 'rejected', items.length - believed.length)
  if (believed.length > 0) await deps.wake(believed)
}

async function lifecycle(deps: NotificationDeps, items: Item[]): Promise<void> {
  const believed = await deps.subscriptions.verify(items)
  deps.counted('lifecycle', 'accepted', believed.length)
  deps.counted('lifecycle', 'rejected', items.length - believed.length)
  for (const { item } of believed) {
    const event = (item as Item).lifecycleEvent
    if (event === 'reauthorizationRequired') await deps.subscriptions.requestRenewal(item.subscriptionId)
    else if (event === 'subscriptionRemoved') await deps.subscriptions.forget(item.subscriptionId)
    // `missed`, and the others: the folder is read through delta, which catches up.
  }
  if (believed.length > 0) await deps.wake(believed)
}
