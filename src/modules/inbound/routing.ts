import type { RouteRules } from '../../../db/schema.ts'
import type { ParsedMail } from './parsed-mail.ts'

/** An enabled incoming route as route resolution needs it. */
export interface IncomingRoute {
  id: string
  kind: 'specific' | 'wildcard' | 'fallback'
  name: string
  /** Lower case; `*` for a wildcard route. */
  emailAddress: string
  workItemType: 'ticket' | 'case' | null
  processId: string | null
  ticketCategory: string | null
  rules: RouteRules
  testModeOnly: boolean
  sendAutomatedEmails: boolean
  forAttention: boolean
}

export interface RouteMatch {
  route: IncomingRoute
  /** The recipient address the mail matched through; `*` for BCC-only mail. */
  address: string
}

function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1)
}

function matchesAny(address: string, patterns: string[]): boolean {
  return patterns.some((pattern) => (pattern.startsWith('*@') ? domainOf(address) === pattern.slice(2) : address === pattern))
}

function extensionOf(name: string): string {
  const dot = name.lastIndexOf('.')
  return dot < 0 ? '' : name.slice(dot + 1).toLowerCase()
}

/** Every rule a route sets must hold; a list holds when one of its entries does. */
export function rulesMatch(rules: RouteRules, mail: ParsedMail): boolean {
  if (rules.importantOnly && mail.importance !== 'high') return false
  if (rules.attachmentTypes?.length) {
    const types = new Set(rules.attachmentTypes)
    if (!mail.attachments.some((attachment) => types.has(extensionOf(attachment.name)))) return false
  }
  if (rules.subjectKeywords?.length) {
    const subject = mail.subject.toLowerCase()
    if (!rules.subjectKeywords.some((keyword) => subject.includes(keyword.toLowerCase()))) return false
  }
  if (rules.recipientIncludes?.length) {
    if (![...mail.to, ...mail.cc, ...mail.bcc].some((address) => matchesAny(address, rules.recipientIncludes!))) return false
  }
  if (rules.senderIncludes?.length) {
    if (!mail.from || !matchesAny(mail.from.address, rules.senderIncludes)) return false
  }
  return true
}

/** `support+WI-1@contoso.com` -> `support@contoso.com`; other addresses unchanged. */
export function withoutPlusTag(address: string): string {
  const at = address.lastIndexOf('@')
  const plus = address.indexOf('+')
  return plus > 0 && plus < at ? address.slice(0, plus) + address.slice(at) : address
}

/**
 * Which routes a mail becomes work through. Per To/Cc address that is one of the connector's
 * route addresses (plus-tagged ones count as their base address): that address's specific
 * routes in order, then wildcard routes, then the fallback for the primary address; the
 * first whose rules hold wins. Mail none of whose To/Cc addresses is routed (BCC-only) goes
 * through wildcard routes alone. A route is matched at most once.
 */
export function resolveRoutes(routes: IncomingRoute[], primaryAddress: string, mail: ParsedMail): RouteMatch[] {
  const specific = routes.filter((route) => route.kind === 'specific')
  const wildcard = routes.filter((route) => route.kind === 'wildcard')
  const fallback = routes.find((route) => route.kind === 'fallback')
  const routed = new Set(specific.map((route) => route.emailAddress))
  routed.add(primaryAddress)

  const addresses = [...new Set([...mail.to, ...mail.cc].map(withoutPlusTag))].filter((address) => routed.has(address))
  const matches: RouteMatch[] = []
  const taken = new Set<string>()
  const take = (route: IncomingRoute | undefined, address: string) => {
    if (!route || taken.has(route.id)) return
    taken.add(route.id)
    matches.push({ route, address })
  }
  if (addresses.length === 0) {
    take(wildcard.find((route) => rulesMatch(route.rules, mail)), '*')
    return matches
  }
  for (const address of addresses) {
    const candidates = [...specific.filter((route) => route.emailAddress === address), ...wildcard]
    if (address === primaryAddress && fallback) candidates.push(fallback)
    // A route an earlier address already took is passed over: this address may still reach the next.
    take(candidates.find((route) => !taken.has(route.id) && rulesMatch(route.rules, mail)), address)
  }
  return matches
}
