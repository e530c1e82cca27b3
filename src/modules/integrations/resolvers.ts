import type { IResolvers, MercuriusContext } from 'mercurius'
import { deepWithoutNulls, withoutNulls } from '../../lib/graphql.ts'
import { IdParams } from '../../lib/schemas.ts'
import { ConnectionChanges, CreateIntegrationBody, ListIntegrationsQuery, UpdateIntegrationBody } from './schemas.ts'

export const integrationResolvers: IResolvers<unknown, MercuriusContext> = {
  Query: {
    integrations: async (_root, args, context) =>
      context.app.services.integrations.list(context.app.inputs.validate(ListIntegrationsQuery, withoutNulls(args))),
    integration: async (_root, args, context) =>
      context.app.services.integrations.get(context.app.inputs.validate(IdParams, args).id),
  },
  Mutation: {
    createIntegration: async (_root, { input }, context) =>
      context.app.services.integrations.create(
        context.reply.request.actor(),
        context.app.inputs.validate(CreateIntegrationBody, deepWithoutNulls(input)),
      ),
    updateIntegration: async (_root, { id, input }, context) =>
      context.app.services.integrations.update(
        context.reply.request.actor(),
        context.app.inputs.validate(IdParams, { id }).id,
        context.app.inputs.validate(UpdateIntegrationBody, deepWithoutNulls(input)),
      ),
    deleteIntegration: async (_root, args, context) => {
      await context.app.services.integrations.delete(context.reply.request.actor(), context.app.inputs.validate(IdParams, args).id)
      return true
    },
    testIntegration: async (_root, { id, candidate }, context) =>
      context.app.services.integrations.test(
        context.reply.request.actor(),
        context.app.inputs.validate(IdParams, { id }).id,
        context.app.inputs.validate(ConnectionChanges, deepWithoutNulls(candidate ?? {})),
      ),
  },
}
