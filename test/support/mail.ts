import { expect } from 'vitest'
import type { Dispatcher } from '../../src/modules/outbound/dispatcher.ts'
import { createDispatcher, type DispatcherOptions } from '../../src/modules/outbound/dispatcher-plugin.ts'
import { bearer, type TestApp } from './app.ts'

/** Admin calls through the API, the way an operator wires up sending. */
export function mailSetup(t: TestApp) {
  async function admin(method: 'GET' | 'POST' | 'PATCH', url: string, payload?: unknown) {
    const response = await t.app.inject({ method, url, headers: bearer(t.adminKey), payload: payload as object })
    return { status: response.statusCode, body: response.json() }
  }
  return {
    admin,
    async integration(tenantId: string, clientId: string, secret: string): Promise<string> {
      const created = (await admin('POST', '/v1/integrations', { name: `app ${clientId.slice(0, 8)}`, tenant: tenantId, clientId, authMethod: 'clientSecret', clientSecret: secret })).body
      expect((await admin('POST', `/v1/integrations/${created.id}/test`)).body.ok).toBe(true)
      return created.id
    },
    async outgoing(integrationId: string, address: string): Promise<string> {
      const connector = (await admin('POST', '/v1/connectors', { integrationId, name: address, direction: 'outgoing', primaryAddress: address })).body
      expect((await admin('POST', `/v1/connectors/${connector.id}/test`)).body.ok).toBe(true)
      expect((await admin('POST', `/v1/connectors/${connector.id}/enable`)).body.enabled).toBe(true)
      return connector.id
    },
    /** An enabled incoming connector whose fallback route goes to `fallbackProcess`. */
    async incoming(integrationId: string, address: string, fallbackProcess = 'support'): Promise<{ connectorId: string; fallbackRouteId: string }> {
      const connector = (
        await admin('POST', '/v1/connectors', { integrationId, name: address, direction: 'incoming', primaryAddress: address, fallbackRoute: { workItemType: 'ticket', processId: fallbackProcess } })
      ).body
      expect((await admin('POST', `/v1/connectors/${connector.id}/test`)).body.ok).toBe(true)
      expect((await admin('POST', `/v1/connectors/${connector.id}/enable`)).body.enabled).toBe(true)
      const routes = (await admin('GET', `/v1/routes?connectorId=${connector.id}`)).body.items as { id: string; kind: string }[]
      return { connectorId: connector.id, fallbackRouteId: routes.find((route) => route.kind === 'fallback')!.id }
    },
    /** An enabled incoming route into `processId`. */
    async incomingRoute(connectorId: string, emailAddress: string, processId: string, extra: Record<string, unknown> = {}): Promise<string> {
      const created = await admin('POST', '/v1/routes', { connectorId, name: `${emailAddress} -> ${processId}`, emailAddress, workItemType: 'ticket', processId, ...extra })
      expect(created.status, JSON.stringify(created.body)).toBe(201)
      return created.body.id
    },
    async alias(connectorId: string, address: string): Promise<string> {
      const route = (await admin('POST', '/v1/routes', { connectorId, name: address, emailAddress: address })).body
      expect((await admin('POST', `/v1/routes/${route.id}/test`)).body.ok).toBe(true)
      expect((await admin('POST', `/v1/routes/${route.id}/enable`)).body.enabled).toBe(true)
      return route.id
    },
  }
}

/** Another dispatcher on the app's database, as a second instance would run one. */
export function extraDispatcher(t: TestApp, options: DispatcherOptions & { owner: string }): Dispatcher {
  return createDispatcher(t.app, options)
}
