import { DEMO, type SandboxState } from './world.ts'

interface Listed {
  id: string
  name?: string
  primaryAddress?: string
  direction?: string
  emailAddress?: string
  url?: string
  enabled?: boolean
}

/** Calls Mailgate's API as an admin would; a refusal stops the sandbox with Mailgate's own words. */
function api(baseUrl: string, adminKey: string) {
  return async function call<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await fetch(`${baseUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${adminKey}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
    const text = await response.text()
    if (!response.ok) throw new Error(`${method} ${path} answered ${response.status}: ${text}`)
    return (text ? JSON.parse(text) : {}) as T
  }
}

/** A test that must pass, and the enable it unlocks. */
async function testAndEnable(call: ReturnType<typeof api>, path: string, enabled: boolean | undefined): Promise<void> {
  if (enabled) return
  const result = await call<{ ok: boolean; steps?: unknown }>('POST', `${path}/test`, {})
  if (!result.ok) throw new Error(`${path}/test failed: ${JSON.stringify(result)}`)
  await call('POST', `${path}/enable`, {})
}

/**
 * Wires the demo up through the API, as an admin would (and only what is missing, so a
 * second run changes nothing): the integration with its certificate, incoming and outgoing
 * connectors for support@ (incoming routed to a `support` process; outgoing with the alias
 * hello@), and a webhook endpoint to the sandbox's receiver. Returns their ids.
 */
export async function wireUp(baseUrl: string, state: SandboxState, webhookUrl: string): Promise<{ integrationId: string; incomingId: string; outgoingId: string; webhookId: string }> {
  const call = api(baseUrl, state.adminKey)
  const integrations = (await call<{ items: Listed[] }>('GET', '/v1/integrations')).items
  let integration = integrations.find((item) => item.name === 'Sandbox tenant')
  if (!integration) {
    integration = await call<Listed>('POST', '/v1/integrations', {
      name: 'Sandbox tenant',
      tenant: state.tenantId,
      clientId: state.clientId,
      authMethod: 'certificate',
      certificate: { pfx: state.appCertificate.pfx, password: state.appCertificate.password },
    })
    const tested = await call<{ ok: boolean }>('POST', `/v1/integrations/${integration.id}/test`, {})
    if (!tested.ok) throw new Error(`The integration's test failed: ${JSON.stringify(tested)}`)
  }

  const connectors = (await call<{ items: Listed[] }>('GET', '/v1/connectors?limit=200')).items
  const connector = async (direction: 'incoming' | 'outgoing', address: string, extra: Record<string, unknown>) => {
    const found = connectors.find((item) => item.direction === direction && item.primaryAddress === address)
    const row = found ?? (await call<Listed>('POST', '/v1/connectors', { integrationId: integration.id, name: `${direction} ${address}`, direction, primaryAddress: address, ...extra }))
    await testAndEnable(call, `/v1/connectors/${row.id}`, found?.enabled)
    return row.id
  }
  const incomingId = await connector('incoming', DEMO.incoming, { fallbackRoute: { workItemType: 'ticket', processId: 'support' } })
  const outgoingId = await connector('outgoing', DEMO.outgoing, {})

  const routes = (await call<{ items: Listed[] }>('GET', `/v1/routes?connectorId=${outgoingId}`)).items
  const alias = routes.find((route) => route.emailAddress === DEMO.alias) ?? (await call<Listed>('POST', '/v1/routes', { connectorId: outgoingId, name: `alias ${DEMO.alias}`, emailAddress: DEMO.alias }))
  await testAndEnable(call, `/v1/routes/${alias.id}`, alias.enabled)

  const webhooks = (await call<{ items: Listed[] }>('GET', '/v1/webhooks')).items
  const webhook = webhooks.find((item) => item.url === webhookUrl) ?? (await call<{ endpoint: Listed }>('POST', '/v1/webhooks', { url: webhookUrl, eventTypes: ['*'], description: 'The sandbox prints what it receives' })).endpoint
  return { integrationId: integration.id, incomingId, outgoingId, webhookId: webhook.id }
}
