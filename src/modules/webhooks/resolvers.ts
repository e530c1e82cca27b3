import { Type } from '@sinclair/typebox'
import type { IResolvers, MercuriusContext } from 'mercurius'
import { withoutNulls } from '../../lib/graphql.ts'
import { IdParams, PageQuery } from '../../lib/schemas.ts'
import { CreateWebhookBody, DeliveryParams, ReplayBody, RotateSecretBody, UpdateWebhookBody } from './schemas.ts'

const DeliveriesArgs = Type.Object({ id: IdParams.properties.id, ...PageQuery }, { additionalProperties: false })

/** The same service and the same TypeBox rules as REST. */
export const webhookResolvers: IResolvers<unknown, MercuriusContext> = {
  Query: {
    webhooks: async (_root, _args, context) => (await context.app.services.webhooks.list()).items,
    webhook: async (_root, args, context) => context.app.services.webhooks.get(context.app.inputs.validate(IdParams, args).id),
    webhookDeliveries: async (_root, args, context) => {
      const { id, ...page } = context.app.inputs.validate(DeliveriesArgs, withoutNulls(args))
      return context.app.services.webhooks.deliveries(id, page)
    },
  },
  Mutation: {
    createWebhook: async (_root, { input }, context) =>
      context.app.services.webhooks.create(context.reply.request.actor(), context.app.inputs.validate(CreateWebhookBody, withoutNulls(input ?? {}), 'input.')),
    updateWebhook: async (_root, { id, input }, context) =>
      context.app.services.webhooks.update(context.reply.request.actor(), context.app.inputs.validate(IdParams, { id }).id, context.app.inputs.validate(UpdateWebhookBody, input ?? {}, 'input.')),
    deleteWebhook: async (_root, args, context) => {
      await context.app.services.webhooks.delete(context.reply.request.actor(), context.app.inputs.validate(IdParams, args).id)
      return true
    },
    rotateWebhookSecret: async (_root, { id, overlapHours }, context) => {
      const body = context.app.inputs.validate(RotateSecretBody, withoutNulls({ overlapHours }))
      return context.app.services.webhooks.rotateSecret(context.reply.request.actor(), context.app.inputs.validate(IdParams, { id }).id, body.overlapHours)
    },
    testWebhook: async (_root, args, context) => context.app.services.webhooks.test(context.app.inputs.validate(IdParams, args).id),
    replayWebhookDelivery: async (_root, args, context) => {
      const { id, deliveryId } = context.app.inputs.validate(DeliveryParams, args)
      return context.app.services.webhooks.replayDelivery(context.reply.request.actor(), id, deliveryId)
    },
    replayWebhookEvents: async (_root, { id, since }, context) => {
      const body = context.app.inputs.validate(ReplayBody, { since })
      return context.app.services.webhooks.replaySince(context.reply.request.actor(), context.app.inputs.validate(IdParams, { id }).id, body.since)
    },
  },
}
