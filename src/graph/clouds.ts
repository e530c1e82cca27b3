import type { Cloud } from '../../db/tables/integrations.ts'

export interface CloudHosts {
  /** Entra ID sign-in host. */
  authority: string
  /** Microsoft Graph host. */
  graph: string
}

const CLOUD_HOSTS: Record<Cloud, CloudHosts> = {
  global: { authority: 'login.microsoftonline.com', graph: 'graph.microsoft.com' },
  usgov: { authority: 'login.microsoftonline.us', graph: 'graph.microsoft.us' },
  usgovdod: { authority: 'login.microsoftonline.us', graph: 'dod-graph.microsoft.us' },
  china: { authority: 'login.chinacloudapi.cn', graph: 'microsoftgraph.chinacloudapi.cn' },
}

const MICROSOFT_GRAPH_HOSTS = new Set(Object.values(CLOUD_HOSTS).map((hosts) => hosts.graph))

/** Operator overrides (AUTHORITY_HOST, GRAPH_HOST): `host[:port]`, never taken from a request. */
export type HostOverrides = Partial<CloudHosts>

/** The hosts Mailgate connects to for a cloud: the cloud's own, or the operator's overrides. */
export function hostsFor(cloud: Cloud, overrides: HostOverrides = {}): CloudHosts {
  const hosts = CLOUD_HOSTS[cloud]
  return { authority: overrides.authority ?? hosts.authority, graph: overrides.graph ?? hosts.graph }
}

/**
 * What app tokens are for (their audience), as a `.default` scope. A proxy or stand-in host
 * forwards to the cloud's Graph, which only accepts tokens for itself, so the scope stays the
 * cloud's Graph resource; an override that names another Microsoft Graph host (a sovereign
 * cloud) makes that host the resource.
 */
export function graphScope(cloud: Cloud, overrides: HostOverrides = {}): string {
  const resource = overrides.graph && MICROSOFT_GRAPH_HOSTS.has(overrides.graph) ? overrides.graph : CLOUD_HOSTS[cloud].graph
  return `https://${resource}/.default`
}

/**
 * URLs Graph hands back (an `@odata.nextLink`, an upload session's `uploadUrl`) name
 * Microsoft's hosts. With a proxy or stand-in as the Graph host every request goes there
 * instead, keeping the path and query; an override that is itself a Microsoft Graph host (a
 * sovereign cloud) is Microsoft, whose URLs are followed as they are.
 */
export function throughOverride(url: string, overrides: HostOverrides): string {
  if (!overrides.graph || MICROSOFT_GRAPH_HOSTS.has(overrides.graph)) return url
  const parsed = new URL(url)
  return `https://${overrides.graph}${parsed.pathname}${parsed.search}`
}
