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

export type HostOverrides = Partial<CloudHosts>

/** The Microsoft hosts for a cloud; only the operator's server config can override them. */
export function hostsFor(cloud: Cloud, overrides: HostOverrides = {}): CloudHosts {
  const hosts = CLOUD_HOSTS[cloud]
  return { authority: overrides.authority ?? hosts.authority, graph: overrides.graph ?? hosts.graph }
}

export function graphScope(hosts: CloudHosts): string {
  return `https://${hosts.graph}/.default`
}
