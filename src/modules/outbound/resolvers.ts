import { Type } from '@sinclair/typebox'
import type { IResolvers, MercuriusContext } from 'mercurius'
import { deepWithoutNulls, withoutNulls } from '../../lib/graphql.ts'
import { IdParams } from '../../lib/schemas.ts'
import { IdempotencyHeaders, ListMessagesQuery, SendMessageBody } from './schemas.ts'

const IdempotencyKey = Type.Object({ key: Type.Optional(IdempotencyHeaders.properties['idempotency-key']) })

export const messageResolvers: IResolvers<unknown, MercuriusContext> = {
  Query: {
    messages: async (_root, args, context) => context.app.services.messages.list(context.app.inputs.validate(ListMessagesQuery, withoutNulls(args))),
    message: async (_root, args, context) => context.app.services.messages.get(context.app.inputs.validate(IdParams, args).id),
  },
  Mutation: {
    sendMessage: async (_root, { input, idempotencyKey }, context) => {
      const { key } = context.app.inputs.validate(IdempotencyKey, withoutNulls({ key: idempotencyKey }))
      const result = await context.app.services.messages.submit(
        context.reply.request.principal!.keyId,
        context.app.inputs.validate(SendMessageBody, deepWithoutNulls(input)),
        key,
      )
      return { ...result.body, replayed: result.replayed }
    },
    cancelMessage: async (_root, args, context) => context.app.services.messages.cancel(context.app.inputs.validate(IdParams, args).id),
    retryMessage: async (_root, args, context) => context.app.services.messages.retry(context.app.inputs.validate(IdParams, args).id),
  },
}
