/**
 * node bench/cpu-profile.ts <file.cpuprofile> [top]
 *
 * Summarises a V8 CPU profile (from `node --cpu-prof` or BENCH_CPU_PROFILE of bench/ingest.ts):
 * self time by package (Drizzle, postgres.js, PGlite, the mail parser and its helpers, our
 * src/, node's internals, garbage collection, idle), the functions with the most self time,
 * and the functions with the most total time (time with the function anywhere on the stack;
 * synchronous stacks only, so an awaited call's time is not its caller's).
 */
import { readFileSync } from 'node:fs'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  children?: number[]
}

interface Profile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

const [file, topArg] = process.argv.slice(2)
if (!file) throw new Error('usage: node bench/cpu-profile.ts <file.cpuprofile> [top]')
const TOP = Number(topArg ?? 25)
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile

const PACKAGES: [RegExp, string][] = [
  [/node_modules\/drizzle-orm\//, 'Drizzle'],
  [/node_modules\/postgres\//, 'postgres.js'],
  [/node_modules\/@electric-sql\/pglite\//, 'PGlite'],
  [/node_modules\/(mailparser|mailsplit|libmime|libqp|libbase64|iconv-lite|encoding-japanese|html-to-text|@zone-eu|punycode|tlds|linkify-it|he)\//, 'mail parser (mailparser & co)'],
  [/node_modules\/(fastify|@fastify|avvio|find-my-way|light-my-request|fast-json-stringify|ajv|pino)/, 'Fastify & co'],
  [/\/src\//, 'Mailgate src/'],
  [/\/(bench|test)\//, 'bench & test support'],
]

function packageOf(frame: ProfileNode['callFrame']): string {
  if (frame.url === '') {
    if (frame.functionName === '(garbage collector)') return 'garbage collection'
    if (frame.functionName === '(idle)') return 'idle'
    if (frame.functionName === '(program)') return 'V8/native, unattributed'
    return 'native (no script)'
  }
  for (const [pattern, name] of PACKAGES) if (pattern.test(frame.url)) return name
  if (frame.url.startsWith('node:')) return 'node internals'
  const match = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(frame.url)
  return match ? match[1]! : frame.url
}

function label(frame: ProfileNode['callFrame']): string {
  const where = frame.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*?\/(src|bench|test)\//, '$1/').replace(/^node:/, 'node:')
  return `${frame.functionName || '(anonymous)'}  ${where}:${frame.lineNumber + 1}`
}

const byId = new Map(profile.nodes.map((node) => [node.id, node]))
const parentOf = new Map<number, number>()
for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id)

const selfUs = new Map<number, number>()
profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)))
const totalUs = [...selfUs.values()].reduce((a, b) => a + b, 0)
const idleUs = [...selfUs].filter(([id]) => byId.get(id)!.callFrame.functionName === '(idle)').reduce((a, [, us]) => a + us, 0)
const busyUs = totalUs - idleUs

const add = (map: Map<string, number>, key: string, us: number) => map.set(key, (map.get(key) ?? 0) + us)
const packages = new Map<string, number>()
const functions = new Map<string, number>()
const inclusive = new Map<string, number>()
for (const [id, us] of selfUs) {
  const frame = byId.get(id)!.callFrame
  add(packages, packageOf(frame), us)
  add(functions, `[${packageOf(frame)}] ${label(frame)}`, us)
  const seen = new Set<string>()
  for (let at: number | undefined = id; at !== undefined; at = parentOf.get(at)) {
    const node = byId.get(at)!
    if (node.callFrame.functionName === '(root)') break
    const key = `[${packageOf(node.callFrame)}] ${label(node.callFrame)}`
    if (!seen.has(key)) add(inclusive, key, us)
    seen.add(key)
  }
}

const percent = (us: number) => `${((100 * us) / busyUs).toFixed(1).padStart(5)} %`
const print = (title: string, map: Map<string, number>, limit: number) => {
  console.log(`\n${title}`)
  for (const [key, us] of [...map].sort(([, a], [, b]) => b - a).slice(0, limit)) console.log(`  ${percent(us)}  ${(us / 1000).toFixed(0).padStart(6)} ms  ${key}`)
}

console.log(`${file}: ${(totalUs / 1e6).toFixed(1)} s sampled, ${(busyUs / 1e6).toFixed(1)} s busy (${((100 * busyUs) / totalUs).toFixed(0)} %); percentages are of busy time`)
packages.delete('idle')
print('self time by package', packages, 20)
print(`top ${TOP} functions by self time`, functions, TOP)
print(`top ${TOP} functions by total time (synchronous stacks)`, inclusive, TOP)
