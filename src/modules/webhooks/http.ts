import { lookup as dnsLookup, type LookupAddress } from 'node:dns'
import { isIP } from 'node:net'
import ipaddr from 'ipaddr.js'
import { Agent, request } from 'undici'

/** What a delivery attempt got back. */
export interface AttemptResult {
  status: number | null
  durationMs: number
  headers: Record<string, string> | null
  /** The first 4 KB of the answer's body. */
  body: string | null
  /** Why no answer came: a refused address, a timeout, a connection failure. */
  error: string | null
}

const BODY_KEPT = 4096
const NAT64_PREFIX = ipaddr.parseCIDR('64:ff9b::/96')

/** Cloud platform endpoints inside public ranges (Azure's WireServer); metadata services at 169.254.169.254 are link-local already. */
const CLOUD_PLATFORM = ['168.63.129.16']
const TIMEOUT_MS = 10_000

/**
 * Which addresses a webhook may connect to: public unicast only (no loopback, private,
 * link-local such as cloud metadata, multicast, reserved...), unless the operator allows a
 * network (WEBHOOK_ALLOWED_NETWORKS). ipaddr.js classifies; no range list is written here.
 */
export class AddressPolicy {
  private readonly allowed: [ipaddr.IPv4 | ipaddr.IPv6, number][]

  constructor(allowedNetworks: readonly string[] = []) {
    this.allowed = allowedNetworks.map((network) => ipaddr.parseCIDR(network))
  }

  /** Why the address is refused, or undefined when it may be used. */
  refusal(address: string): string | undefined {
    let parsed = ipaddr.parse(address)
    if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) parsed = (parsed as ipaddr.IPv6).toIPv4Address()
    // NAT64 (RFC 6052, what DNS64 answers on an IPv6-only network): judged as the IPv4 address it carries.
    if (parsed.kind() === 'ipv6' && parsed.match(NAT64_PREFIX)) parsed = ipaddr.fromByteArray(parsed.toByteArray().slice(12))
    for (const [network, bits] of this.allowed) if (parsed.kind() === network.kind() && parsed.match(network, bits)) return undefined
    // Deprecated IPv4-compatible IPv6 (::a.b.c.d) reaches the IPv4 address on some stacks: judged as that address.
    if (parsed.kind() === 'ipv6' && parsed.match(ipaddr.parseCIDR('::/96'))) return `${address} is an IPv4-compatible address`
    if (parsed.kind() === 'ipv4' && CLOUD_PLATFORM.some((platform) => parsed.toString() === platform)) return `${address} is a cloud platform address`
    const range = parsed.range()
    return range === 'unicast' ? undefined : `${address} is a ${range} address`
  }
}

export class AddressRefused extends Error {}

/**
 * POSTs deliveries over keep-alive connections, never to a refused address: a host name is
 * checked on the addresses it resolves to, which are the ones connected to (so a name that
 * resolves elsewhere the next time, DNS rebinding, gains nothing), and redirects are not
 * followed. 10 s for the answer.
 */
export class WebhookHttp {
  private readonly policy: AddressPolicy
  private readonly agent: Agent

  constructor(policy: AddressPolicy) {
    this.policy = policy
    const guardedLookup = (hostname: string, options: object, callback: (error: Error | null, address: string | LookupAddress[], family?: number) => void) => {
      dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
        if (error) return callback(error, [])
        const usable = addresses.filter((entry) => !this.policy.refusal(entry.address))
        if (usable.length === 0) {
          // The kinds of address only, not the addresses: the answer must not map an internal network.
          const kinds = [...new Set(addresses.map((entry) => this.policy.refusal(entry.address)?.replace(/^.* is an? /, '').replace(/ address$/, '')))].join(', ')
          return callback(new AddressRefused(`${hostname} resolves only to addresses webhooks may not reach (${kinds})`), [])
        }
        if ((options as { all?: boolean }).all) return callback(null, usable)
        callback(null, usable[0]!.address, usable[0]!.family)
      })
    }
    this.agent = new Agent({ connect: { lookup: guardedLookup as never, timeout: TIMEOUT_MS }, keepAliveTimeout: 30_000, headersTimeout: TIMEOUT_MS, bodyTimeout: TIMEOUT_MS })
  }

  /** Why this URL's host may not be reached before any lookup (an address written in the URL), or undefined. */
  literalRefusal(url: URL): string | undefined {
    const host = url.hostname.replace(/^\[|\]$/g, '')
    return isIP(host) ? this.policy.refusal(host) : undefined
  }

  async post(url: string, headers: Record<string, string>, body: string): Promise<AttemptResult> {
    const started = performance.now()
    const elapsed = () => Math.round(performance.now() - started)
    const literal = this.literalRefusal(new URL(url))
    if (literal) return { status: null, durationMs: 0, headers: null, body: null, error: `refused: ${literal}` }
    try {
      const response = await request(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'Mailgate-Webhooks/1', ...headers },
        body,
        // undici's request() follows no redirect: a 3xx is the answer, and counts as a failure.
        dispatcher: this.agent,
        signal: AbortSignal.timeout(TIMEOUT_MS),
      })
      // The status decides; a body that is slow or endless after a 2xx does not undo the delivery.
      const kept = await readStart(response.body).catch((error: unknown) => `(the body could not be read: ${error instanceof Error ? error.message : String(error)})`)
      const answerHeaders: Record<string, string> = {}
      for (const [name, value] of Object.entries(response.headers)) if (value !== undefined) answerHeaders[name] = Array.isArray(value) ? value.join(', ') : String(value)
      return { status: response.statusCode, durationMs: elapsed(), headers: answerHeaders, body: kept, error: null }
    } catch (error) {
      const cause = (error as { cause?: unknown }).cause
      const refused = error instanceof AddressRefused ? error : cause instanceof AddressRefused ? cause : undefined
      const message = refused ? `refused: ${refused.message}` : error instanceof Error ? `${error.name}: ${error.message}` : String(error)
      return { status: null, durationMs: elapsed(), headers: null, body: null, error: message.slice(0, 500) }
    }
  }

  async close(): Promise<void> {
    await this.agent.close()
  }
}

/** The first 4 KB of a body; the rest is read and dropped so the connection can be used again. */
async function readStart(body: AsyncIterable<Buffer>): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    if (size < BODY_KEPT) chunks.push(chunk.subarray(0, BODY_KEPT - size))
    size += chunk.length
    if (size > 1024 * 1024) break // a receiver streaming on: stop reading (the connection is not reused)
  }
  // PostgreSQL text holds no NUL, and a receiver may answer anything.
  return Buffer.concat(chunks).toString('utf8').replaceAll('\u0000', '\uFFFD')
}
