import type { IResolvers, MercuriusContext } from 'mercurius'
import { deepWithoutNulls, withoutNulls } from '../../lib/graphql.ts'
import { IdParams } from '../../lib/schemas.ts'
import { CreateConnectorBody, DisableConnectorBody, ListConnectorsQuery, TestConnectorBody, UpdateConnectorBody } from './schemas.ts'

export const connectorResolvers: IResolvers<unknown, MercuriusContext> = {
  Query: {
    connectors: async (_root, args, context) =>
      context.app.services.connectors.list(context.app.inputs.validate(ListConnectorsQuery, withoutNulls(args))),
    connector: async (_root, args, context) => context.app.services.connectors.get(context.app.inputs.validate(IdParams, args).id),
  },
  Mutation: {
    createConnector: async (_root, { input }, context) =>
      context.app.services.connectors.create(context.reply.request.actor(), context.app.inputs.validate(CreateConnectorBody, deepWithoutNulls(input))),
    updateConnector: async (_root, { id, input }, context) =>
      context.app.services.connectors.update(
        context.reply.request.actor(),
        context.app.inputs.validate(IdParams, { id }).id,
        context.app.inputs.validate(UpdateConnectorBody, deepWithoutNulls(input)),
      ),
    deleteConnector: async (_root, args, context) => {
      await context.app.services.connectors.delete(context.reply.request.actor(), context.app.inputs.validate(IdParams, args).id)
      return true
    },
    testConnector: async (_root, { id, candidate }, context) =>
      context.app.services.connectors.test(
        context.reply.request.actor(),
        context.app.inputs.validate(IdParams, { id }).id,
        context.app.inputs.validate(TestConnectorBody, deepWithoutNulls(candidate ?? {})),
      ),
    enableConnector: async (_root, args, context) =>
      context.app.services.connectors.enable(context.reply.request.actor(), context.app.inputs.validate(IdParams, args).id),
    disableConnector: async (_root, { id, reason }, context) =>
      context.app.services.connectors.disable(
        context.reply.request.actor(),
        context.app.inputs.validate(IdParams, { id }).id,
        context.app.inputs.validate(DisableConnectorBody, withoutNulls({ reason })).reason,
      ),
  },
}
