import type { IResolvers, MercuriusContext } from 'mercurius'
import { deepWithoutNulls, withoutNulls } from '../../lib/graphql.ts'
import { IdParams } from '../../lib/schemas.ts'
import { CreateRouteBody, ListRoutesQuery, ReorderRoutesBody, TestRouteBody, UpdateRouteBody } from './schemas.ts'

export const emailRouteResolvers: IResolvers<unknown, MercuriusContext> = {
  Query: {
    routes: async (_root, args, context) => context.app.services.routes.list(context.app.inputs.validate(ListRoutesQuery, withoutNulls(args))),
    route: async (_root, args, context) => context.app.services.routes.get(context.app.inputs.validate(IdParams, args).id),
  },
  Mutation: {
    createRoute: async (_root, { input }, context) =>
      context.app.services.routes.create(context.reply.request.actor(), context.app.inputs.validate(CreateRouteBody, deepWithoutNulls(input))),
    updateRoute: async (_root, { id, input }, context) =>
      context.app.services.routes.update(
        context.reply.request.actor(),
        context.app.inputs.validate(IdParams, { id }).id,
        context.app.inputs.validate(UpdateRouteBody, deepWithoutNulls(input)),
      ),
    deleteRoute: async (_root, args, context) => {
      await context.app.services.routes.delete(context.reply.request.actor(), context.app.inputs.validate(IdParams, args).id)
      return true
    },
    testRoute: async (_root, { id, candidate }, context) =>
      context.app.services.routes.test(
        context.reply.request.actor(),
        context.app.inputs.validate(IdParams, { id }).id,
        context.app.inputs.validate(TestRouteBody, deepWithoutNulls(candidate ?? {})),
      ),
    enableRoute: async (_root, args, context) => context.app.services.routes.enable(context.reply.request.actor(), context.app.inputs.validate(IdParams, args).id),
    disableRoute: async (_root, args, context) => context.app.services.routes.disable(context.reply.request.actor(), context.app.inputs.validate(IdParams, args).id),
    reorderRoutes: async (_root, { connectorId, routeIds }, context) =>
      context.app.services.routes.reorder(
        context.reply.request.actor(),
        context.app.inputs.validate(IdParams, { id: connectorId }).id,
        context.app.inputs.validate(ReorderRoutesBody, { routeIds }).routeIds,
      ),
  },
}
