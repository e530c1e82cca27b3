import type { IResolvers, MercuriusContext } from 'mercurius'
import { deepWithoutNulls, withoutNulls } from '../../lib/graphql.ts'
import { IdParams } from '../../lib/schemas.ts'
import { ConfirmWorkItemBody, CreateRouteFromEmailBody, ListInboundQuery, ReapplyBody } from './schemas.ts'

export const inboundResolvers: IResolvers<unknown, MercuriusContext> = {
  Query: {
    inboundEmails: async (_root, args, context) => context.app.services.inbound.list(context.app.inputs.validate(ListInboundQuery, withoutNulls(args))),
    inboundEmail: async (_root, args, context) => context.app.services.inbound.get(context.app.inputs.validate(IdParams, args).id),
  },
  Mutation: {
    confirmInboundWorkItem: async (_root, { id, input }, context) => {
      const params = context.app.inputs.validate(IdParams, { id })
      return context.app.services.inbound.confirmWorkItem(context.reply.request.actor(), params.id, context.app.inputs.validate(ConfirmWorkItemBody, deepWithoutNulls(input)))
    },
    reprocessInboundEmail: async (_root, args, context) =>
      context.app.services.inbound.reprocess(context.reply.request.actor(), context.app.inputs.validate(IdParams, args).id),
    reapplyUnhandledEmails: async (_root, { input }, context) =>
      context.app.services.inbound.reapply(context.reply.request.actor(), context.app.inputs.validate(ReapplyBody, deepWithoutNulls(input))),
    createRouteFromInboundEmail: async (_root, { id, input }, context) => {
      const params = context.app.inputs.validate(IdParams, { id })
      return context.app.services.inbound.routeFrom(context.reply.request.actor(), params.id, context.app.inputs.validate(CreateRouteFromEmailBody, deepWithoutNulls(input)))
    },
  },
}
